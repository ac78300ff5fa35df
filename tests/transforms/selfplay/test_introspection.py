"""A model-written puzzle cannot forge its own verdict: the three exploits a probe found (2026-12-03) pass the
sandboxed check while ``assert f(g())`` fails in plain Python; each is now refused before it runs, the sandbox
names a program's module ``__main__`` as plain Python does, and the human-written P3 puzzles almost all pass."""
from __future__ import annotations

import json
import types
from pathlib import Path

import pytest

from transforms.execute.isolation import IsolationLimits
from transforms.execute.verdicts import check_sat, verify_pair
from transforms.selfplay.beam import SandboxSettings, filter_sample
from transforms.selfplay.introspection import MODULE_ATTRIBUTES, interpreter_route
from transforms.selfplay.preset import load_preset

STRINGS = load_preset().filters
SANDBOX = SandboxSettings(IsolationLimits(timeout_s=3, cpu_s=2), workers=1)
P3 = Path(__file__).resolve().parents[4] / "shared" / "data" / "p3" / "puzzles.json"

# The probe's puzzles, as completions after the paper prompt's ``def f(``.
FORGES_THE_ENCODER = ("x: int, n=123457):\n    if x == n:\n"
                      "        Dict.__init__.__func__.__globals__['sys'].modules['sandbox_wire'].encode_tree = "
                      "lambda v, *a, **k: True\n    return x > n * 10 and x < n * 10\n")
NAMES_THE_SANDBOX = "x: int, n=123457):\n    return x == n and __name__ == '__sandbox__'\n"
DODGES_THE_TRIVIAL_TEST = ("x: int, n=0):\n    fr = Dict.__init__.__func__.__globals__['sys']._getframe(1)\n"
                           "    return x * n == 0 and (fr.f_back is None\n"
                           "                           or fr.f_back.f_code.co_name != '_fresh_call')\n")
G = "def g(n=123457):\n    return n\n"


def _sample(text: str) -> dict:
    return {"preset": "paper", "head": "def f(", "text": text, "prompt_index": 0, "sample_index": 0, "k": 0,
            "examples": [], "seed": 0}


def _assert_refused(completion: str, route: str) -> None:
    """The filter refuses the puzzle as reaching the interpreter, naming ``route``."""
    reason, detail, _ = filter_sample(_sample(completion), STRINGS, trivial_reject_rate=1.0, seed=0, sandbox=SANDBOX)
    assert reason == "reaches_interpreter" and route in detail, (reason, detail)


@pytest.mark.parametrize("completion", [FORGES_THE_ENCODER, NAMES_THE_SANDBOX, DODGES_THE_TRIVIAL_TEST])
def test_a_puzzle_that_reaches_the_interpreter_is_refused_before_it_runs(completion):
    reason, detail, facts = filter_sample(_sample(completion), STRINGS, trivial_reject_rate=1.0, seed=0,
                                          sandbox=SANDBOX)
    assert reason == "reaches_interpreter" and detail


def test_without_the_refusal_the_forging_puzzle_would_pass_the_sandboxed_check():
    """Why the refusal exists: the verdict of f(answer) comes from the process f runs in. Since the literal check
    runs a plain script (no agent, no encoder), the pair is rejected there too: two defences, where a forgery
    alone in f beat both before."""
    sat = "from typing import List, Dict\n\ndef f(" + FORGES_THE_ENCODER
    assert check_sat(sat, 123457, SANDBOX.limits, preamble=STRINGS.judge_preamble).passed  # forged in the agent
    verdict = verify_pair(sat, f"{sat}\n\n{G}", "int", SANDBOX.limits, preamble=STRINGS.judge_preamble)
    namespace: dict = {}
    exec(sat + "\n\n" + G, namespace)  # plain Python: the training text's assert f(g())
    with pytest.raises(KeyError):
        namespace["f"](namespace["g"]())
    assert verdict.status == "failed" and verdict.reason.startswith("literal: f(g()) in one process raised KeyError")


def test_a_program_in_the_sandbox_is_named_main_as_plain_python_names_a_script():
    sat = "def f(x: str):\n    return x == __name__\n"
    assert check_sat(sat, "__main__", IsolationLimits(timeout_s=3)).status == "passed"


@pytest.mark.parametrize("code", [
    "def f(x: int):\n    return getattr(x, 'real') == 3\n",
    "def f(x: int):\n    return typing.sys.modules is not None and x == 3\n",
    "def f(x: int):\n    return re.enum is not None and x == 3\n",
    "def f(x: int):\n    g = (i for i in [x])\n    return g.gi_frame is not None\n",
    "def f(x: int):\n    return typing.get_type_hints(f) and x == 3\n",
    "def f(x: str):\n    return string.Formatter().get_field(x, [f], {}) == 3\n",
    "def f(x: str):\n    return x == '_' * 2 + 'globals' and '{0.__globals__}'.format(f)\n",
    "def f(x: int):\n    return random._os is not None and x == 3\n",
    "def f(x: int):\n    return eval('x') == 3\n",
    "def f(x: int):\n    import sys\n    return x == 3\n",
    # A red-team pass (2026-12-03) past the first list: an evaluating tool or a private name imported under
    # another name, format paths built at run time or kept as a bound method, a name only `site` defines.
    "def f(x: int):\n    from typing import get_type_hints as hints\n    return x == 3\n",
    "def f(x: int):\n    from random import _os as o\n    return x == 3 and o.getpid() == 1\n",
    "def f(x: int):\n    ('{0._' + '_init_' + '_}').format(List)\n    return x == 3\n",
    "def f(x: int):\n    t = '{0}'\n    m = t.format\n    return m(x) == '3'\n",
    "def f(x: int):\n    g = (i for i in [x])\n    return '{0.gi_frame}'.format(g) != '' and x == 3\n",
    "def f(x: int):\n    try:\n        credits\n    except NameError:\n        return x == 3\n    return False\n",
    # A second red-team pass: attributes read by a match class pattern, dunder keywords, an address.
    "def f(x: int):\n    match Dict:\n        case object(__init__=i):\n            return x == 3\n    return False\n",
    "def f(x: int):\n    match x:\n        case int(gi_frame=g):\n            return True\n    return x == 3\n",
    "def f(x: int):\n    d = dict(__eq__=3)\n    return x == 3\n",
    "def f(x: int):\n    return x == id(None)\n",
    # a path in a field nested in a spec, an item path, a format that does not parse
    "def f(x: int):\n    return '{:{0.__init__}}'.format(x) != '' and x == 3\n",
    "def f(x: int):\n    return '{0[0]}'.format([x]) == '3'\n",
    "def f(x: int):\n    return '{0.real'.format(x) == '3'\n",
    # the twentieth red team: how deep a call gets before RecursionError told re's cache as a plain run's `site`
    # leaves it from the sandbox's; and every handler of it, or a finally that drops it
    "def f(x: int):\n    try:\n        return x == 3\n    except RecursionError:\n        return False\n",
    "def f(x: int):\n    try:\n        return x == 3\n    except (ValueError, RuntimeError):\n        return False\n",
    "def f(x: int):\n    e = RuntimeError\n    return x == 3\n",
    "def f(x: int):\n    try:\n        y = x // 0\n    finally:\n        return x == 3\n",
    "def f(x: int):\n    for i in range(3):\n        try:\n            y = 1 // i\n        finally:\n"
    "            break\n    return x == 3\n",
    "def f(x: int):\n    for i in range(3):\n        try:\n            pass\n        finally:\n"
    "            for j in []:\n                pass\n            else:\n                continue\n    return x == 3\n",
    # the twenty-fourth red team: what tells the interpreter's settings apart (-W error raises re's FutureWarning,
    # -O drops the assert), caught or named
    "def f(s: str):\n    import re\n    try:\n        re.compile('[[a]')\n        return s == 'kqzw'\n"
    "    except FutureWarning:\n        return False\n",
    "def f(n: int):\n    try:\n        assert n < 0\n        return False\n    except AssertionError:\n"
    "        return n == 43007\n",
    "def f(x: int):\n    kinds = (Warning, DeprecationWarning)\n    return x == 3\n",
])
def test_each_route_is_named(code):
    assert interpreter_route(code)


