"""The reference's filters on the real sandbox: for each one, a generated puzzle it must reject and one it must keep.

A sample is what the generation stage emits: the completion after the paper prompt's ``def f(``.
"""
from __future__ import annotations

import pytest

from transforms.execute.isolation import IsolationLimits
from transforms.selfplay.beam import SandboxSettings, filter_sample
from transforms.selfplay.preset import load_preset

STRINGS = load_preset().filters
SANDBOX = SandboxSettings(IsolationLimits(timeout_s=3, cpu_s=2), workers=1)
# Passes every filter: one typed required argument used in the body, no small int satisfies it.
KEEP = "x: int, n=12321) -> bool:\n    return x * x == n and x > 0\n"


def _sample(text: str, preset: str = "paper", head: str = "def f(") -> dict:
    return {"preset": preset, "head": head, "text": text, "prompt_index": 0, "sample_index": 0, "k": 3,
            "examples": [], "seed": 1}


def _filter(completion: str, rate: float = 1.0):
    reason, _detail, facts = filter_sample(_sample(completion), STRINGS, trivial_reject_rate=rate, seed=0,
                                           sandbox=SANDBOX)
    return reason, facts


def _filter_seed(generated: str):
    """(reason, detail, facts) of a seed-preset sample: an f/g pair after ``def f4(``."""
    return filter_sample(_sample(generated, "seed", "def f4("), STRINGS, trivial_reject_rate=1.0, seed=0,
                         sandbox=SANDBOX)


def test_a_good_puzzle_passes_every_filter_and_is_trivial_tested():
    reason, facts = _filter(KEEP)
    assert reason is None
    assert facts["answer_type"] == "int" and facts["tested"] is True
    assert facts["sat"] == "def f(" + KEEP.strip()


@pytest.mark.parametrize("reason, reject, keep", [
    # starts with def f( and returns
    ("missing_return", "x: int):\n    assert x > 1\n", KEEP),
    # the judge refuses unsafe code before running it
    ("unsafe_code", "x: int):\n    import os\n    return x == os.getpid()\n",
     "x: int):\n    import math\n    return math.isqrt(x) == 111 and x > 12320\n"),
    # `return True` inserted as the first line, then assert f(None): a signature the judge cannot even call
    ("return_true_failed", "x: int, y: int):\n    return x + y == 3\n", KEEP),
    ("return_true_failed", "x: int, n=undefined_name) -> bool:\n    return x == n\n", KEEP),
    # exactly one required, typed argument; the others have defaults; no *args/**kwargs
    ("answer_annotation_invalid", "x, n=12321):\n    return x * x == n and x > 0\n", KEEP),
    ("bad_signature", "x: int, *rest) -> bool:\n    return x * x == 12321 and x > 0\n", KEEP),
    # the answer is used in the body
    ("answer_unused", "x: int) -> bool:\n    return 12321 == 111 * 111\n", KEEP),
    # a bool answer is rejected
    ("bool_answer", "b: bool) -> bool:\n    return b is not False and b\n",
     "s: str) -> bool:\n    return s[::-1] == 'olleh' and len(s) == 5\n"),
    ("unsupported_answer_type", "d: dict) -> bool:\n    return d.get('k') == 12321\n",
     "xs: List[int]) -> bool:\n    return sum(xs) == 12321 and len(xs) == 3\n"),
    # the trivial-answer test: a small value of the answer type satisfies f
    ("trivial_answer", "x: int):\n    return x * 0 == 0\n", KEEP),
    ("trivial_answer", "s: str) -> bool:\n    return len(s) < 4\n", "s: str) -> bool:\n    return len(s) == 40\n"),
    ("trivial_answer", "xs: List[int]) -> bool:\n    return len(xs) <= 2\n",
     "xs: List[int]) -> bool:\n    return len(xs) == 12 and sorted(xs) == xs\n"),
    ("too_long", "x: int) -> bool:\n" + "    y = x\n" * 600 + "    return x == 12321\n", KEEP),
])
def test_each_filter_rejects_its_case_and_keeps_a_good_one(reason, reject, keep):
    assert _filter(reject)[0] == reason
    assert _filter(keep)[0] is None


def test_the_trivial_test_catches_x_times_zero_even_with_a_return_type():
    assert _filter("x: int) -> bool:\n    return x * 0 == 0\n")[0] == "trivial_answer"


def test_untested_puzzles_skip_the_signature_and_trivial_checks_at_the_reference_rate():
    # With the draw always above the rate, the trivial puzzle is kept untested, as the reference keeps 5%.
    reason, facts = _filter("x: int):\n    return x * 0 == 0\n", rate=0.0)
    assert reason is None and facts["tested"] is False


def test_a_text_that_does_not_start_a_function_is_rejected_first():
    sample = {"preset": "paper", "head": "", "text": "print('hello')\n", "prompt_index": 0, "sample_index": 0,
              "k": 3, "examples": [], "seed": 1}
    reason, _, _ = filter_sample(sample, STRINGS, trivial_reject_rate=1.0, seed=0, sandbox=SANDBOX)
    assert reason == "missing_def_f"


