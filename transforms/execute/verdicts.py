"""Verdicts on model-written code, decided by trusted code from plain data the sandbox returns.

The untrusted process never says "passed". It only answers requests (``session.py``) with plain data or an
exception description; this module compares:

* HumanEval-style problems (``run_function_tests``): the benchmark's ``check(candidate)`` runs HERE, in the
  trusted process, with the problem's own prompt (helpers such as ``poly`` or ``encode_cyclic`` come from the
  benchmark, not the model). ``candidate`` is a proxy: each call sends its arguments to the sandbox and returns
  the plain-data result, or raises the candidate's exception (a builtin exception type by name, else
  ``CandidateError``) so tests that expect an exception still work; one that is not an ``Exception``
  (``SystemExit``, ``KeyboardInterrupt``, ...) fails the run, as it would go through the test's ``except
  Exception`` in one process. Arguments cross as copies, so a candidate
  that mutates its input cannot change the test's objects (HumanEval's tests never look at them afterwards).
  NaN results are refused: a NaN makes negated comparisons (``assert not x > y``) pass.
* P3 puzzles: ``solve_answer`` runs ``g()`` in one sandbox and type-checks its answer the way P3 does (exact
  ``bool``/``int``/``float``/``str``, nested ``List[...]``; ``True`` is not an ``int``); ``check_sat`` runs
  ``f(answer)`` in a FRESH sandbox and requires exactly ``True`` back; ``verify_pair`` does both, and then
  rejects a pair that does not also hold as the literal program trained on (``check_literal``: ``f(g())`` in
  one plain script, where an answer keeps the aliasing the wire loses; only ever a reason to reject);
  ``sat_results`` checks many answers in one sandbox, each in a process of its own (the trivial-answer
  filter); ``runs_cleanly`` runs a program and optionally one call (the ``f(None)`` judge filter).

What a program prints, writes, or exits with is never evidence: ``sys.exit(0)``, ``os._exit``, a forged answer
line, an object whose ``__eq__`` says True, all end as failures or as plain data that trusted code judges.
Limits: the trusted ``check`` itself is not interrupted by the wall clock (only its calls into the sandbox are);
results are bounded (``max_message_bytes``, 4,300-digit ints, depth 100), which keeps it cheap.
"""
from __future__ import annotations

import builtins
import copy
import dataclasses
import functools
import keyword
import logging
import reprlib
import time
import traceback
from typing import Any, Iterable, Sequence

from transforms.execute.isolation import (
    HASH_SEED,
    IsolationLimits,
    IsolationUnavailable,
    SandboxFailure,
    death_signal,
    drawn_hash_seed,
)
from transforms.execute.output_oracles import MBPP_NOT_NONE, plus_output_ok
from transforms.execute.session import AgentSession, CallResult

STATUSES = ("passed", "failed", "timeout")
log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Verdict:
    status: str  # one of STATUSES
    reason: str  # "" when passed
    duration_s: float
    isolated: bool = True
    stdout: str = ""  # tails, for diagnosis only
    stderr: str = ""
    value: Any = None  # solve_answer: the answer (plain data) when passed

    @property
    def passed(self) -> bool:
        return self.status == "passed"


class CandidateError(Exception):
    """The candidate raised an exception that is not a builtin one (its type name and message)."""

    def __init__(self, type_name: str, message: str):
        super().__init__(f"{type_name}: {message}")
        self.type_name = type_name


class UnusableCall(BaseException):
    """A proxied call gave nothing usable (not plain data, or no such function). Not an ``Exception``, so the
    benchmark's own ``except Exception`` cannot turn it into a pass."""


def _failure_verdict(f: SandboxFailure, started: float, session: AgentSession | None, isolated: bool) -> Verdict:
    status = "timeout" if f.kind == "timeout" else "failed"
    reason = "timeout" if f.kind == "timeout" and not f.names_its_cause else f"{f.kind}: {f.detail}"
    return _verdict(status, reason, started, session, isolated)


def _verdict(status: str, reason: str, started: float, session: AgentSession | None, isolated: bool,
             value: Any = None) -> Verdict:
    out = session.process.stdout if session else ""
    err = session.process.stderr if session else ""
    return Verdict(status, reason, time.monotonic() - started, isolated, out, err, value)


