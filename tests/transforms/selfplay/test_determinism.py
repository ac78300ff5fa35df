"""Self-play refuses a puzzle or solution that may draw from randomness not seeded by a constant: such a pair,
true with probability p, passes the sound check and the literal check each with probability p, so it would be
kept about p² of the time with a training text that is not a verified pair. Each refusal below is static: the
verdict does not rest on what a draw came to."""
from __future__ import annotations

import json

import pytest

from transforms.execute.isolation import IsolationLimits
from transforms.selfplay import filters
from transforms.selfplay.beam import SandboxSettings, filter_sample, solution_refusal, verify_attempts
from transforms.selfplay.determinism import REASON, constant_seed, unseeded_random_route
from transforms.selfplay.preset import load_preset

STRINGS = load_preset().filters
SANDBOX = SandboxSettings(IsolationLimits(timeout_s=3, cpu_s=2), workers=1)

# The two pairs of the problem: the draw in f, or the draw in g.
DRAWING_PUZZLE = "def f(x: int):\n    import random\n    return x == random.randint(0, 1)\n"
CONSTANT_SOLUTION = "\n    return 0\n"
PLAIN_PUZZLE = "def f(x: int):\n    return x == 0\n"
DRAWING_SOLUTION = "\n    import random\n    return random.randint(0, 1)\n"


def _f(body: str) -> str:
    return "def f(x: int):\n" + body


@pytest.mark.parametrize("code, route", [
    (_f("    import random\n    return x == random.randint(0, 1)\n"), "random other than as random.Random"),
    (_f("    import random as r\n    return x == r.randint(0, 1)\n"), "r other than as r.Random"),
    (_f("    from random import randint\n    return x == randint(0, 1)\n"), "from random import randint"),
    (_f("    from random import randint as ri\n    return x == ri(0, 1)\n"), "from random import randint"),
    (_f("    from random import *\n    return x == randint(0, 1)\n"), "from random import *"),
    (_f("    from random import SystemRandom\n    return x == SystemRandom().randint(0, 1)\n"),
     "from random import SystemRandom"),
    (_f("    import random\n    return x == random.SystemRandom().randint(0, 1)\n"), "random other than"),
    (_f("    import random\n    random.seed()\n    return x == 3\n"), "seed"),
    (_f("    import random\n    random.seed(0)\n    return x == random.randint(0, 9)\n"), "random other than"),
    (_f("    import random\n    return x == random.Random().randint(0, 1)\n"), "random other than"),
    (_f("    import random\n    return x == random.Random(None).randint(0, 1)\n"), "random other than"),
    (_f("    import random\n    return x == random.Random(x).randint(0, 1)\n"), "random other than"),
    (_f("    import random\n    return x == random.Random(seed=4).randint(0, 1)\n"), "random other than"),
    (_f("    import random\n    return x == random.Random(*[4]).randint(0, 1)\n"), "random other than"),
    (_f("    from random import Random\n    return x == Random().randint(0, 1)\n"), "Random other than called"),
    (_f("    from random import Random as R\n    return x == R(x).randint(0, 1)\n"), "R other than called"),
    (_f("    from random import Random\n    class R(Random):\n        pass\n    return x == 3\n"), "Random other"),
    (_f("    import random\n    r = random\n    return x == r.randint(0, 1)\n"), "random other than"),
    (_f("    import random\n    C = random.Random\n    return x == C(1).randint(0, 1)\n"), "random other than"),
    (_f("    import random\n    return x == getattr(random, 'randint')(0, 1)\n"), "random other than"),
    (_f("    import random\n    rng = random.Random(42)\n    rng.seed()\n    return x == rng.randint(0, 1)\n"),
     ".seed other than with a constant seed"),
    (_f("    import random\n    rng = random.Random(42)\n    rng.seed(None)\n    return x == 3\n"), ".seed"),
    (_f("    import random\n    s = random.Random(42).seed\n    s()\n    return x == 3\n"), ".seed"),
    # The bare name is the module whether imported here or not (the seed preset's preamble imports it).
    (_f("    return x == random.randint(0, 1)\n"), "random other than"),
    ("def g():\n    return random.choice([0, 1])\n", "random other than"),
    (_f("    import math, random\n    return x == random.random() < 0.5\n"), "random other than"),
    # An import in a class body binds a class attribute, read by attribute name (K.m), not by a name.
    (_f("    class K:\n        import random as m\n    return x == K.m.randint(0, 1)\n"), "in a class body"),
    (_f("    class K:\n        from random import Random\n    return x == K.Random().randint(0, 1)\n"),
     "in a class body"),
])
def test_a_draw_not_seeded_by_a_constant_is_refused(code, route):
    assert route in (unseeded_random_route(code) or ""), unseeded_random_route(code)


