"""Options of execution: the sandbox (``SandboxOptions``, every job that runs model-written code) and the pass@k
job (``EvaluateOptions``), with the plain configs they make."""
from __future__ import annotations

import dataclasses
import os

from apache_beam.options.pipeline_options import PipelineOptions

from transforms.execute.isolation import IsolationLimits, check_isolation

DEFAULT_SANDBOX_TIMEOUT_S = 10.0


class SandboxOptions(PipelineOptions):
    @classmethod
    def _add_argparse_args(cls, parser):
        group = parser.add_argument_group("sandbox (model-written code runs in bubblewrap)")
        group.add_argument("--sandbox-timeout", dest="sandbox_timeout", type=float, default=None,
                           help="Wall-clock seconds per program (per call of a sandboxed function). Default: "
                                f"{DEFAULT_SANDBOX_TIMEOUT_S:g}; the P3 evaluation verifies as self-play does "
                                "(its --verify-timeout default).")
        group.add_argument("--sandbox-memory-mb", dest="sandbox_memory_mb", type=int, default=1024,
                           help="Address space per sandboxed process, in MiB; the literal f(g()) script, which "
                                "has no address-space cap (a plain run has none), is held to this much resident "
                                "memory over all its processes.")
        group.add_argument("--sandbox-processes", dest="sandbox_processes", type=int, default=4,
                           help="Processes a sandbox may run at once, its interpreter included.")
        group.add_argument("--sandbox-max-answer-mb", dest="sandbox_max_answer_mb", type=float, default=8.0,
                           help="Largest result a sandboxed function may hand back, in MiB (the trusted side holds "
                                "about 7x that while checking it).")
        group.add_argument("--sandbox-workers", dest="sandbox_workers", type=int, default=None,
                           help="Sandboxes run at once by each Beam worker (default: that worker's number of "
                                "CPUs).")
        group.add_argument("--allow-unsandboxed", dest="allow_unsandboxed", action="store_true", default=False,
                           help="DANGEROUS: run model-written code WITHOUT OS isolation when bubblewrap cannot run "
                                "(only rlimits and a wall clock bound it). Logged loudly.")


def sandbox_timeout(options: PipelineOptions, default: float = DEFAULT_SANDBOX_TIMEOUT_S) -> float:
    """``--sandbox-timeout``, else the job's own ``default``."""
    timeout = options.view_as(SandboxOptions).sandbox_timeout
    return default if timeout is None else timeout


def sandbox_limits(options: PipelineOptions, default_timeout: float = DEFAULT_SANDBOX_TIMEOUT_S) -> IsolationLimits:
    """The sandbox's limits; ``ValueError`` naming each option that is not above 0 (the jobs' checks call this
    before any work)."""
    opts = options.view_as(SandboxOptions)
    low = [f"{flag} must be more than 0, got {value:g}" for flag, value in (
        ("--sandbox-timeout", opts.sandbox_timeout), ("--sandbox-memory-mb", opts.sandbox_memory_mb),
        ("--sandbox-processes", opts.sandbox_processes), ("--sandbox-max-answer-mb", opts.sandbox_max_answer_mb))
        if value is not None and not value > 0]
    if low:
        raise ValueError("; ".join(low))
    return IsolationLimits(memory_mb=opts.sandbox_memory_mb, max_processes=opts.sandbox_processes,
                           max_message_bytes=int(opts.sandbox_max_answer_mb * (1 << 20))
                           ).within(sandbox_timeout(options, default_timeout))


def sandbox_workers(options: PipelineOptions, workers_here: bool = True) -> int | None:
    """``--sandbox-workers``, else this machine's number of CPUs when the job's workers run here, else None: each
    worker's pool then takes its own CPU count (``SandboxPoolDoFn.setup``), since a Dataflow or Flink worker need
    not be the launcher's size. ``ValueError`` for a number below 1 (the jobs' checks call this before any work)."""
    workers = options.view_as(SandboxOptions).sandbox_workers
    if workers is not None and workers < 1:
        raise ValueError(f"--sandbox-workers must be at least 1, got {workers}")
    if workers is None and workers_here:
        return os.cpu_count() or 1
    return workers


