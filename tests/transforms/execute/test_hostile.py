"""Hostile programs against the sandbox: every one must be contained, and its outcome is asserted.

Files outside are watched through sentinel files in a real host directory; processes through psutil, by a
marker each program puts in the command line of what it starts. After every test, no process with the
sandbox's marker (nor, as root, with the sandbox's uid) that this worker started or that escaped to init is left.
"""
from __future__ import annotations

import ast
import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psutil
import pytest

from transforms.execute import verdicts
from transforms.execute.isolation import PROCESS_MARKER, SANDBOX_UID, IsolationLimits, bwrap_available, run_program
from transforms.execute.problems import Problem
from transforms.execute.session import AgentSession

REPO = Path(__file__).resolve().parents[3]
FAST = IsolationLimits(timeout_s=10, cpu_s=5, memory_mb=512)
SHORT = IsolationLimits(timeout_s=1.5, cpu_s=5, memory_mb=512)

ADD = Problem("Toy/add", "def add(a: int, b: int) -> int:\n", "add",
              "def check(candidate):\n    assert candidate(2, 3) == 5\n    assert candidate(-1, 1) == 0\n"
              "    assert candidate(10, 5) == 15\n")
WRONG_ADD = "def add(a, b):\n    return a - b\n"


def test_bubblewrap_is_installed_and_works():
    assert bwrap_available(), "apt-get install bubblewrap: the hostile suite needs real isolation"


def probe(source: str, limits: IsolationLimits = FAST, args: tuple = ()):
    """Load ``source`` in a sandbox and return what its ``probe(*args)`` returned (a CallResult)."""
    with AgentSession(limits) as session:
        assert session.isolated
        error = session.load(source)
        assert error is None, error
        return session.call("probe", args)


def value_of(source: str, limits: IsolationLimits = FAST, args: tuple = ()):
    result = probe(source, limits, args)
    assert result.kind == "value", result
    return result.value


def ours_or_orphaned(p: psutil.Process) -> bool:
    """A process this test session started (a descendant), or one nobody owns any more (re-parented to init, as
    an escaped daemon would be). Sandboxes of another test session running at the same time are neither."""
    try:
        if p.ppid() == 1:
            return True
        return any(parent.pid == os.getpid() for parent in p.parents())
    except psutil.Error:
        return False


def processes_with(marker: str) -> list[psutil.Process]:
    found = []
    for p in psutil.process_iter(["cmdline"]):
        if any(marker in part for part in (p.info["cmdline"] or [])) and ours_or_orphaned(p):
            found.append(p)
    return found


def assert_gone(find, message: str, within_s: float = 3.0) -> None:
    """``find()`` (a list of what is still there) becomes empty within ``within_s``."""
    end = time.monotonic() + within_s
    while find() and time.monotonic() < end:
        time.sleep(0.05)
    assert find() == [], message


def assert_no_process_with(marker: str) -> None:
    assert_gone(lambda: processes_with(marker), f"processes with {marker!r} outlived their sandbox")


def sandbox_leftovers() -> list[str]:
    """Command lines of processes this worker started or that escaped to init, that carry the sandbox's marker
    or (when we are root and can tell) run as its uid."""
    found = processes_with(PROCESS_MARKER)
    if os.geteuid() == 0:
        found += [p for p in psutil.process_iter(["uids", "cmdline"])
                  if p.info["uids"].real == SANDBOX_UID and ours_or_orphaned(p)]
    return [" ".join(p.info.get("cmdline") or []) for p in found]


@pytest.fixture(autouse=True)
def no_sandbox_process_remains():
    """Checked after each test (not once at the end: under xdist a last test may run while others still do)."""
    yield
    assert_gone(sandbox_leftovers, "sandbox processes outlived their test")


@pytest.fixture
def sentinels(tmp_path: Path):
    """A real host directory with a sentinel file; the test asserts it is untouched afterwards."""
    target = tmp_path / "sentinel.txt"
    content = f"sentinel {uuid.uuid4().hex}\n"
    target.write_text(content)
    before = sorted(p.name for p in tmp_path.iterdir())
    yield target
    assert target.read_text() == content, "a sandboxed program changed a file outside"
    assert sorted(p.name for p in tmp_path.iterdir()) == before, "a sandboxed program created a file outside"


# ------------------------------------------------------------------------------------------- forgery