def guarded(check, *args, **kwargs) -> Verdict:
    """``check(*args, **kwargs)``, or a failed verdict naming the error when the trusted side itself raised on
    this one program (a bug to fix, logged; one record must not stop a long job)."""
    started = time.monotonic()
    try:
        return check(*args, **kwargs)
    except IsolationUnavailable:  # this machine cannot sandbox at all: a job's error, never one program's verdict
        raise
    except Exception as err:  # noqa: BLE001 - the verdict records it
        log.exception("verifier error in %s", getattr(check, "__name__", check))
        return Verdict("failed", f"verifier error: {type(err).__name__}: {str(err)[:200]}",
                       time.monotonic() - started)


# Control-flow exceptions are never re-raised as themselves: a StopIteration out of ``map(candidate, xs)`` would
# end the iteration silently, so ``assert all(map(candidate, xs))`` would pass.
_NOT_REBUILT = {"StopIteration", "StopAsyncIteration"}


def _rebuild_exception(error_type: str, message: str, builtin_bases: Sequence[str] = ()) -> Exception:
    """The nearest builtin class of what the candidate raised (``builtin_bases``, nearest first; by its name when
    the sandbox did not say) that takes a message, raised with it: a test catches it exactly when it would catch
    the original, so a class of its own merely named ``ValueError`` is not one, and a subclass of it is."""
    for name in builtin_bases or (error_type,):
        if name in _NOT_REBUILT or name == "Exception":  # CandidateError is an Exception that keeps the name
            break
        cls = getattr(builtins, name, None)
        if isinstance(cls, type) and issubclass(cls, Exception):
            try:
                return cls(message)
            except Exception:  # builtin exceptions with mandatory arguments (UnicodeDecodeError ...)
                continue
    return CandidateError(error_type, message)


# ------------------------------------------------------------------------------------------ HumanEval

class _Opaque:
    """A candidate's result that could not cross the boundary, where only its being not None is checked."""

    def __repr__(self) -> str:
        return "<opaque result>"


OPAQUE = _Opaque()


class _CandidateProxy:
    """Stands for the candidate function in the trusted ``check``."""

    def __init__(self, session: AgentSession, name: str, opaque_results: bool = False):
        self._session = session
        self.__name__ = name
        # EvalPlus's MBPP+ tasks that return a regex match: only whether the result is None is checked, so a
        # result that is not plain data arrives as OPAQUE (truthy, not None) instead of failing the run.
        self._opaque_results = opaque_results
        self.unusable: str | None = None  # first unusable call, which fails the run whatever check does
        self.raised: BaseException | None = None  # the last exception the candidate raised, as re-raised here
        self.raised_text = ""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.call_within(None, *args, **kwargs)

    def call_within(self, time_limit_s: float | None, *args: Any, **kwargs: Any) -> Any:
        """The candidate's result, its call limited to ``time_limit_s`` of wall clock (None: the run's)."""
        result: CallResult = self._session.call(self.__name__, args, allow_nan=False, kwargs=kwargs,
                                                time_limit_s=time_limit_s)
        if result.kind == "value":
            return result.value
        if self._opaque_results and result.kind == "bad_result" and result.message.startswith("not plain data"):
            return OPAQUE
        if result.kind == "raised" and result.base_exception:
            # In process, SystemExit or another BaseException goes through the test's ``except Exception`` and
            # fails the run; rebuilt as an ordinary exception, the test could swallow it and pass.
            self.unusable = self.unusable or f"candidate raised {result.error_type}: {result.message}"[:300]
            raise UnusableCall(self.unusable)
        if result.kind == "raised":
            self.raised = _rebuild_exception(result.error_type, result.message, result.builtin_bases)
            self.raised_text = f"{result.error_type}: {result.message}"[:300]
            raise self.raised
        detail = (f"the solution does not define {self.__name__}()" if result.kind == "missing"
                  else f"result is not plain data: {result.message}")
        self.unusable = self.unusable or detail
        raise UnusableCall(detail)


def _trusted_namespace(problem) -> dict[str, Any]:
    """The problem's prompt (its helpers, imports and the stub of the entry point) and its tests, executed here:
    both come from the benchmark, never from the model."""
    namespace: dict[str, Any] = {"__name__": "__benchmark__"}
    try:
        try:
            prompt = compile(problem.prompt, "<benchmark prompt>", "exec")
        except SyntaxError:  # a prompt that ends at the signature, without a docstring
            prompt = compile(problem.prompt + "    pass\n", "<benchmark prompt>", "exec")
        exec(prompt, namespace)
        exec(compile(problem.test, "<benchmark test>", "exec"), namespace)
    except Exception as e:
        raise ValueError(f"{problem.task_id}: the benchmark's own prompt or test does not run: {e!r}") from e
    if not callable(namespace.get("check")):
        raise ValueError(f"{problem.task_id}: the test code defines no check()")
    return namespace