@pytest.mark.parametrize("code", [
    "def f(x: int, n=12321):\n    return x * x == n and x > 0\n",
    "def f(s: str):\n    _ = len(s)\n    return s[::-1] == 'olleh' and s.count('l') == 2\n",
    "def f(xs: List[int]):\n    return sorted(xs) == xs and math.prod(xs) == 120 and random.random() < 2\n",
    "def f(x: int):\n    return '{}-{:>3}'.format(x, x) == '3-  3'\n",
    # a spec's own dots are the format mini-language, not a path (refused until the sixteenth red team's note)
    "def f(x: float):\n    return '{:.2f}'.format(x) == '3.14'\n",
    "def f(x: float):\n    return '{:>{w}.{p}f}'.format(x, w=8, p=3) == '   3.142'\n",
    # raising RuntimeError, a finally that only cleans up, a loop or a function of its own inside a finally
    "def f(x: int):\n    if x < 0:\n        raise RuntimeError('negative')\n    return x == 3\n",
    "def f(s: str):\n    assert s\n    return s == 'kqzw'\n",  # an assert itself is the puzzle's own check
    "def f(x: int):\n    seen = []\n    try:\n        return x == 3\n    finally:\n        seen.append(x)\n",
    "def f(x: int):\n    n = 0\n    try:\n        n = x\n    finally:\n        for i in range(3):\n            if i:\n"
    "                break\n    return n == 3\n",
    "def f(x: int):\n    try:\n        n = x\n    finally:\n        def h():\n            return 3\n"
    "    return n == h()\n",
])
def test_ordinary_puzzles_have_no_route(code):
    assert interpreter_route(code) is None


def test_the_module_attributes_cover_every_module_the_safe_imports_carry():
    """Re-derived from the running Python: every module reachable from a safe import through public attributes,
    other than the safe imports themselves, is refused as an attribute name."""
    import importlib

    safe = set(STRINGS.safe_imports)
    seen: set[str] = set()
    frontier = [importlib.import_module(name) for name in safe]
    assert frontier
    while frontier:
        module = frontier.pop()
        for attribute, value in vars(module).items():
            if isinstance(value, types.ModuleType) and not attribute.startswith("_") and attribute not in seen:
                seen.add(attribute)
                frontier.append(value)
    carried = seen - safe
    assert carried, "the safe imports carry no module: the test would prove nothing"
    assert carried <= MODULE_ATTRIBUTES, sorted(carried - MODULE_ATTRIBUTES)


@pytest.mark.skipif(not P3.exists(), reason="needs ../shared/data/p3")
def test_almost_every_human_written_p3_puzzle_has_no_route():
    puzzles = json.loads(P3.read_text())
    assert len(puzzles) > 1000
    flagged = [p["name"] for p in puzzles if interpreter_route(p["sat"])]
    # 30 of 1,715 on 2026-12-03: eval (Quine), '__' strings, itertools imports (outside the judge's safe list)
    assert len(flagged) <= 0.02 * len(puzzles), flagged


def _under_seed_0(expression: str) -> str:
    """``expression`` evaluated by a plain interpreter under PYTHONHASHSEED=0 (independently of the code under
    test)."""
    import os
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", f"print({expression})"], capture_output=True, text=True,
                         env={**os.environ, "PYTHONHASHSEED": "0"}, check=True)
    return out.stdout.strip()


SET_ORDER = "def f(s: str):\n    return len(s) == 12 and ''.join(set(s)) == s and s != ''.join(sorted(s))\n"


def _seed_0_pairs():
    # A 12-letter string in its own set order under seed 0: under a drawn seed that order holds about once in
    # 12! (the red team's 5-letter strings held once in a few hundred seeds, too often for a test that must not
    # flake); likewise a full 32-bit hash.
    order = _under_seed_0("''.join(set(''.join(set('abcdefghijkl'))))")
    digest = _under_seed_0("hash('abc') % 2 ** 32")
    return [(SET_ORDER, f"def g():\n    return {order!r}\n"),
            (f"def f(s: str):\n    return hash(s) % 2 ** 32 == {digest}\n", "def g():\n    return 'abc'\n")]