@pytest.mark.parametrize("name, solution", [
    ("completion marker then os._exit(0)",
     "import os, sys\nprint('PASSED'); sys.stdout.flush()\nopen('done', 'w').write('ok')\nos._exit(0)\n"),
    ("os._exit(0) inside the function", "import os\ndef add(a, b):\n    os._exit(0)\n"),
    ("sys.exit(0) at module level", "import sys\nsys.exit(0)\n"),
    ("sys.exit(0) inside the function", "import sys\ndef add(a, b):\n    sys.exit(0)\n"),
    ("atexit prints success", "import atexit\natexit.register(lambda: print('all tests passed'))\n" + WRONG_ADD),
    ("monkeypatched builtins", "import builtins\nbuiltins.AssertionError = type('Nope', (Exception,), {})\n"
                               "builtins.all = lambda *a: True\nbuiltins.print = lambda *a, **k: None\n" + WRONG_ADD),
    ("object whose __eq__ is always True",
     "class Yes:\n    def __eq__(self, other): return True\n    __hash__ = None\n"
     "def add(a, b):\n    return Yes()\n"),
    ("int subclass equal to everything", "class I(int):\n    def __eq__(self, o): return True\n"
                                          "def add(a, b):\n    return I(0)\n"),
    ("str subclass", "class S(str):\n    pass\ndef add(a, b):\n    return S('5')\n"),
    ("list subclass", "class L(list):\n    pass\ndef add(a, b):\n    return L([a + b])\n"),
    ("generator", "def add(a, b):\n    yield a + b\n"),
    ("forged answer line with a guessed id", "import os\nos.write(4, b'{\"id\":\"0\",\"ok\":true}\\n')\n" + WRONG_ADD),
])
def test_forgeries_fail(name, solution):
    verdict = verdicts.run_function_tests(ADD, solution, FAST)
    assert verdict.status == "failed", (name, verdict)
    assert verdict.isolated


def test_the_right_answer_passes_so_the_forgery_tests_can_fail():
    assert verdicts.run_function_tests(ADD, "def add(a, b):\n    return a + b\n", FAST).passed


def _stealing_agent_state() -> str:
    """Code that finds the live request id and the answer pipe in the agent's frames, as an attacker would."""
    return (
        "import sys, os, json\n"
        "def _agent():\n"
        "    f = sys._getframe(1)\n"
        "    while f is not None and not ('msg' in f.f_locals and 'cfg' in f.f_locals):\n"
        "        f = f.f_back\n"
        "    return f.f_locals['msg']['id'], f.f_locals['cfg']['response_fd']\n")


def test_forged_answer_for_the_current_call_then_exit_fails():
    # It answers the first call correctly through the protocol itself and exits: the second call finds no one.
    solution = _stealing_agent_state() + (
        "def add(a, b):\n"
        "    rid, fd = _agent()\n"
        "    os.write(fd, json.dumps({'id': rid, 'ok': True, 'value': a + b}).encode() + b'\\n')\n"
        "    os._exit(0)\n")
    verdict = verdicts.run_function_tests(ADD, solution, FAST)
    assert verdict.status == "failed" and "crashed" in verdict.reason, verdict


def test_prewritten_answers_for_future_calls_are_a_protocol_failure():
    solution = _stealing_agent_state() + (
        "def add(a, b):\n"
        "    rid, fd = _agent()\n"
        "    for guess in ('0' * 32, rid):\n"
        "        os.write(fd, json.dumps({'id': guess, 'ok': True, 'value': 5}).encode() + b'\\n')\n"
        "    return a + b\n")
    verdict = verdicts.run_function_tests(ADD, solution, FAST)
    assert verdict.status == "failed" and "protocol" in verdict.reason, verdict


def test_an_endless_answer_line_is_cut_off_without_exhausting_the_parent():
    solution = _stealing_agent_state() + (
        "def add(a, b):\n"
        "    rid, fd = _agent()\n"
        "    chunk = b'x' * (1 << 20)\n"
        "    for _ in range(100):\n"
        "        os.write(fd, chunk)\n")
    rss_before = psutil.Process().memory_info().rss
    verdict = verdicts.run_function_tests(ADD, solution, FAST)
    assert verdict.status == "failed" and "longer than" in verdict.reason, verdict
    assert psutil.Process().memory_info().rss - rss_before < 200 << 20


def test_a_recursion_bomb_on_the_answer_pipe_is_refused():
    solution = _stealing_agent_state() + (
        "def add(a, b):\n"
        "    rid, fd = _agent()\n"
        "    deep = '[' * 200000 + ']' * 200000\n"
        "    os.write(fd, ('{\"id\":\"%s\",\"ok\":true,\"value\":%s}\\n' % (rid, deep)).encode())\n"
        "    import time; time.sleep(30)\n")
    verdict = verdicts.run_function_tests(ADD, solution, FAST)
    assert verdict.status == "failed" and "protocol" in verdict.reason, verdict


def test_a_frame_of_a_million_empty_lists_is_refused_before_parsing():
    # 8 MiB of "[]," would be ~400 MB of lists in the trusted process; the container cap refuses it unparsed.
    solution = _stealing_agent_state() + (
        "def add(a, b):\n"
        "    rid, fd = _agent()\n"
        "    value = '[' + ','.join(['[]'] * 2_000_000) + ']'\n"
        "    os.write(fd, ('{\"id\":\"%s\",\"ok\":true,\"value\":%s}\\n' % (rid, value)).encode())\n"
        "    import time; time.sleep(30)\n")
    verdict = verdicts.run_function_tests(ADD, solution, FAST)
    assert verdict.status == "failed" and "containers" in verdict.reason, verdict