def check_benchmark_code(problems: Iterable) -> None:
    """Every problem's prompt and test run here and define ``check``, before any sample: ``ValueError`` naming the
    first that does not (a broken test would otherwise fail every sample, counted as the model's failures)."""
    for problem in problems:
        _trusted_namespace(problem)


def _test_failure_reason(exc: BaseException, test_source: str, proxy: _CandidateProxy) -> str:
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == "<benchmark test>"]
    where = ""
    if frames and frames[-1].lineno:
        lines = test_source.splitlines()
        if 0 < frames[-1].lineno <= len(lines):
            where = f" at: {lines[frames[-1].lineno - 1].strip()[:200]}"
    if isinstance(exc, AssertionError):
        return f"test failed{where}"
    if exc is proxy.raised:
        return f"candidate raised {proxy.raised_text}{where}"
    return f"test raised {type(exc).__name__}: {str(exc)[:200]}{where}"


def run_function_tests(problem, solution_code: str, limits: IsolationLimits = IsolationLimits(),
                       allow_unisolated: bool = False) -> Verdict:
    """Run the benchmark's ``check`` (trusted, here) against ``solution_code``'s entry point (in a sandbox).
    ``problem`` is a ``transforms.execute.problems.Problem``; ``solution_code`` is e.g. ``completion_code(...)``."""
    namespace = _trusted_namespace(problem)

    def run_tests(session: AgentSession):
        proxy = _CandidateProxy(session, problem.entry_point, opaque_results=problem.task_id.startswith("Mbpp/")
                                and problem.entry_point in MBPP_NOT_NONE)
        namespace[problem.entry_point] = proxy  # tests that name the function call the candidate too
        try:
            try:
                namespace["check"](proxy)
                outcome = None
            except (SandboxFailure, UnusableCall):
                raise
            except Exception as e:
                outcome = _test_failure_reason(e, problem.test, proxy)
            if outcome is None and getattr(problem, "inputs", ()):
                outcome = _plus_inputs_failure(problem, proxy)
        except UnusableCall as e:
            return "failed", str(e), None
        # A failure the test swallowed (a bare ``except:``) still fails the run.
        if session.failure is not None:
            raise session.failure
        if proxy.unusable:
            return "failed", proxy.unusable, None
        return ("failed", outcome, None) if outcome is not None else ("passed", "", None)

    return _ask_once(solution_code, run_tests, limits, allow_unisolated, judge=lambda outcome: outcome)


_EXPECTED: dict[str, list[tuple[bool, Any, float]]] = {}
# EvalPlus times each input: max(1 s, 4x the reference solution's time) (``evalplus/config.py``:
# DEFAULT_MIN_TIME_LIMIT, DEFAULT_GT_TIME_LIMIT_FACTOR); a slower candidate fails that input.
PLUS_MIN_TIME_LIMIT_S = 1.0
PLUS_TIME_LIMIT_FACTOR = 4.0


def expected_outputs(problem) -> list[tuple[bool, Any, float]]:
    """``(ok, output, seconds)`` of the benchmark's own solution on each EvalPlus input, computed here (trusted
    code) once per problem; an input its own solution raises on is not checked."""
    key = f"{problem.task_id}\0{hash(problem.canonical_solution)}"
    if key not in _EXPECTED:
        namespace: dict[str, Any] = {"__name__": "__reference__"}
        exec(compile(problem.reference_program, "<reference solution>", "exec"), namespace)
        solution = namespace[problem.entry_point]
        results = []
        for args in problem.inputs:
            arguments = copy.deepcopy(list(args))
            started = time.perf_counter()
            try:
                output = solution(*arguments)
            except Exception:
                results.append((False, None, 0.0))
                continue
            results.append((True, output, time.perf_counter() - started))
        _EXPECTED[key] = results
    return _EXPECTED[key]


def plus_time_limit(reference_seconds: float) -> float:
    return max(PLUS_MIN_TIME_LIMIT_S, PLUS_TIME_LIMIT_FACTOR * reference_seconds)