def test_a_seed_preset_puzzle_that_imports_passes_the_filters_and_runs_with_its_imports():
    # The seed preset writes f/g pairs; parse_generated puts the import in front of f, where the reference's
    # "starts with def f(" check used to reject every such puzzle as missing_def_f.
    from transforms.execute.verdicts import verify_pair
    from transforms.selfplay.solve import solution_header

    generated = ("x: float) -> bool:\n    return math.isclose(x * x, 2.0)\n\n"
                 "import math\n\ndef g4():\n    return math.sqrt(2.0)\n")
    reason, detail, facts = _filter_seed(generated)
    # Kept after the trivial test ran: without `import math` every candidate would raise NameError (trivial).
    assert (reason, detail) == (None, "")
    assert facts["tested"] is True and facts["answer_type"] == "float"
    sat = "import math\n\ndef f(x: float) -> bool:\n    return math.isclose(x * x, 2.0)"
    assert facts["sat"] == sat
    # The solve and verify stages read the header past the import and run f with it.
    header = solution_header(sat)
    assert header == "def g():"
    verdict = verify_pair(sat, f"{sat}\n\n{header}\n    return math.sqrt(2.0)", "float", SANDBOX.limits,
                          preamble=STRINGS.judge_preamble)
    assert verdict.passed, verdict.reason


def test_a_seed_preset_puzzle_may_use_its_imports_in_its_defaults():
    generated = ("x: float, target=math.pi) -> bool:\n    return abs(math.cos(x) + 1) < 1e-9 and x > 3\n\n"
                 "import math\n\ndef g4(target=math.pi):\n    return target\n")
    reason, detail, facts = _filter_seed(generated)
    assert (reason, detail) == (None, "")
    assert facts["sat"].startswith("import math\n\ndef f(x: float, target=math.pi) -> bool:")
    # A default naming what no import binds is still refused: the def does not evaluate in the judge.
    reason, _, _ = _filter_seed(generated.replace("target=math.pi) -> bool", "target=mth.pi) -> bool"))
    assert reason == "return_true_failed"


def test_a_puzzle_cannot_remember_earlier_candidates_to_dodge_the_trivial_test():
    # A default list that remembers: only the first call (-10) is refused, so 0 would satisfy f. The reference
    # runs one program per candidate, where every call is the first.
    completion = "x: int, seen=[]) -> bool:\n    seen.append(x)\n    return len(seen) == 1 and x != -10\n"
    reason, facts = _filter(completion)
    assert reason == "trivial_answer" and facts["tested"] is True


def test_each_trivial_candidate_has_its_own_cpu_budget():
    from transforms.execute.verdicts import sat_outcomes

    # ~0.1 s of CPU per call. Sharing one process's 1 s CPU limit, the calls would use up the sandbox and its
    # three restarts within about 40 candidates, long before 95 (which satisfies f) had its turn.
    sat = "def f(x: int) -> bool:\n    return sum(range(5000000)) > 0 and x > 94"
    outcomes = sat_outcomes(sat, list(range(-10, 101)), IsolationLimits(timeout_s=3, cpu_s=1))
    assert len(outcomes) == 111
    assert outcomes[:105] == ["falsy"] * 105 and outcomes[105:] == ["true"] * 6


def test_a_trivial_test_the_sandbox_cannot_finish_does_not_keep_the_puzzle():
    from transforms.execute.verdicts import sat_outcomes

    # Sleeps past the wall clock for every small answer but 95: after the allowed restarts the rest are never
    # tried, so 95 (trivial) would go unseen.
    sat = "def f(x: int) -> bool:\n    import time\n    if x != 95:\n        time.sleep(30)\n    return x == 95"
    outcomes = sat_outcomes(sat, list(range(-10, 101)), IsolationLimits(timeout_s=1.0, cpu_s=1), max_restarts=1)
    assert outcomes[:2] == ["timeout", "timeout"] and set(outcomes[2:]) == {"not_evaluated"}
    from transforms.selfplay.filters import read_trivial_outcomes

    assert read_trivial_outcomes(outcomes) == "trivial_test_incomplete"


def test_a_puzzle_whose_trivial_test_cannot_finish_is_a_dead_letter_not_a_failed_job():
    """Found by a 256-sample self-play run (2026-12-05): a model-written f that loops on every small answer used
    up the sandbox's restarts, and the filter looked for the small answer that passed, of which there was none,
    raising StopIteration out of the stage."""
    completion = "x: int) -> bool:\n    while x == x:\n        x = x\n    return x > 5\n"
    quick = SandboxSettings(IsolationLimits(timeout_s=1, cpu_s=1), workers=1)
    reason, detail, facts = filter_sample(_sample(completion), STRINGS, trivial_reject_rate=1.0, seed=0,
                                          sandbox=quick)
    assert reason == "trivial_test_incomplete" and facts["tested"] is True
    assert "small answers not tried: the sandbox failed too often" in detail and detail.split()[0].isdigit()