@pytest.mark.parametrize("which", ["digit limit", "set order under seed 0", "hash under seed 0"])
def test_an_answer_that_holds_only_under_the_sandboxs_settings_is_not_verified(which):
    """No introspection: the red team's pairs that passed while plain Python's `assert f(g())` fails. Answers
    found under the sandbox's fixed hash seed 0 hold in the literal check only under a drawn seed that happens to
    give the same order or hash, as in plain Python."""
    if which == "digit limit":  # the sandbox lifted the 4,300-digit limit: plain Python raises on str(10**5000 - 1)
        sat, g = ("def f(n: int):\n    return sum(int(c) for c in str(n)) == 45000\n",
                  "def g():\n    return 10 ** 5000 - 1\n")
    else:
        sat, g = _seed_0_pairs()[0 if which == "set order under seed 0" else 1]
        assert check_sat(sat, eval(g.split("return ")[1]), SANDBOX.limits).status == "passed"  # true under seed 0
    verdict = verify_pair(sat, f"{sat}\n\n{g}", "int" if "n: int" in sat else "str", SANDBOX.limits,
                          preamble=STRINGS.judge_preamble)
    assert verdict.status != "passed", verdict


def test_the_literal_checks_seed_is_drawn_for_each_run_and_is_never_the_other_sandboxes():
    """A seed derived from the program's text could be searched for: a red team (2026-12-03, fourth pass) varied a
    comment in g 4,830 times until `hash(s) % 1000 == 242` held under it as under seed 0."""
    from transforms.execute.isolation import HASH_SEED, drawn_hash_seed
    from transforms.execute.verdicts import check_literal

    seeds = {drawn_hash_seed() for _ in range(200)}
    assert len(seeds) > 190 and HASH_SEED not in seeds
    assert all(0 < int(seed) < 2 ** 32 for seed in seeds)  # PYTHONHASHSEED's range
    program = ("def f(x: int):\n    return x\n", "def g():\n    return hash('ab')\n")  # reports the hash
    reasons = {check_literal(*program, SANDBOX.limits).reason for _ in range(2)}
    assert len(reasons) == 2, reasons  # the same program, two seeds


# A fourth red-team pass (2026-12-03). Each puzzle passed the filter (and its pair the verifier) or crashed it.
SEMICOLON_PICKLE = ("x: int, n=123457):\n    from math import pi; import pickle; x == n and pickle.loads(b'cimportlib"
                    "\\nimport_module\\n(Vsandbox_wire\\ntR(Vencode_tree\\ncoperator\\nis_not\\ndb.')\n"
                    "    return x > n * 10 and x < n * 10\n")
SEMICOLON_SOCKET = ("x: int, n=123457):\n    from math import pi; import socket\n"
                    "    return x == n and socket.gethostname() == 'sandbox'\n")


@pytest.mark.parametrize("completion", [SEMICOLON_PICKLE, SEMICOLON_SOCKET])
def test_an_import_outside_the_safe_modules_is_refused_wherever_it_stands(completion):
    """The judge's line check reads only the first import of a line: after a semicolon, pickle's opcodes reached
    the sandbox's encoder and made every result True (plain Python: ModuleNotFoundError)."""
    reason, detail, _ = filter_sample(_sample(completion), STRINGS, trivial_reject_rate=1.0, seed=0, sandbox=SANDBOX)
    assert reason == "reaches_interpreter" and "not a safe module" in detail, (reason, detail)


@pytest.mark.parametrize("code", [
    "def f(x: int):\n    import marshal\n    return x == 3\n",
    "def f(x: int):\n    from time import time\n    return x == 3\n",
    "def f(x: int):\n    import math, json\n    return x == 3\n",
    "def f(x: int):\n    from . import y\n    return x == 3\n",
    "def f(x: int):\n    return (" + "-" * 5000 + "x) == 3\n",  # nested past this process's parser
])
def test_imports_outside_the_safe_modules_and_unparsably_deep_code_are_routes(code):
    assert interpreter_route(code)


def test_imports_of_the_safe_modules_are_not_routes():
    code = "def f(x: int):\n    import math\n    from collections import Counter\n    return math.isqrt(x) == 3\n"
    assert interpreter_route(code) is None


@pytest.mark.parametrize("g", [
    "def g():\n    return hash(object()) % 4096\n",  # a small object: the allocator's pools
    # an object past 512 bytes comes from the C heap: its default repr shows its address
    "def g():\n    class A:\n        __slots__ = tuple('a%d' % i for i in range(100))\n"
    "    return int(repr(A()).split(' at ')[1][:-1], 16) % 4096\n",
])
def test_a_program_in_the_sandbox_does_not_find_its_objects_at_the_same_addresses_each_run(g):
    """ASLR moves pages, not offsets in them: `hash(object()) % 256` was 87 in every check_sat sandbox and 91 in
    every literal check and forked trivial call, so a puzzle could answer on it (plain Python: 24)."""
    from transforms.execute.verdicts import solve_answer

    values = [solve_answer(g, "int", SANDBOX.limits).value for _ in range(4)]
    assert None not in values and len(set(values)) > 1, values


def test_a_puzzle_that_is_trivial_except_under_seed_0_is_trivial():
    """The trivial-answer test ran under the verifying sandboxes' seed 0 only; the reference's runs in a process
    with a random seed."""
    # a 12-letter set's order under seed 0 (hash() itself is refused by name now), computed independently
    seed_0 = _under_seed_0("''.join(set('abcdefghijkl'))")
    completion = f"x: int):\n    return ''.join(set('abcdefghijkl')) != {seed_0!r} or x == 123456\n"
    reason, _, _ = filter_sample(_sample(completion), STRINGS, trivial_reject_rate=1.0, seed=0, sandbox=SANDBOX)
    assert reason == "trivial_answer"


@pytest.mark.parametrize("completion", [
    # UnboundLocalError is a NameError: the reference's `except NameError` catches it, so f(0) "passes".
    "x: int):\n    if x > 1000:\n        y = 1\n    return y == 1 and x == 123457\n",
    # gen.py's trivial test defines List only (env = {"List": List}), not the judge's Dict, Set, Tuple.
    "x: int, n=123457):\n    return Dict[str, int] is not None and x == n\n",
])
def test_a_puzzle_the_references_trivial_test_rejects_through_a_name_error_is_trivial(completion):
    reason, _, _ = filter_sample(_sample(completion), STRINGS, trivial_reject_rate=1.0, seed=0, sandbox=SANDBOX)
    assert reason == "trivial_answer"