def _plus_inputs_failure(problem, proxy) -> str | None:
    """The first EvalPlus input on which the candidate's output differs from the canonical solution's. Each call
    has EvalPlus's time limit; past it the run ends as a timeout naming the input."""
    for i, (args, (ok, expected, seconds)) in enumerate(zip(problem.inputs, expected_outputs(problem))):
        if not ok:
            continue
        limit = plus_time_limit(seconds)
        try:
            actual = proxy.call_within(limit, *copy.deepcopy(list(args)))
        except UnusableCall:
            raise
        except SandboxFailure as failure:
            if failure.kind == "timeout":
                raise SandboxFailure("timeout", f"plus input #{i}: no answer within its {limit:.2f} s (max(1 s, "
                                                f"4x the reference's {seconds:.3f} s), as EvalPlus times it)",
                                     names_its_cause=True) from None
            raise
        except Exception as e:
            return f"plus input #{i}: candidate raised {type(e).__name__}: {str(e)[:200]}"
        if not plus_output_ok(problem.task_id, problem.entry_point, args, expected, actual, problem.atol):
            return f"plus input #{i}: expected {_describe(expected)}, got {_describe(actual)}"
    return None


# ------------------------------------------------------------------------------------------ P3 puzzles

_BASE_TYPES = {"bool": bool, "int": int, "float": float, "str": str}


@functools.lru_cache(maxsize=256)
def parse_ans_type(ans_type: str) -> tuple[int, type]:
    """(list nesting depth, base type) of a P3 answer type such as ``List[List[int]]``."""
    text = ans_type.replace(" ", "").replace("typing.", "")
    depth = 0
    while text[:5] in ("List[", "list[") and text.endswith("]"):
        text = text[5:-1]
        depth += 1
    if text not in _BASE_TYPES:
        raise ValueError(f"unsupported P3 answer type {ans_type!r} (bool, int, float, str, nested List[...])")
    return depth, _BASE_TYPES[text]


def check_answer_type(answer: Any, ans_type: str) -> bool:
    """P3's type check: exact types (``True`` is not an ``int``, a subclass is nothing), lists all the way down."""
    depth, base = parse_ans_type(ans_type)

    def ok(value: Any, level: int) -> bool:
        if level == 0:
            return type(value) is base
        return type(value) is list and all(ok(v, level - 1) for v in value)

    return ok(answer, depth)


@functools.lru_cache(maxsize=1)
def default_preamble() -> str:
    """The imports every self-play puzzle may rely on (``transforms/presets/self_play.yaml``)."""
    from transforms.selfplay.puzzles import load_self_play_prompt
    return load_self_play_prompt().preamble


def _program(preamble: str | None, source: str) -> str:
    return f"{default_preamble() if preamble is None else preamble}{source}\n"


def _describe(value: Any) -> str:
    """A short description of an untrusted value that cannot itself fail: ``repr`` of an int over Python's
    4,300-digit limit raises, and a model may return one."""
    try:
        text = reprlib.repr(value)
    except ValueError:
        text = f"<{type(value).__name__} too large to print>"
    return (text[:60] + "...") if len(text) > 60 else text


def _call_once(program: str, entry: str, args: tuple, limits: IsolationLimits, allow_unisolated: bool,
               judge) -> Verdict:
    """Load ``program`` in a fresh sandbox, call ``entry(*args)`` and let ``judge(CallResult)`` return
    (status, reason, value)."""
    return _ask_once(program, lambda session: session.call(entry, args), limits, allow_unisolated, judge)


def _ask_once(program: str, ask, limits: IsolationLimits, allow_unisolated: bool, judge,
              hash_seed: str = HASH_SEED) -> Verdict:
    """Load ``program`` in a fresh sandbox and let ``judge`` decide on ``ask(session)``'s ``CallResult``."""
    started = time.monotonic()
    session = None
    isolated = True
    try:
        session = AgentSession(limits, allow_unisolated, hash_seed)
        isolated = session.isolated
        load_error = session.load(program)
        if load_error is not None:
            return _verdict("failed", f"program raised {load_error[0]}: {load_error[1][:300]}", started, session,
                            isolated)
        status, reason, value = judge(ask(session))
        return _verdict(status, reason, started, session, isolated, value)
    except SandboxFailure as f:
        return _failure_verdict(f, started, session, isolated)
    finally:
        if session is not None:
            session.close()


def _not_a_value(result: CallResult, entry: str) -> str:
    if result.kind == "raised":
        return f"{entry}() raised {result.error_type}: {result.message[:300]}"
    if result.kind == "missing":
        return f"the program does not define {entry}()"
    return f"{entry}() returned something that is not plain data: {result.message}"


