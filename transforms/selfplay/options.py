"""``SelfPlayOptions``: the self-play job's options (prompts, filters, solving, training text), with the reference's
settings as defaults where a CPU can afford them. The paper's values are read from
``transforms/presets/self_play_paper.yaml`` (``load_preset``), never restated here; the two that a CPU cannot
afford (samples per prompt, attempts per puzzle) default smaller and their help names the preset's value."""
from __future__ import annotations

from apache_beam.options.pipeline_options import PipelineOptions

from transforms.selfplay.plans import PRESETS
from transforms.selfplay.preset import load_preset

# The reference verifies f(g()) in a separate process with a 1 s timeout; a sandbox also starts in this time.
# Self-play's verification and the P3 evaluation both use it.
VERIFY_TIMEOUT_S = 2.0
# The literal f(g()) script's runs per verified pair: each costs a sandbox start (about 55 ms here) and only pairs
# that passed the sound check get them.
LITERAL_RUNS = 3

class SelfPlayOptions(PipelineOptions):
    @classmethod
    def _add_argparse_args(cls, parser):
        paper = load_preset()
        gen, solve, training = paper.generation, paper.solve, paper.training
        group = parser.add_argument_group("self-play puzzles")
        group.add_argument("--p3-dir", dest="p3_dir", default=None,
                           help="Folder with P3's puzzles.json and split.json. The paper preset builds its prompts "
                                "from the training families and its solve prefix from the tutorial families; the "
                                "test families are never shown to the model.")
        group.add_argument("--puzzle-preset", dest="puzzle_preset", choices=PRESETS, default="paper",
                           help="paper: f-only P3 train puzzles packed to the token budget, the model writes the "
                                "next f (the ICLR 2023 reference). seed: the project's numbered f/g pairs.")
        group.add_argument("--num-prompts", dest="num_prompts", type=int, default=4)
        group.add_argument("--samples-per-prompt", dest="samples_per_prompt", type=int, default=16,
                           help=f"Puzzles sampled per prompt (the reference: {gen.samples_per_prompt}).")
        group.add_argument("--shots", type=int, default=4, help="seed preset: few-shot f/g pairs per prompt.")
        group.add_argument("--puzzle-temperature", dest="puzzle_temperature", type=float,
                           default=gen.temperature)
        group.add_argument("--puzzle-max-tokens", dest="puzzle_max_tokens", type=int,
                           default=gen.gen_tokens)
        group.add_argument("--trivial-reject-rate", dest="trivial_reject_rate", type=float,
                           default=paper.filters.trivial_reject_rate,
                           help="Probability that a puzzle gets the answer-use, bool-answer, answer-type and "
                                "trivial-answer tests (the reference keeps the others untested); every puzzle "
                                "gets the signature check.")
        group.add_argument("--judge-timeout", dest="judge_timeout", type=float, default=2.0,
                           help="Seconds for the return-True judge and for each trivial candidate (the reference: "
                                "1 s in a warm process; a sandbox also starts in this time).")
        group.add_argument("--verify-timeout", dest="verify_timeout", type=float, default=VERIFY_TIMEOUT_S,
                           help="Seconds for each sandboxed call that verifies an attempt, g() and f(answer) (the "
                                "reference: f(g()) in a separate process with a 1 s timeout; a sandbox also starts "
                                "in this time). A slower brute-force g is not a verified solution.")
        group.add_argument("--literal-runs", dest="literal_runs", type=int, default=LITERAL_RUNS,
                           help="Times a pair that verified runs again as its training text, one plain script "
                                "each time under a hash seed of its own; every run must print True. A pair true "
                                "in only some runs (a set's string order, NaN in a set) is then kept with about "
                                "p^(1 + runs) instead of p^2.")
        group.add_argument("--solve-attempts", dest="solve_attempts", type=int, default=16,
                           help=f"Attempts per puzzle (the reference: {solve.attempts}).")
        group.add_argument("--solve-temperature", dest="solve_temperature", type=float,
                           default=solve.temperature,
                           help="Default: --puzzle-temperature, as the reference.")
        group.add_argument("--solve-max-tokens", dest="solve_max_tokens", type=int,
                           default=solve.max_new_tokens)
        group.add_argument("--sample-top-k", dest="sample_top_k", type=int, default=gen.top_k,
                           help=f"Sample puzzles and solutions from the k most likely tokens; 0: the whole vocabulary "
                                f"(the reference: HF generate's default, {gen.top_k}).")
        group.add_argument("--allow-eos", dest="allow_eos", action="store_true",
                           default=not gen.ban_eos,
                           help="Let a sample end at the end-of-sequence token (the reference never samples it: "
                                "min_length = max_length; its stop strings still end a sample).")
        group.add_argument("--max-solutions", dest="max_solutions", type=int,
                           default=solve.max_sols_per_puzzle,
                           help="Distinct verified solutions kept per puzzle, shortest first.")
        group.add_argument("--solve-prefix", dest="solve_prefix", default=None,
                           help="The reference's released train_prefix.txt, used byte for byte (default: rebuilt "
                                "from P3's tutorial families, or from the seed puzzles without --p3-dir).")
        group.add_argument("--training-format", dest="training_format", choices=("raw", "instruction"), default="raw",
                           help="raw: f, g and assert f(g()) as one text, trained with the loss on every token (the "
                                "reference); instruction: the puzzle as the instruction, g as the response.")
        group.add_argument("--iteration", type=int, default=0,
                           help=f"Self-play iteration, for the training-example cap "
                                f"({training.cap_first_iteration:,} at 0, {training.cap_later_iterations:,} later).")
        group.add_argument("--example-cap", dest="example_cap", type=int, default=None,
                           help="Override the training-example cap.")