def test_a_sample_nested_too_deeply_to_parse_here_is_refused_not_a_crash_of_the_bundle():
    from transforms.selfplay.source import solution_body

    for depth in (2970, 3100, 20000):
        reason, detail, _ = filter_sample(_sample(f"x: int):\n    return ({'-' * depth}x) == 123457 and x > 0\n"),
                                          STRINGS, trivial_reject_rate=1.0, seed=0, sandbox=SANDBOX)
        assert reason is not None, depth  # refused, never kept, never raised
    assert solution_body(f"\n    return n + ({'-' * 20000}1) * 0\n") is None


# A fifth red-team pass (2026-12-03), after the fourth's fixes.
MATCH_ARGS_FORGERY = (
    "x: int, n=123457):\n    if x == n:\n        u = '_' * 2\n"
    "        M = type('M', (type,), {u + 'instancecheck' + u: lambda c, o: True})\n"
    "        A = M('A', (), {u + 'match_args' + u: (u + 'globals' + u,)})\n"
    "        match f:\n            case A(g):\n                pass\n    return x == -n\n")


@pytest.mark.parametrize("completion, route", [
    # `case A(g)` reads the attribute A.__match_args__ names, set from a string at run time: f.__globals__ (the
    # full pass went on to __import__ and the sandbox's encoder, and every result came back True).
    (MATCH_ARGS_FORGERY, "a class built by type()"),  # and its `case A(g)`: test_each_positional_class_pattern...
    # Addresses read through hash(): plain Python's are the same every run, the sandbox's now differ, so a puzzle
    # could require "anything but plain's value" (kept, verified) or be trivial at plain's value only.
    ("x: int, n=123457):\n    t = hash(object()) % 256\n    u = hash(f) % 256\n"
     "    return x == n and not (t in range(20, 30) and u in range(120, 140))\n", "name hash"),
    ("x: int):\n    t = hash(object()) % 256\n    return x == 123457 or t in (24, 25)\n", "name hash"),
    # re's cache holds other patterns in the sandbox (the agent's json) than in a plain script (site's urllib):
    # identity tells them apart.
    ("x: int, n=123457):\n    import re\n    p = re.compile('([\\x00-\\x7f]+)')\n"
     "    for i in range(511):\n        re.compile('k' + str(i))\n"
     "    return x == n and p is re.compile('([\\x00-\\x7f]+)')\n", "identity comparison"),
])
def test_a_puzzle_that_reads_a_process_detail_is_refused_before_it_runs(completion, route):
    _assert_refused(completion, route)


def test_every_match_statement_is_a_route():
    """Even a self-matching class pattern: patterns bind names and read attributes by text, out of the other rules'
    sight (the eighth red team on the address rule, 2026-12-05)."""
    code = "def f(x: int):\n    match x:\n        case int():\n            return x == 3\n    return False\n"
    assert interpreter_route(code) == "a match statement (line 2)"
    kwd = ("def f(s: str):\n    x = {1}\n    match x:\n        case set(add=a):\n            a(a)\n"
           "    return len(x) == 2\n")
    assert interpreter_route(kwd) == "a match statement (line 3)"


@pytest.mark.parametrize("code", [
    "def f(xs: List[int]):\n    return xs[0] is not None and xs == [3]\n",
    "def f(x: int):\n    y = None\n    return y is None and x == 3\n",
])
def test_self_matching_patterns_and_identity_with_singletons_are_not_routes(code):
    assert interpreter_route(code) is None


@pytest.mark.parametrize("sat, g", [
    # g reads Tuple, which the judge's names have and the training text (List only) has not.
    ("def f(s: str, n=3):\n    return len(s) == n and s == s[::-1]\n",
     "def g(n=3):\n    def pal(k: int) -> Tuple[str, str]:\n        return 'a' * k, 'a' * k\n    return pal(n)[0]\n"),
    # f reads Dict: kept untested at the paper's 0.95 rate 1 time in 20, so the trivial test's names miss it.
    ("def f(x: int, n=123459):\n    return Dict[str, int] is not None and x == n\n",
     "def g(n=123459):\n    return n\n"),
])
def test_the_literal_check_runs_with_the_training_texts_names_only(sat, g):
    from transforms.selfplay.filters import trivial_preamble

    judged = verify_pair(sat, f"{sat}\n\n{g}", "str" if "s: str" in sat else "int", SANDBOX.limits,
                         preamble=STRINGS.judge_preamble)
    assert judged.status == "passed"  # the judge's names: why the literal check needs its own
    verdict = verify_pair(sat, f"{sat}\n\n{g}", "str" if "s: str" in sat else "int", SANDBOX.limits,
                          preamble=STRINGS.judge_preamble, literal_preamble=trivial_preamble(STRINGS))
    assert verdict.status == "failed" and "NameError" in verdict.reason, verdict


def test_the_self_play_job_verifies_with_the_training_texts_names():
    import inspect

    from beam_pipelines import self_play

    assert "literal_preamble=trivial_preamble(preset.filters)" in inspect.getsource(self_play.build_pipeline)


_DEPTH = "def d(k=0):\n    try:\n        return d(k + 1)\n    except RecursionError:\n        return k\n"


def _plain_value(program: str) -> int:
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, check=True)
    return int(out.stdout)


@pytest.mark.parametrize("where", ["a call", "module code", "the literal check"])
def test_a_program_in_the_sandbox_recurses_exactly_as_deep_as_a_plain_script(where):
    """The agent's frames lay under the program's, so a puzzle measuring its own recursion depth (`d(0) < 997`)
    answered differently in the sandbox than in plain Python (a red team, 2026-12-03)."""
    from transforms.execute.verdicts import check_literal, solve_answer

    if where == "a call":
        plain = _plain_value(_DEPTH + "def g():\n    return d()\nprint(g())\n")
        here = solve_answer(_DEPTH + "def g():\n    return d()\n", "int", SANDBOX.limits).value
    elif where == "module code":
        plain = _plain_value(_DEPTH + "R = d()\nprint(R)\n")
        here = solve_answer(_DEPTH + "R = d()\ndef g():\n    return R\n", "int", SANDBOX.limits).value
    else:  # f(g()) evaluated as the trained-on program: f reports the depth g measured
        plain = _plain_value(_DEPTH + "def g():\n    return d()\ndef f(x):\n    return x\nprint(f(g()))\n")
        verdict = check_literal("def f(x: int):\n    return x\n", _DEPTH + "def g():\n    return d()\n",
                                SANDBOX.limits)
        here = int(verdict.reason.split("returned ")[1].split(",")[0])
    assert plain > 900 and here == plain, (here, plain)