def solve_answer(sol_source: str, ans_type: str, limits: IsolationLimits = IsolationLimits(), *,
                 entry: str = "g", preamble: str | None = None, allow_unisolated: bool = False) -> Verdict:
    """Run ``entry()`` of the solution in a sandbox; passed (with ``value`` = the answer) when it returns plain
    data of type ``ans_type``."""
    parse_ans_type(ans_type)  # a bad type string is the caller's error, not the solution's

    def judge(result: CallResult):
        if result.kind != "value":
            return "failed", _not_a_value(result, entry), None
        if not check_answer_type(result.value, ans_type):
            return "failed", f"answer {_describe(result.value)} is not of type {ans_type}", None
        return "passed", "", result.value

    return _call_once(_program(preamble, sol_source), entry, (), limits, allow_unisolated, judge)


def _sat_judge(entry: str):
    def judge(result: CallResult):
        if result.kind != "value":
            return "failed", _not_a_value(result, entry), None
        if result.value is True:  # exactly True: not 1, not a truthy list
            return "passed", "", None
        return "failed", f"{entry}(answer) returned {_describe(result.value)}, not True", None
    return judge


def check_sat(sat_source: str, answer: Any, limits: IsolationLimits = IsolationLimits(), *, entry: str = "f",
              preamble: str | None = None, allow_unisolated: bool = False) -> Verdict:
    """Run ``entry(answer)`` of the puzzle in a fresh sandbox; passed when it returns exactly ``True``."""
    return _call_once(_program(preamble, sat_source), entry, (answer,), limits, allow_unisolated, _sat_judge(entry))


def literal_program(sat: str, sol: str) -> str:
    """The program the training text spells out, before its ``assert f(g())``: ``sol`` itself when it begins with
    ``sat`` (the self-play solver's program: the puzzle, a blank line, ``g``), else ``sat`` and ``sol`` joined
    the same way."""
    return sol if sol.startswith(sat) else f"{sat}\n\n{sol}"


# What the literal check appends to the trained-on program: one expression statement (no name bound next to the
# model's), printing the run's nonce only when f(g()) is exactly True, else a short description of the value
# (exact builtin types only, so no model code runs to describe it).
_LITERAL_TAIL = (
    "\n\n(lambda r: print('\\n' + ({nonce!r} if r is True else {not_true!r} + (\n"
    "    repr(r)[:200] if type(r) in (bool, float, str, type(None)) or (type(r) is int and -10 ** 60 < r < 10 ** 60)\n"
    "    else '<' + type(r).__name__ + ' object>')), flush=True))({call})\n")
_NOT_TRUE = "f(g()) is not True: "


_STARTUP_PROBE = ("import sys\nfor name, module in list(sys.modules.items()):\n"
                  "    print(name, getattr(module, '__file__', None))")


@functools.lru_cache(maxsize=None)
def plain_startup_imports() -> tuple[str, ...]:
    """The standard-library modules this job's own interpreter imports before a script's first line that a bare
    start (``-S``) does not, in their order: what its ``site`` and ``.pth`` files import (``pathlib`` and
    ``urllib.parse`` in this project's venv). The sandboxes' interpreter has no site-packages, so it starts without
    them and their side effects: ``urllib.parse`` leaves a pattern in ``re``'s cache, and a puzzle that evicted it or
    not crashed a plain run only (the twentieth and twenty-first red teams). The literal script imports them first.
    Modules outside the standard library (the venv's own) are left out: the sandbox cannot import them."""
    import subprocess
    import sys
    import sysconfig

    def loaded(*flags: str) -> list[tuple[str, str]]:
        try:
            out = subprocess.run([sys.executable, *flags, "-c", _STARTUP_PROBE], capture_output=True, text=True,
                                 timeout=60, check=True).stdout
        except (OSError, subprocess.SubprocessError):
            log.warning("could not list the modules a plain start imports; the literal check starts bare")
            return []
        return [tuple(line.split(" ", 1)) for line in out.splitlines() if " " in line]

    stdlib = sysconfig.get_paths()["stdlib"].rstrip("/") + "/"
    bare = {name for name, _ in loaded("-S")}
    return tuple(name for name, path in loaded() if name not in bare
                 and (path == "None" or (path.startswith(stdlib) and "/site-packages/" not in path)))


def _ended(run) -> str:
    """How a script that did not exit 0 ended: its last error line, else the signal or exit code."""
    error = next((line for line in reversed(run.stderr.splitlines()) if line.strip()), "")
    if error:
        return f"raised {error[:300]}"
    killed_by = death_signal(run.returncode, run.isolated)
    return f"was ended by signal {killed_by}" if killed_by is not None else f"exited with {run.returncode or 0}"