# A worker's pool size is unknown at launch when it resolves on the worker: batches may hold this many samples.
UNSIZED_POOL_MAX_BATCH = 64


def sandbox_max_batch(workers: int | None) -> int:
    """The largest batch of samples one pool call takes: 4 per sandbox, or ``UNSIZED_POOL_MAX_BATCH`` when each
    worker sizes its own pool."""
    return 4 * workers if workers else UNSIZED_POOL_MAX_BATCH


def require_isolation(options: PipelineOptions, workers_here: bool = True) -> bool:
    """Fail before any work when bubblewrap cannot run (unless --allow-unsandboxed); True when isolated. When the
    job's workers run elsewhere (``workers_here`` False: Dataflow, Flink, an external worker pool), this machine's
    bubblewrap says nothing about theirs: each worker's sandboxes check it as they start (``IsolationUnavailable``
    there), so a launcher without bubblewrap can still submit the job."""
    if not workers_here:
        return True
    return check_isolation(options.view_as(SandboxOptions).allow_unsandboxed)


# Benchmarks the evaluation job scores on, and their defaults: (temperature, max new tokens).
CODE_BENCHMARKS = ("humaneval", "humaneval_plus", "mbpp", "mbpp_plus")
PUZZLE_BENCHMARKS = ("p3",)
def _p3_defaults() -> tuple[float, int, int]:
    """The reference's P3 test attempts (fine_tune1.sh -> solve.py: 100 at T 0.8), from the self-play paper
    preset."""
    from transforms.selfplay.preset import load_preset

    solve = load_preset().solve
    return solve.eval_temperature, solve.max_new_tokens, solve.eval_attempts


# (temperature, max new tokens, samples per problem): greedy pass@1 for code, the self-play paper's test attempts.
EVAL_DEFAULTS = {**{name: (0.0, 512, 1) for name in CODE_BENCHMARKS}, "p3": _p3_defaults()}


class EvaluateOptions(PipelineOptions):
    @classmethod
    def _add_argparse_args(cls, parser):
        group = parser.add_argument_group("evaluation (the benchmark: --benchmark, default humaneval)")
        group.add_argument("--problems", default=None,
                           help="JSONL/Parquet file of HumanEval-format problems (task_id, prompt, entry_point, test"
                                "[, canonical_solution]); the same as --benchmark humaneval=FILE.")
        group.add_argument("--problem-limit", dest="problem_limit", type=int, default=None,
                           help="Evaluate only the first N problems.")
        group.add_argument("--samples-per-problem", dest="samples_per_problem", type=int, default=None,
                           help="n samples per problem (attempts per puzzle for p3). Default: 1 for code benchmarks "
                                "(greedy pass@1), 100 for p3 (the self-play paper's test attempts), 1 with "
                                "--reference-solutions.")
        group.add_argument("--pass-k", dest="pass_k", default=None,
                           help="Comma-separated k for pass@k, or 'all' for every k up to n (default: 1,10,100 for "
                                "code benchmarks, all for p3).")
        group.add_argument("--eval-temperature", dest="eval_temperature", type=float, default=None,
                           help="Default: 0 (greedy, the paper's pass@1) for code benchmarks, 0.8 for p3 (the "
                                "self-play paper's test evaluation).")
        group.add_argument("--eval-max-tokens", dest="eval_max_tokens", type=int, default=None,
                           help="Default: 512 for code benchmarks, 150 for p3.")
        group.add_argument("--reference-solutions", dest="reference_solutions", action="store_true", default=False,
                           help="Run the benchmark's reference solutions instead of the model (checks the harness).")


@dataclasses.dataclass(frozen=True)
class EvalSettings:
    benchmark: str  # "humaneval" | "p3"
    path: str | None  # problems file, or P3 directory
    samples: int
    temperature: float
    max_tokens: int
    ks: tuple[int, ...]
    reference_solutions: bool
    problem_limit: int | None