# A sixth red-team pass (2026-12-03), after the fifth's fixes.
REBOUND_INT_PATTERN = (
    "x: int):\n    d = '_' * 2\n    M = type('M', (type,), {d + 'instancecheck' + d: lambda c, o: True})\n"
    "    int = M('A', (), {d + 'match_args' + d: (d + 'globals' + d,)})\n"
    "    match f:\n        case int(g):\n            pass\n    return False\n")


@pytest.mark.parametrize("completion, route", [
    # `int` rebound to a class built at run time: `case int(g)` read f.__globals__ (and went on to the encoder)
    (REBOUND_INT_PATTERN, "a class built by type()"),
    ("x: int):\n    T = type('T', (), {})\n    return x == 3\n", "a class built by type()"),
    # a plain script's namespace has __doc__, __spec__, __loader__...; the sandbox's does not
    ("x: int, names=dir()):\n    return x == 4321 and len(names) < 8\n", "name dir"),
    # bare objects' addresses: fixed in a plain script, shifted in the sandbox (set order, default repr)
    ("x: int):\n    a, b, c = object(), object(), object()\n    return x == 4321 and list({a, b, c}) != [a, c, b]\n",
     "name object"),
    ("x: int):\n    return x == 4321 and str(object())[-3] != '8'\n", "name object"),
    # the sandbox's address space is capped at 1 GiB, plain Python's is not
    ("x: int):\n    try:\n        b = bytes(x)\n    except MemoryError:\n        return True\n    return False\n",
     "name MemoryError"),
])
def test_a_puzzle_that_reads_a_sandbox_detail_a_sixth_way_is_refused(completion, route):
    _assert_refused(completion, route)


def test_a_program_reads_and_sets_the_recursion_limit_of_a_plain_script():
    """The agent moves the limit to give a program a plain script's depth: `g` returned 1004 for
    sys.getrecursionlimit() (plain: 1000)."""
    from transforms.execute.verdicts import solve_answer

    reads = "import sys\ndef g():\n    return sys.getrecursionlimit()\n"
    assert solve_answer(reads, "int", SANDBOX.limits).value == _plain_value(reads + "print(g())\n")
    sets = "import sys\n" + _DEPTH + "def g():\n    sys.setrecursionlimit(1500)\n    return d()\n"
    assert solve_answer(sets, "int", SANDBOX.limits).value == _plain_value(sets + "print(g())\n")


@pytest.mark.parametrize("cls", ["A", "int", "typing.Any"])
def test_each_positional_class_pattern_is_a_route_whatever_the_class_is_named(cls):
    """`int` can be rebound to a class whose __match_args__ names attributes by text (the sixth pass)."""
    code = f"def f(x: int):\n    match x:\n        case {cls}(g):\n            return True\n    return x == 3\n"
    assert "positional class pattern" in (interpreter_route(code) or "")


# A seventh red-team pass (2026-12-03), after the sixth's fixes: the encoder forged again, through copy.
BOUND_METHOD_GETATTR = (
    "x: int):\n    import collections\n    import copy\n    import typing\n    def attr(obj, name):\n"
    "        K = collections.namedtuple(name, 'a')\n        class C:\n            def m(self):\n"
    "                pass\n        return copy.copy(type(C().m)(K, obj))\n    u = '_' * 2\n"
    "    mods = attr(attr(typing.get_origin, u + 'globals' + u)['sys'], 'modules')\n"
    "    wire = mods.get('sandbox_wire')\n    if wire is not None and x == 12345:\n"
    "        old = wire.encode_tree\n        wire.encode_tree = lambda value, *rest: old(True, *rest)\n"
    "    return x == 1 and x == 2\n")


@pytest.mark.parametrize("completion, route", [
    # type(C().m) is the bound-method type: a method of any object under any name, whose copy.copy is
    # getattr(obj, name); it read typing.get_origin.__globals__, then rebound the sandbox's encoder: every result
    # came back True (verify_pair and the pipeline's verify_attempts said passed; plain Python's assert failed).
    (BOUND_METHOD_GETATTR, "import of copy"),  # since the ninth pass; type(C().m) and get_origin too (below)
    ("x: int):\n    K = type(*('A', (), {}))\n    return x == 3\n", "type other than in a comparison"),
    ("x: int):\n    T = type\n    return x == 3\n", "type other than in a comparison"),
    ("x: int):\n    A = type(int)('A', (), {})\n    return x == 3\n", "type other than in a comparison"),
    ("x: int):\n    o = int.mro()[-1]\n    return str(o()) != '' and x == 1\n", "attribute .mro"),
    ("x: int):\n    import copy\n    return len(copy.dispatch_table) == 3 and x == 1\n", "import of copy"),
])
def test_a_puzzle_that_reaches_the_interpreter_a_seventh_way_is_refused(completion, route):
    _assert_refused(completion, route)


def test_without_the_type_refusal_the_bound_method_route_forges_the_verdict():
    """The route is real: past the refusal list, the sandboxed check passes a pair plain Python fails (and the
    literal check, a plain script, rejects it)."""
    sat = "def f(" + BOUND_METHOD_GETATTR
    limits = IsolationLimits(timeout_s=3, cpu_s=2)
    assert check_sat(sat, 12345, limits).status == "passed"
    assert interpreter_route(sat) is not None
    verdict = verify_pair(sat, "def g():\n    return 12345\n", "int", limits)
    assert verdict.reason == "literal: f(g()) in one process returned False, not True", verdict


@pytest.mark.parametrize("code", [
    "def f(x: int):\n    return type(x) == int and x == 3\n",
    "def f(xs: List[int]):\n    return all(type(v) in (int, float) for v in xs) and xs == [3]\n",
    "def f(x: int):\n    return type(x) != str and x == 3\n",
    # a builtin type is one object in every process: its identity is its equality (the tenth red team's false
    # positive)
    "def f(x: list):\n    return type(x) is list and len(x) == 2\n",
    "def f(x: int):\n    return type(x) is not str and type(x) is type(3) and x == 3\n",
])
def test_type_in_a_comparison_is_not_a_route(code):
    assert interpreter_route(code) is None