def check_literal(sat: str, sol: str, limits: IsolationLimits = IsolationLimits(), *, sat_entry: str = "f",
                  sol_entry: str = "g", preamble: str | None = None, allow_unisolated: bool = False) -> Verdict:
    """``f(g())`` as the trained-on program runs it: the puzzle and the solution as ONE plain script
    (``literal_program``, then ``f(g())``), run by a fresh interpreter with its default flags in a fresh sandbox
    (``isolation.run_plain_script``): no agent, no encoder, a plain script's modules and depth, ``g``'s answer
    reaching ``f`` as the very object, aliases and all. Passed when the script prints this run's nonce, which its
    last statement prints only when ``f(g())`` is exactly True, and exits 0. One ``timeout_s`` covers ``g`` and
    ``f`` together, as one program. PYTHONHASHSEED is unset there: the interpreter draws its own seed, as plain
    Python does (never knowable in advance, and not the 0 of the sandboxes of ``g`` and ``f(answer)``), so an
    answer tuned to a seed is refused, and a program cannot tell this run by the variable (the eighth red team
    told it by a set PYTHONHASHSEED). The tail prints on a line of its own: output without a newline before it
    does not hide the nonce. It runs until the interpreter exits, with no address-space cap and its resident memory
    bounded by ``memory_mb`` (``run_plain_script``): the sandboxes' cap turned an allocation plain Python makes
    into an error a script caught under another name (``finally: return``, scrypt's ValueError, deque's
    SystemError), and a script that crashed at exit after printing True passed (the sixteenth red team).
    Its pass proves nothing, since ``g`` can read the nonce from its caller's code here:
    it can only reject (``verify_pair``). What it adds: a puzzle that lies only where the agent runs it (rewriting the
    agent's encoder, reading the agent's state) comes out as it is here, and is rejected."""
    import secrets

    from transforms.execute.isolation import run_plain_script

    for entry in (sat_entry, sol_entry):
        if not entry.isidentifier() or keyword.iskeyword(entry):
            raise ValueError(f"not a function name: {entry!r}")
    call = f"{sat_entry}({sol_entry}())"
    nonce = f"literal-check-{secrets.token_hex(16)}"
    # what a plain start of this interpreter imports first, so the script starts as the training text would here
    startup = "".join(f"__import__({name!r})\n" for name in plain_startup_imports())
    script = (startup + _program(preamble, literal_program(sat, sol))
              + _LITERAL_TAIL.format(nonce=nonce, not_true=_NOT_TRUE, call=call))
    started = time.monotonic()
    try:
        run = run_plain_script(script, limits, allow_unisolated)  # the interpreter's own seed
    except SandboxFailure as f:
        return _failure_verdict(f, started, None, True)
    import signal

    lines = run.stdout.splitlines()
    last = lines[-1] if lines else ""
    # the CPU limit's soft and hard ends, as the script's own death or as its supervisor's exit code (128 + n)
    cpu_spent = death_signal(run.returncode, True) in (signal.SIGXCPU, signal.SIGKILL)
    returned_true = nonce in lines
    if returned_true and run.returncode == 0:
        status, reason = "passed", ""
    elif run.memory_exceeded:
        status, reason = "failed", f"{call} in one process held more than {limits.memory_mb} MiB of memory"
    elif run.timed_out or cpu_spent:
        status = "timeout"
        reason = (f"{call} in one process returned True, but the script did not exit within {limits.timeout_s:g}s"
                  if returned_true else
                  f"{call} in one process did not finish within {limits.timeout_s:g}s (g and f together)")
    elif returned_true:  # the script crashed at exit (freeing a deep structure overflowed the C stack: red team 16)
        status, reason = "failed", f"{call} in one process returned True, but the script then {_ended(run)}"
    elif run.returncode == 0 and last.startswith(_NOT_TRUE):
        shown = last[len(_NOT_TRUE):]
        shown = shown[:60] + "..." if len(shown) > 60 else shown
        status, reason = "failed", f"{call} in one process returned {shown}, not True"
    elif run.returncode == 0:
        status, reason = "failed", f"{call} in one process ended (exit code 0) before it returned"
    else:
        status, reason = "failed", f"{call} in one process {_ended(run)}"
    return Verdict(status, reason, time.monotonic() - started, run.isolated, run.stdout[-2000:], run.stderr[-2000:])