def pass_ks(pass_k: str | None, n: int, explicit_default: str) -> tuple[int, ...]:
    """The k of ``--pass-k`` (``None``: ``explicit_default``), sorted. ``ValueError`` before any work for a k that is
    not an integer or is below 1, and for a k above n that was asked for: pass@k needs at least k samples, so its
    value would be missing from the summary. The default list (1,10,100) is not refused: the summary reports its
    k up to n."""
    given = pass_k is not None and pass_k.strip() != ""
    text = pass_k if given else explicit_default
    if text.strip() == "all":
        return tuple(range(1, n + 1))
    try:
        ks = tuple(sorted({int(k) for k in text.split(",") if k.strip()}))
    except ValueError:
        raise ValueError(f"--pass-k must be 'all' or comma-separated integers, got {text!r}") from None
    if not ks:
        raise ValueError(f"--pass-k names no k: {text!r}")
    low = [k for k in ks if k < 1]
    if low:
        raise ValueError(f"--pass-k {text}: every k must be at least 1 (got {','.join(map(str, low))})")
    over = [k for k in ks if k > n]
    if given and over:
        raise ValueError(f"--pass-k {text}: pass@{','.join(map(str, over))} needs at least that many samples per "
                         f"problem, but --samples-per-problem is {n}: give every k <= {n}, or more samples")
    return ks


def eval_settings(options: PipelineOptions) -> EvalSettings:
    """The evaluation's settings with the benchmark's defaults filled in; errors before any work."""
    from transforms.decontam.options import BenchmarkOptions

    opts = options.view_as(EvaluateOptions)
    entries = options.view_as(BenchmarkOptions).benchmark or []
    if len(entries) > 1:
        raise ValueError(f"evaluate scores on one benchmark at a time, got --benchmark {entries}")
    name, _, path = (entries[0] if entries else "humaneval").partition("=")
    name, path = name.strip(), (path.strip() or None)
    if name not in CODE_BENCHMARKS + PUZZLE_BENCHMARKS:
        raise ValueError(f"evaluate has no harness for benchmark {name!r}; it scores on "
                         f"{', '.join(CODE_BENCHMARKS + PUZZLE_BENCHMARKS)}")
    if opts.problems:
        if name != "humaneval" or path:
            raise ValueError("--problems is a HumanEval-format file: do not combine it with another --benchmark")
        path = opts.problems
    if name == "p3" and not path:
        raise ValueError("--benchmark p3 needs the P3 folder: --benchmark p3=DIR (puzzles.json and split.json)")
    if name != "humaneval" and name in CODE_BENCHMARKS and not path:
        raise ValueError(f"{name} does not ship: give its public file as --benchmark {name}=FILE")
    default_temperature, default_tokens, default_samples = EVAL_DEFAULTS[name]
    n = opts.samples_per_problem
    if n is None:
        n = 1 if opts.reference_solutions else default_samples  # a reference solution's verdict is the same n times
    if n < 1:
        raise ValueError("--samples-per-problem must be at least 1")
    temperature = default_temperature if opts.eval_temperature is None else opts.eval_temperature
    if n > 1 and temperature <= 0 and not opts.reference_solutions:
        raise ValueError("greedy decoding (--eval-temperature 0) gives one distinct sample: use "
                         "--samples-per-problem 1, or a temperature > 0")
    if opts.problem_limit is not None and opts.problem_limit < 1:
        raise ValueError(f"--problem-limit must be at least 1, got {opts.problem_limit} (leave it out to evaluate "
                         "every problem)")
    ks = pass_ks(opts.pass_k, n, explicit_default="all" if name == "p3" else "1,10,100")
    return EvalSettings(name, path, n, temperature, opts.eval_max_tokens or default_tokens, ks,
                        opts.reference_solutions, opts.problem_limit)