@pytest.mark.parametrize("name, body, reason", [
    ("huge string", "return 'x' * (64 << 20)", "larger than"),
    ("nested list recursion bomb", "x = []\n    for _ in range(100000):\n        x = [x]\n    return x", "deeper"),
    ("exponential shared list", "x = [1]\n    for _ in range(60):\n        x = [x, x]\n    return x", "larger than"),
    ("dict with an object key", "return {object(): 1}", "not plain data"),
])
def test_unusable_results_fail_with_a_reason(name, body, reason):
    verdict = verdicts.run_function_tests(ADD, f"def add(a, b):\n    {body}\n", FAST)
    assert verdict.status == "failed" and reason in verdict.reason, (name, verdict)


def test_nan_cannot_pass_negated_comparisons():
    problem = Problem("Toy/five", "def five(a):\n", "five",
                      "def check(candidate):\n    assert not candidate(1) < 5\n    assert not candidate(1) > 5\n")
    assert verdicts.run_function_tests(problem, "def five(a):\n    return 5\n", FAST).passed
    verdict = verdicts.run_function_tests(problem, "def five(a):\n    return float('nan')\n", FAST)
    assert verdict.status == "failed" and "NaN" in verdict.reason, verdict


def test_a_test_that_swallows_errors_still_fails_when_the_sandbox_dies():
    problem = Problem("Toy/swallow", "def f(a):\n", "f",
                      "def check(candidate):\n    try:\n        candidate(1)\n    except:\n        pass\n")
    verdict = verdicts.run_function_tests(problem, "import os\ndef f(a):\n    os._exit(0)\n", FAST)
    assert verdict.status == "failed", verdict
    assert verdicts.run_function_tests(problem, "def f(a):\n    return 1\n", FAST).passed


def test_stop_iteration_cannot_cut_a_test_short():
    problem = Problem("Toy/all", "def f(a):\n", "f",
                      "def check(candidate):\n    assert all(map(candidate, [1, 2, 3]))\n")
    assert verdicts.run_function_tests(problem, "def f(a):\n    return a > 0\n", FAST).passed
    verdict = verdicts.run_function_tests(problem, "def f(a):\n    raise StopIteration\n", FAST)
    assert verdict.status == "failed" and "StopIteration" in verdict.reason, verdict


def test_keyword_arguments_cross_too():
    problem = Problem("Toy/kw", "def f(a, b=0):\n", "f",
                      "def check(candidate):\n    assert candidate(1, b=(2,)) == [1, (2,)]\n")
    assert verdicts.run_function_tests(problem, "def f(a, b=0):\n    return [a, b]\n", FAST).passed


def test_mutating_arguments_cannot_reach_the_test():
    problem = Problem("Toy/mutate", "def f(xs):\n", "f",
                      "def check(candidate):\n    xs = [3, 1, 2]\n    assert candidate(xs) == [1, 2, 3]\n"
                      "    assert xs == [3, 1, 2]\n")
    assert verdicts.run_function_tests(problem, "def f(xs):\n    xs.sort()\n    return xs\n", FAST).passed


def test_candidate_exceptions_propagate_as_their_builtin_type():
    problem = Problem("Toy/raises", "def f(a):\n", "f",
                      "def check(candidate):\n    try:\n        candidate(-1)\n    except ValueError:\n        return\n"
                      "    assert False\n")
    assert verdicts.run_function_tests(problem, "def f(a):\n    raise ValueError('negative')\n", FAST).passed
    wrong = verdicts.run_function_tests(problem, "def f(a):\n    raise KeyError('negative')\n", FAST)
    assert wrong.status == "failed" and "KeyError" in wrong.reason, wrong


def test_p3_answers_are_exact_types_and_f_must_return_exactly_true():
    sat = "def f(x: int):\n    return x == 1\n"
    assert verdicts.verify_pair(sat, "def g():\n    return 1\n", "int", FAST).passed
    bool_answer = verdicts.verify_pair(sat, "def g():\n    return True\n", "int", FAST)
    assert bool_answer.status == "failed" and "not of type int" in bool_answer.reason, bool_answer
    for returned in ("1", "'True'", "[True]",
                     "type('T', (), {'__bool__': lambda s: True, '__eq__': lambda s, o: True})()"):
        verdict = verdicts.check_sat(f"def f(x: int):\n    return {returned}\n", 1, FAST)
        assert verdict.status == "failed", (returned, verdict)