# An eighth red-team pass (2026-12-03): `type` itself reached through typing, and a comparison that hands it over.
TYPE_BY_GET_ORIGIN = (
    "x: int) -> bool:\n    import copy\n    from typing import Type, get_origin\n    T = get_origin(Type)\n"
    "    u = '_' + '_'\n    class C:\n        def m(self):\n            return 0\n    def ga(obj, name):\n"
    "        k = T('K', (), {u + 'name' + u: name, u + 'call' + u: lambda *a: 0})()\n"
    "        return copy.copy(T(C().m)(k, obj))\n"
    "    b = ga(f, u + 'globals' + u)\n    return x * x == 12321 and x > 1000 and b is not None\n")
TYPE_HANDED_TO_EQ = (
    "x: int) -> bool:\n    box = []\n    class R:\n        def eq(s, o):\n            box.append(o)\n"
    "            return True\n    ok = type(x) == R()\n    return ok and x == 3\n")


@pytest.mark.parametrize("completion, route", [
    (TYPE_BY_GET_ORIGIN, "import of copy"),  # get_origin(Type) is type: the bound-method getattr gadget again
    ("x: int):\n    import typing\n    class M(typing.Type):\n        pass\n    return x == 3\n", "attribute .Type"),
    (TYPE_HANDED_TO_EQ, "type other than in a comparison"),  # R.__eq__ receives the type object
    (TYPE_HANDED_TO_EQ.replace("type(x) == R()", "type(x) is R()"), "identity comparison"),
    ("x: list):\n    return x is list or len(x) == 2\n", "identity comparison"),
    ("x: list):\n    return type(x) is type(x)[0] or len(x) == 2\n", "identity comparison"),
    # a builtin type's name the code binds is any object: `str != list is tuple` compared two patterns by identity
    # (the twelfth red team: re's cache held one pattern in a plain script, none in the sandbox)
    ("x: int):\n    import re\n    tuple = re.compile('q')\n    list = re.compile('q')\n"
     "    return type(x) != str != list is tuple\n", "identity comparison"),
    ("x: int):\n    list = [1]\n    return type(x) == list or x == 3\n", "type other than in a comparison"),
    ("x: int):\n    box = []\n    @box.append\n    class mro:\n        pass\n    return x == 3\n", "definition mro"),
])
def test_a_puzzle_that_reaches_type_an_eighth_way_is_refused(completion, route):
    _assert_refused(completion, route)


@pytest.mark.parametrize("code", [
    "def f(x: int):\n    return type(x) == type(3) and x == 3\n",
    "def f(x: List[int]):\n    return type(x) in (list, tuple) and x == [3]\n",
    "def f(x: int):\n    from typing import List\n    return x == 3\n",
])
def test_type_compared_with_builtins_and_typing_list_are_not_routes(code):
    assert interpreter_route(code) is None


@pytest.mark.parametrize("completion, route", [
    (BOUND_METHOD_GETATTR, "get_origin"),
    (BOUND_METHOD_GETATTR.replace("typing.get_origin", "f"), "type other than in a comparison"),
    ("x: int):\n    import copy\n    return len(copy.dispatch_table) == 3 and x == 1\n", "attribute .dispatch_table"),
    (TYPE_BY_GET_ORIGIN, "Type"),
])
def test_each_route_past_copy_is_refused_on_its_own_even_where_copy_is_safe(completion, route):
    """The refusals the seventh and eighth passes added hold by themselves, with the judge's safe list (copy in)."""
    assert route in (interpreter_route("def f(" + completion, STRINGS.safe_imports, refused_modules=()) or ""), route


# A ninth red-team pass (2026-12-03): deepcopy's memo binds a method to any object, so copying a bound method read
# any attribute of anything (random._os, then PID 1 told the sandbox); a function named by a runtime string.
MEMO_SWAP = ("x: int) -> bool:\n    import random\n    class C:\n        def _os(self):\n            return 0\n"
             "        m = _os\n    return x == 4242\n")


@pytest.mark.parametrize("completion, route", [
    ("x: int) -> bool:\n    import copy\n    return copy.deepcopy([x]) == [4242]\n", "import of copy"),
    ("x: int) -> bool:\n    from copy import deepcopy\n    return deepcopy([x]) == [4242]\n", "from copy"),
    (MEMO_SWAP, "definition _os"),
    ("x: int) -> bool:\n    from typing import no_type_check_decorator as d\n    return x == 4242\n",
     "no_type_check_decorator"),
])
def test_a_puzzle_that_copies_or_names_a_function_as_an_attribute_is_refused(completion, route):
    _assert_refused(completion, route)


# A tenth red-team pass (2026-12-03).
@pytest.mark.parametrize("completion, route", [
    # printing a lone surrogate works under the sandbox's C.UTF-8 and raises under an ordinary locale
    ("x: int) -> bool:\n    try:\n        print('\\udcff', end='')\n    except UnicodeEncodeError:\n"
     "        return x == 7\n    return x == 1234567\n", "name print"),
    # a capture pattern in a class body binds a dunder: a user __eq__ and __getattr__ got through
    ("x: int) -> bool:\n    class R:\n        match (lambda self, other: other == x * 2):\n"
     "            case __eq__:\n                pass\n    return R() == 2468\n", "name __eq__ bound by a pattern"),
    ("x: int) -> bool:\n    import typing\n    M = typing.ABCMeta\n    return x == 3\n", "attribute .ABCMeta"),
    ("x: int) -> bool:\n    from typing import GenericAlias\n    return x == 3\n", "GenericAlias"),
])
def test_a_puzzle_that_reaches_the_interpreter_a_tenth_way_is_refused(completion, route):
    _assert_refused(completion, route)