@pytest.mark.parametrize("code", [
    "def f(x: int):\n    return x * x == 12321\n",
    "def f(s: str):\n    import math\n    return len(s) == math.isqrt(49) and s.count('r') == 2\n",
    _f("    import random\n    return x == random.Random(42).randint(0, 9)\n"),
    "def f(xs: List[int]):\n    import random\n    rng = random.Random('seed')\n    ys = list(range(9))\n"
    "    rng.shuffle(ys)\n    return xs == ys\n",
    _f("    from random import Random\n    return x == Random(-7).randint(0, 9)\n"),
    _f("    from random import Random as R\n    return x == R(b'k').random() * 0 + R(1.5).randint(0, 9)\n"),
    _f("    import random as r\n    rng = r.Random(3)\n    rng.seed(4)\n    return x == rng.randint(0, 9)\n"),
    "def g():\n    import random\n    return random.Random(0).sample(range(100), 3)\n",
    _f("    class K:\n        def h(self):\n            import random\n            return random.Random(3).random()\n"
       "    return x == int(K().h() * 100)\n"),  # an import in a method binds a local
])
def test_a_generator_seeded_by_a_constant_or_no_random_at_all_is_allowed(code):
    assert unseeded_random_route(code) is None


@pytest.mark.parametrize("node, seeded", [
    ("42", True), ("-42", True), ("1.5", True), ("'s'", True), ("b's'", True),
    ("None", False), ("x", False), ("1j", False), ("-x", False), ("-'s'", False), ("4 + 2", False),
])
def test_a_constant_seed_is_a_literal_every_run_agrees_on(node, seeded):
    import ast

    assert constant_seed(ast.parse(node, mode="eval").body) is seeded


def test_the_safe_modules_carry_no_generator():
    """Re-derived from the running Python: no public attribute of a safe import is the random module, a
    generator, or one of the global generator's bound methods, so ``random`` is reached only by its own name."""
    import importlib
    import random

    safe = set(STRINGS.safe_imports) - {"random"}
    assert safe
    for name in safe:
        for attribute, value in vars(importlib.import_module(name)).items():
            if attribute.startswith("_"):
                continue  # private attributes are refused by introspection.interpreter_route
            assert value is not random and not isinstance(value, random.Random), (name, attribute)
            assert not isinstance(getattr(value, "__self__", None), random.Random), (name, attribute)


def test_p3_puzzles_that_use_random_are_the_only_ones_refused(shared_data):
    """The rule is for model-written self-play code; on the human-written P3 puzzles (which it never judges) it
    refuses only puzzles that use the ``random`` module, those that seed the global generator."""
    puzzles = json.loads((shared_data / "p3" / "puzzles.json").read_text())
    assert puzzles
    refused = {p["name"] for p in puzzles if unseeded_random_route(p["sat"])}
    assert refused == {p["name"] for p in puzzles if "random" in p["sat"]}
    assert all(name.startswith("BirthdayParadoxMonteCarlo:") for name in refused), refused


# ------------------------------------------------------------------------------ through the real entry points

def _sample(text: str) -> dict:
    return {"preset": "paper", "head": "def f(", "text": text, "prompt_index": 0, "sample_index": 0, "k": 0,
            "examples": [], "seed": 0}