def test_p3_solution_cannot_tamper_with_the_puzzle():
    # g patches builtins and writes a forged answer; f runs in a fresh sandbox and still rejects the answer.
    sat = "def f(xs: List[int]):\n    return sum(1 for x in xs) == 3 and all(x > 10 for x in xs)\n"
    sol = ("import builtins\nbuiltins.all = lambda *a: True\nbuiltins.sum = lambda *a: 3\n"
           "def g():\n    return [1, 2, 3]\n")
    verdict = verdicts.verify_pair(sat, sol, "List[int]", FAST)
    assert verdict.status == "failed" and verdict.reason.startswith("check:"), verdict
    assert verdicts.verify_pair(sat, "def g():\n    return [11, 12, 13]\n", "List[int]", FAST).passed


# The literal program trained on (f, g, ``assert f(g())`` in one process) must hold too: the wire hands f a copy,
# so f(answer) can pass there while f(g()) fails in one process. Only the separate-sandbox check can accept.
ALIASED = "def g():\n    a = []\n    return [a, a]\n"
SHARED_STATE = [
    # g's answer is one list twice: f appends through x[0] and sees it in x[1] only in one process.
    ("def f(x: List[List[int]]):\n    x[0].append(1)\n    return len(x[1]) == 0\n", ALIASED,
     "List[List[int]]", "f(g()) in one process returned False, not True"),
    # g calls f first: f's default list remembers it in one process, not in the check's fresh one.
    ("def f(x: int, seen=[]):\n    seen.append(x)\n    return len(seen) == 1\n", "def g():\n    f(5)\n    return 0\n",
     "int", "f(g()) in one process returned False, not True"),
    ("def f(x: List[List[int]]):\n    x[0].append(1)\n    return {0: True}[len(x[1])]\n", ALIASED,
     "List[List[int]]", "f(g()) in one process raised KeyError: 1"),
]


@pytest.mark.parametrize("sat, g, ans_type, reason", SHARED_STATE)
def test_a_pair_that_verifies_over_the_wire_but_not_as_the_literal_program_is_rejected(sat, g, ans_type, reason):
    sol = f"{sat}\n\n{g}"
    solved = verdicts.solve_answer(sol, ans_type, FAST)
    assert solved.passed and verdicts.check_sat(sat, solved.value, FAST).passed  # the wire check alone accepts
    verdict = verdicts.verify_pair(sat, sol, ans_type, FAST)
    assert (verdict.status, verdict.reason) == ("failed", f"literal: {reason}"), verdict
    assert verdict.value == solved.value


def test_a_pair_that_holds_in_one_process_passes_and_its_duration_counts_every_run(monkeypatch):
    sat = "def f(x: List[List[int]]):\n    x[0].append(1)\n    return len(x[1]) == 0\n"
    runs = []
    for name in ("solve_answer", "check_sat", "check_literal"):
        def timed(*args, _run=getattr(verdicts, name), **kwargs):
            runs.append(_run(*args, **kwargs))
            return runs[-1]
        monkeypatch.setattr(verdicts, name, timed)
    verdict = verdicts.verify_pair(sat, f"{sat}\n\ndef g():\n    return [[], []]\n", "List[List[int]]", FAST)
    assert verdict.passed and verdict.value == [[], []], verdict
    assert len(runs) == 3 and all(r.passed for r in runs)
    assert verdict.duration_s == pytest.approx(sum(r.duration_s for r in runs))
    # A solution given without the puzzle (the P3 test data's form) runs after it, as the training text has it.
    assert verdicts.literal_program(sat, "def g():\n    return 1\n") == f"{sat}\n\ndef g():\n    return 1\n"


@pytest.mark.parametrize("tamper", ["import builtins\n    builtins.abs = lambda v: 7",
                                    "f.__code__ = (lambda x: True).__code__"])
def test_a_solution_that_tampers_with_the_puzzle_in_one_process_is_still_rejected(tamper):
    sat = "def f(x: int):\n    return abs(x) == 7\n"
    sol = f"{sat}\n\ndef g():\n    {tamper}\n    return 3\n"
    assert verdicts.check_literal(sat, sol, FAST).passed  # the literal program alone would accept it
    verdict = verdicts.verify_pair(sat, sol, "int", FAST)
    assert verdict.status == "failed" and verdict.reason == "check: f(answer) returned False, not True", verdict


def test_a_literal_run_that_times_out_is_rejected():
    # Over the wire x[1] is a list of its own and empties; in one process it is x[0], which never does.
    sat = ("def f(x: List[List[int]]):\n    while x[1]:\n        x[0].append(0)\n        x[1].pop()\n"
           "    return True\n")
    sol = f"{sat}\n\ndef g():\n    a = [1]\n    return [a, a]\n"
    started = time.monotonic()
    verdict = verdicts.verify_pair(sat, sol, "List[List[int]]", SHORT)
    assert verdict.status == "timeout", verdict  # counted with the other timeouts (self-play: solution_timeout)
    assert verdict.reason == "literal: f(g()) in one process did not finish within 1.5s (g and f together)"
    assert SHORT.timeout_s <= verdict.duration_s <= time.monotonic() - started