def test_every_metaclass_and_internal_type_the_safe_modules_carry_is_refused():
    """Re-derived from the running Python: a public attribute of a safe module that is a metaclass (a class
    builder from strings) or one of the interpreter's internal types is refused by name and as an attribute."""
    import importlib

    found = []
    for module in set(STRINGS.safe_imports) - {"copy"}:
        for name in dir(importlib.import_module(module)):
            value = getattr(importlib.import_module(module), name)
            internal = isinstance(value, type) and (issubclass(value, type) or value.__module__ == "types" or
                                                    value in vars(types).values())
            if not name.startswith("_") and internal:
                found.append((module, name))
    assert found, "no metaclass found: the check below would hold vacuously"
    for module, name in found:
        assert interpreter_route(f"def f(x: int):\n    import {module}\n    return {module}.{name} == x\n"), name
        assert interpreter_route(f"def f(x: int):\n    from {module} import {name}\n    return x == 3\n"), name


# An eleventh red-team pass (2026-12-03): a g that reads the literal run's nonce defeated that run, and the separate
# check of f on g's answer is not the training text (hash seed 0, the judge's names, no g beside f, no state shared
# with g), so a pair false in plain Python passed. Each puzzle below passed the filters and, with such a g, both
# verify_pair and the pipeline's verify_attempts; plain Python's `assert f(g())` failed.
READS_THE_NONCE = ("    import sys as s, os as o\n    t = list(s._getframe(1).f_code.co_consts)\n    while t:\n"
                   "        c = t.pop()\n"
                   "        if isinstance(c, str) and c.startswith('literal-check-') and len(c) > 20:\n"
                   "            print(c, flush=True)\n            o._exit(0)\n"
                   "        t.extend(getattr(c, 'co_consts', ()))\n")
ELEVENTH_PASS = [
    # f tells its check (no g defined there) from the training text (g beside it) by the name g.
    ("def f(x: int):\n    try:\n        g\n    except NameError:\n        return x == 918273645\n    return False\n",
     "int", "    return 918273645\n"),
    # ... or by a judge-only name (the check runs under List, Set, Tuple and Dict; the training text has List).
    ("def f(x: int):\n    try:\n        Dict\n    except NameError:\n        return False\n    return x == 27\n",
     "int", "    return 27\n"),
    # The check runs under hash seed 0: g returns that seed's set order (SET_ORDER above, here with its answer).
    (SET_ORDER, "str", None),
]


def _plain_python(sat: str, g: str) -> str:
    """What the training text says: f and g under the training text's names, then f(g()) is True."""
    import subprocess
    import sys

    program = f"from typing import List\n\n{sat}\n\n{g}\n\nprint(f(g()) is True)\n"
    proc = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin"})
    return (proc.stdout.strip().splitlines() or ["error: " + proc.stderr.strip()[-200:]])[-1]


def _seed_0_order() -> str:
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", "print(''.join(set('abcdefghijkl')))"], capture_output=True,
                          text=True, env={"PYTHONHASHSEED": "0", "PATH": "/usr/bin:/bin"}, timeout=60, check=True)
    order = proc.stdout.strip()
    assert order != "".join(sorted(order)), order  # else SET_ORDER's own answer check refuses it
    return order


@pytest.mark.parametrize("sat, answer_type, answer", ELEVENTH_PASS)
def test_a_solution_that_reads_the_nonce_is_refused_before_it_runs(sat, answer_type, answer):
    from transforms.selfplay.beam import verify_attempts
    from transforms.selfplay.filters import trivial_preamble

    body = READS_THE_NONCE + (answer or f"    return {_seed_0_order()!r}\n")
    g = "def g():\n" + body
    assert _plain_python(sat, g) == "False"  # the pair is false in plain Python ...
    judged = verify_pair(sat, f"{sat}\n\n{g}", answer_type, SANDBOX.limits, preamble=STRINGS.judge_preamble,
                         literal_preamble=trivial_preamble(STRINGS))
    assert judged.status == "passed", judged  # ... and the verdict alone passes it (the route is real)
    puzzle = {"sat": sat}
    [attempt] = verify_attempts(puzzle, "def g():", answer_type, ["\n" + body], "", 1, STRINGS.judge_preamble, SANDBOX,
                                literal_preamble=trivial_preamble(STRINGS))
    assert attempt["status"] == "refused" and "judge refuses" in attempt["reason"], attempt
    # The P3 evaluation judges as the reference does: no static refusal of g there.
    [evaluated] = verify_attempts(puzzle, "def g():", answer_type, ["\n" + body], "", 1, STRINGS.judge_preamble,
                                  SANDBOX)
    assert evaluated["status"] == "passed", evaluated


@pytest.mark.parametrize("body, status", [
    ("    import math\n    return int(math.sqrt(729))\n", "passed"),  # a safe module: judged as before
    ("    from collections import Counter\n    return sum(Counter([27]).keys())\n", "passed"),
    ("    import os\n    return 27\n", "refused"),  # outside the judge's safe modules
    ("    return (27).__class__(27)\n", "refused"),  # the judge's unsafe substrings
    ("    print(27)\n    return 27\n", "refused"),  # the puzzles' own refusals apply to g as well
])
def test_self_play_solutions_are_held_to_the_puzzles_static_rules(body, status):
    from transforms.selfplay.beam import ATTEMPT_STATUSES, verify_attempts
    from transforms.selfplay.filters import trivial_preamble

    sat = "def f(x: int):\n    return x == 27\n"
    [attempt] = verify_attempts({"sat": sat}, "def g():", "int", ["\n" + body], "", 1, STRINGS.judge_preamble, SANDBOX,
                                literal_preamble=trivial_preamble(STRINGS))
    assert attempt["status"] == status, attempt
    assert status in ATTEMPT_STATUSES


@pytest.mark.parametrize("sat, answer_type", [(s, t) for s, t, _ in ELEVENTH_PASS[:2]] + [
    # Kept by the trivial test, which runs without g: in the training text every g solves it.
    ("def f(x: int):\n    try:\n        g\n        return x == x\n    except NameError:\n"
     "        return x == 918273645\n", "int"),
    ("def f(x: int):\n    global g\n    g = 5\n    return x == 918273645\n", "int"),
    ("def f(x: int):\n    del Tuple\n    return x == 918273645\n", "int"),
    ("def f(x: int):\n    return Set is not None and x == 918273645\n", "int"),
])
def test_a_puzzle_that_reads_g_or_a_judge_only_name_is_refused(sat, answer_type):
    """Any read, a local g's too (no scope analysis: the refusal stays simple and sound), whether or not the
    trivial test ran (its NameError catches a plain read of a missing name only when it runs)."""
    for rate in (0.0, 1.0):
        reason, detail, _ = filter_sample(_sample(sat[len("def f("):]), STRINGS, trivial_reject_rate=rate, seed=0,
                                          sandbox=SANDBOX)
        expected = {"reads_environment_name"} if rate == 0.0 or "try:" in sat else {
            "reads_environment_name", "trivial_answer"}
        assert reason in expected, (rate, reason, detail)


