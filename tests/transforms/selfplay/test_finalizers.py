"""Self-play refuses code whose generator holds a finalizer (``finally``, ``with``, a handler of
``GeneratorExit``): it runs when the garbage collector collects the generator, at a point counted in allocations
that differ between the sandbox and a plain script, so ``f(g())`` could verify in one and be False in the other."""
from __future__ import annotations

import pytest

from transforms.execute.isolation import IsolationLimits
from transforms.selfplay import filters
from transforms.selfplay.beam import SandboxSettings, filter_sample, solution_refusal, verify_attempts
from transforms.selfplay.finalizers import REASON, generator_finalizer_route
from transforms.selfplay.preset import load_preset

STRINGS = load_preset().filters
SANDBOX = SandboxSettings(IsolationLimits(timeout_s=3, cpu_s=2), workers=1)

# The red team's shape: a generator in a reference cycle whose finally writes what f reads.
CYCLE_PUZZLE = (
    "def f(x: int):\n"
    "    seen = []\n"
    "    def gen():\n"
    "        try:\n"
    "            yield 1\n"
    "        finally:\n"
    "            seen.append(1)\n"
    "    class_like = [None]\n"
    "    it = gen()\n"
    "    next(it)\n"
    "    class_like[0] = (it, class_like)\n"
    "    del it, class_like\n"
    "    junk = [[] for _ in range(x)]\n"
    "    return len(seen) == 1\n"
)


def _f(body: str) -> str:
    return "def f(x: int):\n" + body


@pytest.mark.parametrize("code, route", [
    (CYCLE_PUZZLE, "a finally clause in generator gen"),
    (_f("    def h():\n        with open('z') as fh:\n            yield fh\n    return x == 1\n"),
     "a with statement in generator h"),
    (_f("    async def h():\n        async with x:\n            yield 1\n    return x == 1\n"), "a with statement"),
    (_f("    def h():\n        yield 0\n        try:\n            pass\n        finally:\n            x.append(1)\n"
        "    return x == 1\n"), "a finally clause in generator h"),
    (_f("    def h():\n        try:\n            yield 1\n        except GeneratorExit:\n            x.append(1)\n"
        "    return x == 1\n"), "an except that catches GeneratorExit"),
    (_f("    def h():\n        try:\n            yield 1\n        except:\n            pass\n    return x == 1\n"),
     "an except that catches GeneratorExit"),
    (_f("    def h():\n        try:\n            yield 1\n        except (ValueError, BaseException):\n"
        "            pass\n    return x == 1\n"), "an except that catches GeneratorExit"),
    (_f("    def h():\n        try:\n            yield from range(3)\n        finally:\n            pass\n"
        "    return x == 1\n"), "a finally clause"),
    ("def g():\n    def h():\n        try:\n            yield 1\n        finally:\n            pass\n"
     "    return list(h())\n", "a finally clause in generator h"),
    # a generator that is f itself
    ("def f(x: int):\n    try:\n        yield x\n    finally:\n        pass\n", "in generator f"),
    # an alias of GeneratorExit, a builtin name the code rebinds, an attribute (the seventh red team's route)
    ("stop = GeneratorExit\n" + _f("    def h():\n        try:\n            yield 1\n        except stop:\n"
                                     "            x.append(1)\n    return x == 1\n"), "an except that catches"),
    ("ValueError = GeneratorExit\n" + _f("    def h():\n        try:\n            yield 1\n"
                                          "        except ValueError:\n            pass\n    return x == 1\n"),
     "an except that catches"),
    (_f("    import re\n    def h():\n        try:\n            yield 1\n        except re.error:\n            pass\n"
        "    return x == 1\n"), "an except that catches"),
    # a buffer's lock ends when the collector frees the generator that holds its memoryview (the tenth red team)
    (_f("    buf = bytes(2)\n    def h():\n        for b in memoryview(buf):\n            yield b\n"
        "    try:\n        buf += b'c'\n    except BufferError:\n        return False\n    return x == 1\n"),
     "BufferError, whose lock ends at a collection"),
    # the eleventh red team's: the error need not be caught, nor the export held by a generator: a self-recursive
    # closure's cycle holds a memoryview (or finditer's iterator) of a bytearray until the collector runs, and
    # `buf.extend` raises until then. bytearray is the one resizable buffer a program can make.
    (_f("    buf = bytearray(b'ab')\n    m = memoryview(buf)\n    def step(k):\n"
        "        return step(k - 1) if k else m[0]\n    step(3)\n    del m, step\n"
        "    buf.extend(b'c')\n    return x == 1\n"),
     "bytearray, whose resizing fails until a collection frees its exports (line 2)"),
    (_f("    import re\n    buf = bytearray\n    return x == 1\n"), "bytearray"),
    # a name a case pattern binds is the code's (the eighth red team)
    ("match [GeneratorExit]:\n    case [ValueError]:\n        pass\n" + _f(
        "    def h():\n        try:\n            yield 1\n        except ValueError:\n            pass\n"
        "    return x == 1\n"), "an except that catches"),
])
def test_a_generator_holding_a_finalizer_is_refused(code, route):
    assert route in (generator_finalizer_route(code) or ""), generator_finalizer_route(code)