def test_an_evaluated_expression_binds_no_name_in_the_program():
    with AgentSession(FAST) as session:
        assert session.load("x = [1]\ndef g():\n    return x\n") is None
        names = "sorted(globals())"
        assert session.evaluate(names).value == ["__builtins__", "__name__", "g", "x"]
        assert session.evaluate("g() is x").value is True  # the program's own object, not a copy
        assert session.evaluate(names).value == ["__builtins__", "__name__", "g", "x"]
        assert session.evaluate("y").kind == "raised"


def test_an_answer_of_colliding_hashes_is_refused_quickly():
    # Every k * (2**61 - 1) hashes to 0: building a set of 30,000 of them is quadratic in the trusted process
    # (6 s of its CPU, after the sandbox's clock has stopped). The sandbox replaces its encoder to send one.
    sol = ("import sys\nM = (1 << 61) - 1\n"
           "sys.modules['sandbox_wire'].encode_tree = (\n"
           "    lambda v, m: {'t': 'set', 'v': [k * M for k in range(1, 30001)]})\n"
           "def g():\n    return 0\n")
    started = time.monotonic()
    verdict = verdicts.verify_pair("def f(x: int):\n    return True\n", sol, "int", FAST)
    assert verdict.status == "failed" and "of one hash" in verdict.reason, verdict
    assert time.monotonic() - started < 3.0


def test_fresh_calls_share_nothing_and_survive_a_call_that_dies():
    program = ("import builtins, os\n"
               "def f(x):\n"
               "    if x == 'patch':\n        builtins.len = lambda v: 0\n        return len('abc')\n"
               "    if x == 'exit':\n        os._exit(0)\n"
               "    if x == 'spin':\n        while True:\n            pass\n"
               "    return len('abc')\n")
    with AgentSession(IsolationLimits(timeout_s=5, cpu_s=1, memory_mb=512)) as session:
        assert session.fresh_call(program, "f", ("patch",)).value == 0
        assert session.fresh_call(program, "f", ("plain",)).value == 3  # the patch died with its call
        died = session.fresh_call(program, "f", ("exit",))
        assert died.kind == "raised" and died.error_type == "CallDied", died
        spun = session.fresh_call(program, "f", ("spin",))  # its own 1 s of CPU, then SIGXCPU
        assert spun.kind == "raised" and "signal" in spun.message, spun
        assert session.fresh_call(program, "f", ("plain",)).value == 3
        broken = session.fresh_call("def f(x:\n", "f", (1,))
        assert broken.kind == "raised" and broken.error_type == "SyntaxError"


def test_runs_cleanly_cannot_be_forged_by_an_early_exit():
    forged = "import os\nos.write(4, b'{\"id\":\"x\",\"ok\":true}\\n')\nos._exit(0)\n"
    assert not verdicts.runs_cleanly(forged, FAST).passed
    assert not verdicts.runs_cleanly("def f(x):\n    return True\nimport sys\nsys.exit(0)\n", FAST,
                                     entry="f", args=(None,)).passed
    assert verdicts.runs_cleanly("def f(x):\n    return True\n", FAST, entry="f", args=(None,)).passed


# --------------------------------------------------------------------------------------------- files

def test_writing_a_host_file_fails(sentinels: Path):
    result = value_of("def probe(path):\n    try:\n        open(path, 'a').write('pwned')\n        return 'wrote'\n"
                      "    except OSError as e:\n        return type(e).__name__\n", args=(str(sentinels),))
    assert result == "FileNotFoundError"


def test_creating_a_file_next_to_the_sentinel_fails(sentinels: Path):
    result = value_of("def probe(d):\n    try:\n        open(d + '/new.txt', 'w').write('x')\n        return 'wrote'\n"
                      "    except OSError as e:\n        return type(e).__name__\n", args=(str(sentinels.parent),))
    assert result == "FileNotFoundError"


def test_truncation_fails(sentinels: Path):
    result = value_of("import os\ndef probe(path):\n    try:\n        os.truncate(path, 0)\n"
                      "        return 'truncated'\n"
                      "    except OSError as e:\n        return type(e).__name__\n", args=(str(sentinels),))
    assert result == "FileNotFoundError"


def test_deletion_through_posix_fails(sentinels: Path):
    result = value_of("import posix\ndef probe(path):\n    try:\n        posix.unlink(path)\n        return 'deleted'\n"
                      "    except OSError as e:\n        return type(e).__name__\n", args=(str(sentinels),))
    assert result == "FileNotFoundError"


def test_deletion_after_reloading_os_fails(sentinels: Path):
    result = value_of("import importlib, os\ndef probe(path):\n    importlib.reload(os)\n    try:\n"
                      "        os.remove(path)\n        return 'deleted'\n    except OSError as e:\n"
                      "        return type(e).__name__\n", args=(str(sentinels),))
    assert result == "FileNotFoundError"