@pytest.mark.parametrize("puzzle", [
    DRAWING_PUZZLE,
    "def f(x: int):\n    from random import choice\n    return x == choice([0, 1])\n",
    "def f(x: int, n=0):\n    import random\n    random.seed()\n    return x == random.randrange(2) + n\n",
])
@pytest.mark.parametrize("rate", [0.0, 1.0])
def test_the_self_play_filter_refuses_a_drawing_puzzle_before_it_runs(puzzle, rate):
    """Refused whether or not the trivial test would run (it would run the draw: trivial_answer by chance)."""
    reason, detail, _ = filter_sample(_sample(puzzle[len("def f("):]), STRINGS, trivial_reject_rate=rate, seed=0,
                                      sandbox=SANDBOX)
    assert reason == REASON == "draws_unseeded_random" and "line" in detail, (reason, detail)


def test_the_pure_filter_refuses_a_drawing_puzzle_in_its_order(run_in_process):
    seeded = "def f(x: int):\n    import random\n    return x == random.Random(7).randint(200, 900)\n"
    outcomes = filters.filter_puzzles([DRAWING_PUZZLE, seeded], run_in_process, trivial_reject_rate=1.0)
    assert [o.reason for o in outcomes] == ["draws_unseeded_random", None]
    assert filters.REASONS.index("reaches_interpreter") < filters.REASONS.index(REASON) < filters.REASONS.index(
        "return_true_failed")
    # the reaches_interpreter refusal still comes first
    both = "def f(x: int):\n    import random\n    return x == random.randint(0, 1) and __name__ != ''\n"
    assert [o.reason for o in filters.filter_puzzles([both], run_in_process)] == ["reaches_interpreter"]


def test_a_puzzle_seeded_by_a_constant_passes_the_self_play_filter():
    puzzle = "x: int):\n    import random\n    return x == random.Random(7).randint(200, 900)\n"
    reason, detail, _ = filter_sample(_sample(puzzle), STRINGS, trivial_reject_rate=1.0, seed=0, sandbox=SANDBOX)
    assert reason is None, (reason, detail)


@pytest.mark.parametrize("sat, body", [(PLAIN_PUZZLE, DRAWING_SOLUTION), (DRAWING_PUZZLE, CONSTANT_SOLUTION)])
def test_self_play_refuses_a_pair_with_a_draw_before_it_runs(sat, body):
    """The solution is held to the rule with its puzzle in front, as the training text has it: either pair ends
    ``refused`` whatever a draw would have given."""
    literal = filters.trivial_preamble(STRINGS)
    [attempt] = verify_attempts({"sat": sat}, "def g():", "int", [body], "", 1, STRINGS.judge_preamble, SANDBOX,
                                literal_preamble=literal)
    assert attempt["status"] == "refused", attempt
    assert attempt["reason"].startswith("the solution draws from randomness not seeded by a constant"), attempt


def test_the_p3_evaluation_judges_a_drawing_solution_as_the_reference_does():
    """Without ``literal_preamble`` (the P3 evaluation) nothing is refused statically: the attempt is judged."""
    [attempt] = verify_attempts({"sat": PLAIN_PUZZLE}, "def g():", "int", [DRAWING_SOLUTION], "", 1,
                                STRINGS.judge_preamble, SANDBOX)
    assert attempt["status"] in ("passed", "failed"), attempt


def test_a_solution_is_judged_with_the_names_its_puzzle_imports():
    """A seed-preset puzzle carries its imports in front; its g reads them without importing (``r`` below)."""
    sat = "import random as r\n\ndef f(x: int):\n    return x == 0\n"
    g = "def g():\n    return r.randint(0, 1)\n"
    assert unseeded_random_route(sat) is None  # the puzzle alone is fine
    assert solution_refusal(g) is None  # g alone names no random module ...
    assert "r other than as r.Random" in (solution_refusal(g, sat) or "")  # ... beside its puzzle it does
    assert solution_refusal("def g():\n    import random\n    return random.Random(5).randint(0, 1)\n", sat) is None