def verify_pair(sat: str, sol: str, ans_type: str, limits: IsolationLimits = IsolationLimits(), *,
                sat_entry: str = "f", sol_entry: str = "g", preamble: str | None = None,
                allow_unisolated: bool = False, literal_preamble: str | None = None,
                literal_runs: int = 1) -> Verdict:
    """The self-play check: the solution's answer has the puzzle's answer type and makes the puzzle return
    exactly True. ``g`` and ``f`` run in separate sandboxes, so ``g`` cannot tamper with ``f``; that sound
    check alone can accept. A pair it accepts is then also run as the literal program trained on
    (``check_literal``: ``f(g())`` in one plain script, where ``g``'s answer keeps its aliasing, which the wire
    loses), and fails with a ``literal:`` reason (a timeout there too) when that does not give True. The literal
    run only rejects: a ``g`` that reads its nonce can make it pass, but never make a pair the sound check
    refused pass. The sound check is not the trained-on text, though (hash seed 0, the judge's names, no ``g``
    beside ``f``, no state shared with ``g``): a puzzle that tells those apart, with a ``g`` that reads the nonce,
    passed here while plain Python failed it (the eleventh red team). Self-play therefore refuses such ``g``
    before they run (``selfplay.beam.solution_refusal``) and such puzzles in its filters
    (``filters.environment_name_reason``). Every run here is fresh, so a pair that draws from unseeded randomness,
    true with probability p, passes with probability p²: self-play refuses that code statically too
    (``selfplay.determinism``).
    ``literal_preamble`` (default: ``preamble``): what the trained-on text has in front of f and g (self-play's
    has ``List`` only, where the judge's runs have ``List, Set, Tuple, Dict``). ``literal_runs``: how many times the
    literal script runs, each in a fresh sandbox under a hash seed of its own; every run must pass. A verdict that
    differs between runs (a set's string order under the seed, NaN or ``None`` in a set), true with probability p,
    then passes with about p^(1 + literal_runs) where one run gave p²: self-play's training text must hold in
    every run. The duration covers all the runs."""
    if literal_runs < 1:
        raise ValueError(f"literal_runs must be at least 1, got {literal_runs}")
    solved = solve_answer(sol, ans_type, limits, entry=sol_entry, preamble=preamble,
                          allow_unisolated=allow_unisolated)
    if not solved.passed:
        return dataclasses.replace(solved, reason=f"solve: {solved.reason}")
    checked = check_sat(sat, solved.value, limits, entry=sat_entry, preamble=preamble,
                        allow_unisolated=allow_unisolated)
    duration = solved.duration_s + checked.duration_s
    if not checked.passed:
        return dataclasses.replace(checked, duration_s=duration, value=solved.value, reason=f"check: {checked.reason}")
    isolated = checked.isolated
    for run in range(literal_runs):
        literal = check_literal(sat, sol, limits, sat_entry=sat_entry, sol_entry=sol_entry,
                                preamble=preamble if literal_preamble is None else literal_preamble,
                                allow_unisolated=allow_unisolated)
        duration += literal.duration_s
        isolated = isolated and literal.isolated
        if not literal.passed:
            which = f" (run {run + 1} of {literal_runs})" if literal_runs > 1 else ""
            return dataclasses.replace(literal, duration_s=duration, value=solved.value, isolated=isolated,
                                       reason=f"literal{which}: {literal.reason}")
    return dataclasses.replace(checked, duration_s=duration, value=solved.value, isolated=isolated)


def _call_many(program: str, entry: str, answers: Sequence[Any], limits: IsolationLimits, judge,
               allow_unisolated: bool, max_restarts: int, hash_seed: str = HASH_SEED) -> list[Verdict]:
    """``judge(CallResult)`` of ``entry(answer)`` for every answer, in one sandbox but each in a process of its own
    that loads ``program`` afresh (``AgentSession.fresh_call``): as the reference runs one program per answer, no
    answer sees state an earlier call left (a default list that remembers) or finds the CPU budget spent. Each
    answer gets its own ``timeout_s``; after a timeout or crash the rest go on in a fresh sandbox, at most
    ``max_restarts`` times. Answers left after that fail as not evaluated (value ``NOT_EVALUATED``)."""
    verdicts: list[Verdict] = []
    restarts = 0
    i = 0
    while i < len(answers):
        started = time.monotonic()
        session = None
        isolated = True
        try:
            session = AgentSession(limits, allow_unisolated, hash_seed)
            isolated = session.isolated
            while i < len(answers):
                session.restart_clock()
                started = time.monotonic()
                status, reason, value = judge(session.fresh_call(program, entry, (answers[i],)))
                verdicts.append(_verdict(status, reason, started, None, isolated, value))
                i += 1
        except SandboxFailure as f:
            verdicts.append(_failure_verdict(f, started, session, isolated))
            i += 1
            restarts += 1
            if restarts > max_restarts and i < len(answers):
                reason = f"not evaluated: the sandbox failed {restarts} times"
                verdicts += [Verdict("failed", reason, 0.0, isolated, value=NOT_EVALUATED) for _ in answers[i:]]
                return verdicts
        finally:
            if session is not None:
                session.close()
    return verdicts