def test_deletion_through_ctypes_fails(sentinels: Path):
    result = value_of("import ctypes\ndef probe(path):\n"
                      "    libc = ctypes.CDLL('libc.so.6', use_errno=True)\n"
                      "    return [libc.unlink(path.encode()), ctypes.get_errno()]\n", args=(str(sentinels),))
    assert result == [-1, 2]  # ENOENT: the path does not exist in the sandbox


def test_the_file_system_is_read_only_and_private():
    found = value_of(
        "import os\ndef probe(paths):\n    out = {p: os.path.exists(p) for p in paths}\n"
        "    for d in ('/', '/usr', '/dev', '/proc'):\n"
        "        try:\n            open(d + '/x', 'w')\n            out[d] = 'writable'\n"
        "        except OSError as e:\n            out[d] = type(e).__name__\n"
        "    open('/sandbox/mine', 'w').write('x')\n    out['uid'] = os.getuid()\n    return out\n",
        args=([str(REPO), "/work", "/root/.ssh", "/tmp", "/home", "/etc/passwd", str(REPO.parent / "shared")],))
    assert found.pop("uid") == SANDBOX_UID
    assert found.pop("/") == "OSError" and found.pop("/usr") == "OSError"  # EROFS
    assert found.pop("/dev") == "OSError" and found.pop("/proc") != "writable"
    assert not any(found.values()), found  # none of the host paths exists inside
    # The work dir is private: a second sandbox does not see the first one's file.
    assert value_of("import os\ndef probe():\n    return os.listdir('/sandbox')\n") == []


def test_the_work_dir_is_size_limited():
    result = value_of("def probe():\n    n = 0\n    try:\n        for i in range(100):\n"
                      "            open(f'/sandbox/f{i}', 'wb').write(b'x' * (1 << 20))\n            n += 1\n"
                      "    except OSError as e:\n        return [n, type(e).__name__]\n    return [n, None]\n",
                      IsolationLimits(timeout_s=10, file_size_mb=8))
    assert result[0] <= 8 and result[1] == "OSError"


def test_no_nested_user_namespace_and_no_setuid():
    result = value_of(
        "import ctypes, os\ndef probe():\n    libc = ctypes.CDLL('libc.so.6', use_errno=True)\n"
        "    rc = libc.unshare(0x10000000)  # CLONE_NEWUSER: would give capabilities in a namespace of its own\n"
        "    opts = [l.split()[5] for l in open('/proc/self/mountinfo') if l.split()[4] == '/usr']\n"
        "    caps = [l for l in open('/proc/self/status') if l.startswith('CapEff')][0].split()[1]\n"
        "    return [rc, ctypes.get_errno() != 0, opts, caps]\n")
    rc, failed, usr_options, caps = result
    assert rc == -1 and failed
    assert usr_options and all("nosuid" in o and "ro" in o.split(",") for o in usr_options)
    assert int(caps, 16) == 0


# ----------------------------------------------------------------------------- environment and /proc

def test_the_parent_environment_is_invisible(monkeypatch):
    secret = f"secret-{uuid.uuid4().hex}"
    monkeypatch.setenv("INVERSE_INSTRUCT_TEST_SECRET", secret)
    found = value_of(
        "import os\ndef probe(secret, parent):\n    hits = []\n"
        "    for pid in os.listdir('/proc'):\n        if not pid.isdigit():\n            continue\n"
        "        for name in ('environ', 'cmdline'):\n            try:\n"
        "                if secret.encode() in open(f'/proc/{pid}/{name}', 'rb').read():\n"
        "                    hits.append(f'{pid}/{name}')\n            except OSError:\n                pass\n"
        "    return {'env': dict(os.environ), 'hits': hits, "
        "'pids': sorted(p for p in os.listdir('/proc') if p.isdigit()),\n"
        "            'parent_visible': os.path.exists(f'/proc/{parent}'), 'ppid': os.getppid()}\n",
        args=(secret, os.getpid()))
    assert found["hits"] == []
    assert (secret not in str(found["env"])
            and set(found["env"]) <= {"PATH", "LANG", "HOME", "TMPDIR", "PWD", "LC_CTYPE", "PYTHONHASHSEED",
                                      "OPENSSL_CONF"})  # set where a plain run has it (isolation.openssl_config_args)
    assert found["parent_visible"] is False
    assert found["ppid"] == 0 and found["pids"] == ["1"]  # the interpreter is PID 1 of its own namespace


SET_ORDER = "{'apple', 'banana', 'cherry', 'date', 'elderberry', 'fig', 'grape'}"