@pytest.mark.parametrize("code", [
    "def f(x: int):\n    return x * x == 12321\n",
    _f("    def h():\n        for i in range(x):\n            yield i * i\n    return sum(h()) == 14\n"),
    _f("    return sum(i for i in range(x)) == 10\n"),
    _f("    def h():\n        try:\n            yield 1\n        except ValueError:\n            pass\n"
       "    return x == 1\n"),  # ValueError is no GeneratorExit
    _f("    try:\n        y = 1 // x\n    finally:\n        pass\n    return x == 1\n"),  # f is no generator
    # a with statement outside any generator; the generator beside it holds nothing
    _f("    import io\n    with io.StringIO('a') as s:\n        t = s.read()\n    def h():\n        yield t\n"
       "    return list(h()) == ['a'] and x == 1\n"),
    # the finalizer is in a nested function the generator defines, not the generator's own body
    _f("    def h():\n        def k():\n            try:\n                return 1\n            finally:\n"
       "                pass\n        yield k()\n    return x == sum(h())\n"),
])
def test_a_generator_without_a_finalizer_or_a_finalizer_outside_generators_is_allowed(code):
    assert generator_finalizer_route(code) is None


def test_no_p3_puzzle_is_refused(p3_data):
    """Measured: no P3 puzzle (train, test, or any test instance) defines a generator with a finalizer."""
    for puzzle in (*p3_data.train, *p3_data.test_instances):
        assert generator_finalizer_route(puzzle.f) is None, puzzle.name


def _sample(text: str) -> dict:
    return {"preset": "paper", "head": "def f(", "text": text, "prompt_index": 0, "sample_index": 0, "k": 0,
            "examples": [], "seed": 0}


@pytest.mark.parametrize("rate", [0.0, 1.0])
def test_the_self_play_filter_refuses_a_finalizing_puzzle_before_it_runs(rate):
    reason, detail, _ = filter_sample(_sample(CYCLE_PUZZLE[len("def f("):]), STRINGS, trivial_reject_rate=rate,
                                      seed=0, sandbox=SANDBOX)
    assert reason == REASON == "finalizes_generator" and "line 4" in detail, (reason, detail)


def test_the_pure_filter_refuses_a_finalizing_puzzle_in_its_order(run_in_process):
    plain = "def f(x: int):\n    def h():\n        yield 1\n    return x == 700 + sum(h())\n"
    outcomes = filters.filter_puzzles([CYCLE_PUZZLE, plain], run_in_process, trivial_reject_rate=1.0)
    assert [o.reason for o in outcomes] == [REASON, None]
    assert filters.REASONS.index("draws_unseeded_random") < filters.REASONS.index(REASON) < filters.REASONS.index(
        "return_true_failed")


def test_self_play_refuses_a_solution_whose_generator_finalizes():
    g_body = ("\n    def h():\n        try:\n            yield 1\n        finally:\n            pass\n"
              "    return sum(h())\n")
    literal = filters.trivial_preamble(STRINGS)
    [attempt] = verify_attempts({"sat": "def f(x: int):\n    return x == 1\n"}, "def g():", "int", [g_body], "", 1,
                                STRINGS.judge_preamble, SANDBOX, literal_preamble=literal)
    assert attempt["status"] == "refused", attempt
    assert attempt["reason"].startswith("the solution holds a generator's finalizer"), attempt
    assert solution_refusal("def g():\n    return 1\n", "def f(x: int):\n    return x == 1\n") is None