def sat_results(sat_source: str, answers: Sequence[Any], limits: IsolationLimits = IsolationLimits(), *,
                entry: str = "f", preamble: str | None = None, allow_unisolated: bool = False,
                max_restarts: int = 3) -> list[Verdict]:
    """One verdict per answer, passed when ``entry(answer)`` is exactly True, each in a fresh process of one
    sandbox."""
    return _call_many(_program(preamble, sat_source), entry, answers, limits, _sat_judge(entry), allow_unisolated,
                      max_restarts)


# What one call of a puzzle on a candidate answer came to (the self-play trivial-answer filter's vocabulary).
NOT_EVALUATED = "not_evaluated"  # the sandbox failed too often before this answer's turn
OUTCOMES = ("true", "truthy", "falsy", "name_error", "error", "timeout", NOT_EVALUATED)


def _outcome_judge(result: CallResult):
    if result.kind == "value":
        outcome = "true" if result.value is True else ("truthy" if result.value else "falsy")
    elif result.kind == "raised":
        outcome = "name_error" if "NameError" in (result.builtin_bases or (result.error_type,)) else "error"
    elif result.kind == "bad_result":
        outcome = "truthy"  # an object that is not plain data: its truthiness is its own code's to decide
    else:
        outcome = "error"
    return ("passed" if outcome == "true" else "failed"), outcome, outcome


def sat_outcomes(sat_source: str, answers: Sequence[Any], limits: IsolationLimits = IsolationLimits(), *,
                 entry: str = "f", preamble: str | None = None, allow_unisolated: bool = False,
                 max_restarts: int = 3) -> list[str]:
    """What ``entry(answer)`` came to for every answer (``OUTCOMES``), each in a fresh process of one sandbox,
    judged here from plain data. A program that does not load answers as a call that raised (``name_error`` for
    a NameError or its subclass UnboundLocalError, as the reference's ``except NameError`` would). The calls run
    under a drawn hash seed (``drawn_hash_seed``), as the reference's in-process test does: a puzzle that is
    trivial except under the seed of the verifying sandboxes is trivial."""
    verdicts = _call_many(_program(preamble, sat_source), entry, answers, limits, _outcome_judge,
                          allow_unisolated, max_restarts, hash_seed=drawn_hash_seed())
    return [v.value if v.value in OUTCOMES else ("timeout" if v.status == "timeout" else "error") for v in verdicts]


def runs_cleanly(source: str, limits: IsolationLimits = IsolationLimits(), *, entry: str | None = None,
                 args: Iterable[Any] = (), preamble: str = "", allow_unisolated: bool = False) -> Verdict:
    """Whether ``preamble + source`` loads without raising and, when ``entry`` is given, ``entry(*args)``
    returns a truthy plain value (judged here, like ``assert entry(*args)``). The judge filter's form:
    ``runs_cleanly(f_with_return_true, entry="f", args=(None,))``."""
    program = _program(preamble, source)
    if entry is None:
        started = time.monotonic()
        session = None
        isolated = True
        try:
            session = AgentSession(limits, allow_unisolated)
            isolated = session.isolated
            load_error = session.load(program)
            if load_error is not None:
                return _verdict("failed", f"program raised {load_error[0]}: {load_error[1][:300]}", started,
                                session, isolated)
            return _verdict("passed", "", started, session, isolated)
        except SandboxFailure as f:
            return _failure_verdict(f, started, session, isolated)
        finally:
            if session is not None:
                session.close()

    def judge(result: CallResult):
        if result.kind != "value":
            return "failed", _not_a_value(result, entry), None
        if not result.value:
            return "failed", f"{entry}() returned {_describe(result.value)}", None
        return "passed", "", None

    return _call_once(program, entry, tuple(args), limits, allow_unisolated, judge)