def test_string_hashes_are_the_same_in_every_sandbox():
    """Set order of strings must not vary between the sandbox that runs g and the one that runs f, nor between
    runs; the expected hashes come from a plain interpreter on the host started with PYTHONHASHSEED=0."""
    source = f"def probe():\n    return [hash('abc'), hash(b'xyz'), list({SET_ORDER})]\n"
    host = subprocess.run([sys.executable, "-c", f"print(repr([hash('abc'), hash(b'xyz'), list({SET_ORDER})]))"],
                          env={**os.environ, "PYTHONHASHSEED": "0"}, capture_output=True, text=True, check=True)
    expected = ast.literal_eval(host.stdout)
    assert value_of(source) == expected
    assert value_of(source) == expected


def test_a_pair_that_depends_on_set_order_gets_the_same_verdict_every_run():
    sat = f"def f(x: str):\n    return x == next(iter({SET_ORDER}))\n"
    sol = f"def g():\n    return next(iter({SET_ORDER}))\n"
    verdicts_seen = [verdicts.verify_pair(sat, sol, "str", FAST) for _ in range(3)]
    assert all(v.passed for v in verdicts_seen), verdicts_seen


def test_writing_through_proc_cwd_does_not_reach_the_parent_cwd(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = value_of(
        "import os\ndef probe():\n    out = []\n    for pid in os.listdir('/proc'):\n        if pid.isdigit():\n"
        "            try:\n                open(f'/proc/{pid}/cwd/escaped-{pid}.txt', 'w').write('x')\n"
        "                out.append(os.readlink(f'/proc/{pid}/cwd'))\n"
        "            except OSError:\n                pass\n"
        "    return [out, sorted(os.listdir('/sandbox'))]\n")
    cwds, own_files = result
    assert cwds == ["/sandbox"] and own_files == ["escaped-1.txt"], result  # only its own work dir (PID 1)
    assert list(tmp_path.iterdir()) == []


def test_only_the_protocol_pipes_are_open():
    fds = value_of("import os, stat\ndef probe():\n    out = {}\n    for fd in range(64):\n        try:\n"
                   "            m = os.fstat(fd).st_mode\n        except OSError:\n            continue\n"
                   "        out[fd] = 'fifo' if stat.S_ISFIFO(m) else 'chr' if stat.S_ISCHR(m) else 'other'\n"
                   "    return out\n")
    assert set(fds.values()) <= {"fifo", "chr"}, fds  # pipes and /dev/null: no host file or socket
    assert len(fds) <= 6, fds


# ---------------------------------------------------------------------------------------------- network

def test_no_network_but_its_own_loopback():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        server.settimeout(0.5)
        port = server.getsockname()[1]
        result = value_of(
            "import _socket\ndef probe(port):\n    s = _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM)\n"
            "    s.settimeout(2)\n    try:\n        s.connect(('127.0.0.1', port))\n        return 'connected'\n"
            "    except OSError as e:\n        return type(e).__name__\n", args=(port,))
        assert result == "ConnectionRefusedError"  # the sandbox's loopback has no listener
        with pytest.raises(socket.timeout):
            server.accept()
    interfaces = value_of("def probe():\n"
                          "    return [l.split(':')[0].strip() for l in open('/proc/net/dev').readlines()[2:]]\n")
    assert interfaces == ["lo"]


def test_abstract_unix_sockets_of_the_host_are_unreachable():
    name = f"\0inverse-instruct-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(name)
        server.listen(1)
        result = value_of("import socket\ndef probe(name):\n    s = socket.socket(socket.AF_UNIX)\n    try:\n"
                          "        s.connect(name)\n        return 'connected'\n    except OSError as e:\n"
                          "        return type(e).__name__\n", args=(name,))
    assert result == "ConnectionRefusedError"


# -------------------------------------------------------------------------------------------- processes

def _sleeper(marker: str, seconds: int = 60) -> str:
    """Source that replaces the current process with a python sleeping with ``marker`` in its command line."""
    return (f"os.execv(sys.executable, [sys.executable, '-S', '-c', 'import time; time.sleep({seconds})', "
            f"'{marker}'])")


def test_fork_and_system_and_spawn_are_contained(sentinels: Path):
    marker = f"stray-{uuid.uuid4().hex}"
    with AgentSession(FAST) as session:
        assert session.isolated
        assert session.load(
            "import os, posix, sys\ndef probe(path):\n    out = {}\n    pid = posix.fork()\n    if pid == 0:\n"
            f"        {_sleeper(marker)}\n"
            "    out['fork'] = pid > 0\n"
            "    out['system'] = posix.system(f'echo pwned > {path}')\n"
            "    try:\n        import multiprocessing\n        ctx = multiprocessing.get_context('spawn')\n"
            "        p = ctx.Process(target=print)\n        p.start()\n        p.join(5)\n"
            "        out['spawn'] = p.exitcode\n"
            "    except Exception as e:\n        out['spawn'] = type(e).__name__\n    return out\n") is None
        result = session.call("probe", (str(sentinels),))
        assert result.kind == "value", result
        # fork works, the shell cannot write outside (the sentinel checks), spawn runs inside the sandbox.
        assert result.value["fork"] is True and result.value["system"] != 0 and result.value["spawn"] == 0
        # The forked child really runs (so its absence afterwards means something) ...
        end = time.monotonic() + 3.0
        while not processes_with(marker) and time.monotonic() < end:
            time.sleep(0.05)
        assert len(processes_with(marker)) == 1
    # ... and does not outlive the sandbox.
    assert_no_process_with(marker)


def test_a_fork_bomb_is_bounded():
    limits = IsolationLimits(timeout_s=10, memory_mb=256, max_processes=6)
    forked = value_of(
        "import os, time\ndef probe():\n    n = 0\n    for _ in range(200):\n        try:\n"
        "            pid = os.fork()\n"
        "        except OSError:\n            continue\n        if pid == 0:\n            time.sleep(60)\n"
        "            os._exit(0)\n        n += 1\n    return n\n", limits)
    assert forked == 6 - 1  # the interpreter counts too


def test_a_setsid_daemon_dies_with_the_sandbox():
    marker = f"daemon-{uuid.uuid4().hex}"
    with AgentSession(FAST) as session:
        assert session.load(
            "import os, sys, time\ndef probe():\n    if os.fork() == 0:\n        os.setsid()\n"
            f"        if os.fork() == 0:\n            {_sleeper(marker, 600)}\n        os._exit(0)\n"
            "    time.sleep(0.5)\n    return 'daemon started'\n") is None
        assert session.call("probe").value == "daemon started"
        assert len(processes_with(marker)) == 1  # the daemon runs, outside the caller's process group
    assert_no_process_with(marker)


def test_a_setsid_daemon_outliving_a_timeout_is_killed():
    marker = f"daemon-{uuid.uuid4().hex}"
    verdict = verdicts.runs_cleanly(
        "import os, sys, time\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n"
        "        print('daemon up', flush=True)\n"
        f"        {_sleeper(marker, 600)}\n    os._exit(0)\ntime.sleep(0.3)\nwhile True:\n    pass\n", SHORT)
    assert verdict.status == "timeout", verdict
    assert "daemon up" in verdict.stdout, verdict  # the daemon really started
    assert_no_process_with(marker)


def test_memory_across_forks_is_bounded():
    limits = IsolationLimits(timeout_s=20, memory_mb=300, max_processes=4)
    result = value_of(
        "import os, time\ndef probe():\n    held = 0\n    for _ in range(6):\n        r, w = os.pipe()\n        try:\n"
        "            pid = os.fork()\n        except OSError:\n"
        "            os.close(r); os.close(w)\n            continue\n"
        "        if pid == 0:\n            try:\n                block = bytearray(200 << 20)\n"
        "                os.write(w, b'1')\n            except MemoryError:\n                os.write(w, b'0')\n"
        "            time.sleep(60)\n            os._exit(0)\n        os.close(w)\n"
        "        held += os.read(r, 1) == b'1'\n    try:\n        big = bytearray(400 << 20)\n        alone = True\n"
        "    except MemoryError:\n        alone = False\n    return [held, alone]\n", limits)
    held, alone = result
    assert held <= 4 - 1 and alone is False  # at most 3 children of 200 MB; 400 MB in one process is refused


def test_ignored_signals_do_not_stop_the_kill():
    started = time.monotonic()
    verdict = verdicts.runs_cleanly("import signal\nfor s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):\n"
                                    "    signal.signal(s, signal.SIG_IGN)\nwhile True:\n    pass\n", SHORT)
    assert verdict.status == "timeout" and time.monotonic() - started < SHORT.timeout_s + 5


def test_an_infinite_loop_times_out():
    verdict = verdicts.run_function_tests(ADD, "def add(a, b):\n    while True:\n        pass\n", SHORT)
    assert verdict.status == "timeout" and verdict.reason == "timeout", verdict


def test_cpu_time_is_limited_before_the_wall_clock():
    limits = IsolationLimits(timeout_s=30, cpu_s=1)
    started = time.monotonic()
    verdict = verdicts.runs_cleanly("while True:\n    pass\n", limits)
    assert verdict.status == "failed" and ("SIGXCPU" in verdict.reason or "SIGKILL" in verdict.reason), verdict
    assert time.monotonic() - started < 15


def test_huge_output_is_drained_and_only_its_tail_kept():
    limits = IsolationLimits(timeout_s=2, output_tail_chars=500)
    verdict = verdicts.run_function_tests(ADD, "import sys\nwhile True:\n    sys.stdout.write('y' * 65536)\n", limits)
    assert verdict.status == "timeout", verdict
    assert 0 < len(verdict.stdout) <= 500 and set(verdict.stdout) == {"y"}


def test_exit_code_and_output_of_a_raw_program_are_reported_not_judged():
    result = run_program("print('passed', flush=True)\nimport os\nos._exit(0)\n", FAST)
    assert result.returncode == 0 and result.stdout == "passed\n" and result.isolated