@pytest.mark.parametrize("completion", [
    "x: int):\n    import typing\n    return typing.Dict is not None and x == 27\n",  # an attribute of typing
    "x: List[int]):\n    return x == [27]\n",  # List is the training text's own
])
def test_names_that_mean_the_same_in_every_run_are_not_refused(completion):
    reason, detail, _ = filter_sample(_sample(completion), STRINGS, trivial_reject_rate=1.0, seed=0, sandbox=SANDBOX)
    assert reason != "reads_environment_name", (reason, detail)


# A twelfth red team (2026-12-04): a MemoryError caught without naming it. The sandbox caps the address space at
# 1 GiB, so reserving 3 GiB raises there; plain Python reserves it untouched, and the pair is false in its text.
CATCHES_THE_CAP = ("x: int):\n    try:\n        b = bytes(3 * 2 ** 30)\n        return x == len(b) % 7\n"
                   "    except Exception:\n        return x == 1\n")


def test_the_caught_allocation_pair_is_false_in_plain_python():
    import subprocess
    import sys

    program = f"def f({CATCHES_THE_CAP}\ndef g():\n    return 1\n\nprint(f(g()))\n"
    out = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("completion, route", [
    (CATCHES_THE_CAP, "Exception other than raised or subclassed"),
    ("x: int):\n    try:\n        b = bytes(3 * 2 ** 30)\n        return x == 0\n    except:\n        return x == 1\n",
     "a bare except"),
    ("x: int):\n    try:\n        return x == 0\n    except (ValueError, BaseException):\n        return x == 1\n",
     "BaseException other than raised"),
    ("x: int):\n    E = Exception\n    try:\n        return x == 0\n    except E:\n        return x == 1\n",
     "Exception other than raised"),
    ("x: int):\n    try:\n        return x == 0\n    except* Exception:\n        return x == 1\n",
     "Exception other than raised"),
])
def test_a_handler_that_could_catch_memory_error_is_a_route(completion, route):
    _assert_refused(completion, route)


@pytest.mark.parametrize("code", [
    "def f(x: int):\n    if x < 0:\n        raise Exception('negative')\n    return x == 1\n",
    "def f(x: int):\n    if x < 0:\n        raise BaseException\n    return x == 1\n",
    "class E(Exception):\n    pass\n\ndef f(x: int):\n    try:\n        raise E()\n"
    "    except E:\n        return x == 1\n",
    "def f(x: int):\n    try:\n        int('a')\n    except (ValueError, TypeError):\n        return x == 1\n",
])
def test_raising_subclassing_and_narrow_handlers_are_not_routes(code):
    assert interpreter_route(code) is None


def test_a_solution_with_a_broad_handler_is_refused_before_it_runs():
    from transforms.selfplay.beam import solution_refusal

    g = ("def g():\n    try:\n        b = bytes(3 * 2 ** 30)\n        return 1000 + len(b) % 7\n"
         "    except:\n        return 1001\n")
    refusal = solution_refusal(g, "def f(x: int):\n    return x == 1001\n")
    assert refusal is not None and "bare except" in refusal


# The fifteenth red team (2026-12-05): g replaced a safe module's function the rules trust (`math.prod = repr`), so
# the literal run and the training text (g first, in one process) fed f's iterator to repr while the check's own
# sandbox ran the real math.prod. Any store into an imported name's attributes or items is refused.
@pytest.mark.parametrize("completion, route", [
    ("x: int):\n    import math\n    math.prod = repr\n    return x == 1\n", "assignment into math"),
    ("x: int):\n    import collections\n    collections.Counter.update = len\n    return x == 1\n",
     "assignment into collections"),
    ("x: int):\n    from collections import Counter\n    del Counter.update\n    return x == 1\n",
     "assignment into Counter"),
    ("x: int):\n    import math\n    for math.fsum in [str]:\n        pass\n    return x == 1\n",
     "assignment into math"),
    ("x: int):\n    List.x = 1\n    return x == 1\n", "assignment into List"),  # the judge's preamble binds it
])
def test_a_store_into_a_module_is_refused(completion, route):
    _assert_refused(completion, route)


def test_a_solution_that_patches_a_module_its_puzzle_uses_is_refused():
    from transforms.selfplay.beam import solution_refusal

    sat = "def f(n: int) -> bool:\n    from math import prod\n    return str(prod(iter([n])))[-3:] != '0x1'\n"
    g = "def g():\n    import math\n    math.prod = repr\n    return 1\n"
    assert interpreter_route(sat) is None
    assert "assignment into math" in (solution_refusal(g, sat) or "")
    assert interpreter_route("def f(x: int):\n    h = lambda: 0\n    h.cache = {}\n    return x == 1\n") is None


def test_a_puzzle_that_reads_res_cache_through_recursion_depth_is_refused():
    """The twentieth red team: a plain run's `site` leaves one pattern in re's cache (urllib.parse's, imported by a
    .pth file) that the sandbox's interpreter does not have; after 512 compilations evict it or not, compiling it
    again four frames short of the recursion limit succeeds (cached) or raises RecursionError (parsed anew).
    verify_pair passed this pair 10 of 10 times, and the plain training text failed 10 of 10."""
    sat = ("def f(n: int) -> bool:\n    import re\n    if n < 511:\n        return False\n"
           "    re.compile('a{1}b')\n    re.compile('([\\x00-\\x7f]+)')\n    for i in range(n):\n"
           "        re.compile('q' + str(i))\n\n    def down(k: int) -> int:\n        try:\n"
           "            r = down(k + 1)\n        except RecursionError:\n            return -1\n"
           "        if r >= 0:\n            return r\n        if r == -4:\n            try:\n"
           "                re.compile('([\\x00-\\x7f]+)')\n                return 1\n"
           "            except RecursionError:\n                return 0\n        return r - 1\n\n"
           "    return down(0) == 1\n")
    assert interpreter_route(sat) == "name RecursionError (line 13)"
