"""The paper preset (``transforms/presets/self_play_paper.yaml``) is the one source of the paper's parameters and
strings: the job's option defaults and the training text read them from it, so an edit of the preset reaches
them, and no second copy can drift from it."""
import dataclasses

from apache_beam.options.pipeline_options import PipelineOptions

from transforms.selfplay import options as options_module
from transforms.selfplay import plans, training_text
from transforms.selfplay import puzzles as seed_format
from transforms.selfplay.options import SelfPlayOptions
from transforms.selfplay.preset import load_preset


def _edited_preset():
    paper = load_preset()
    return dataclasses.replace(
        paper,
        generation=dataclasses.replace(paper.generation, temperature=0.55, gen_tokens=123, samples_per_prompt=77),
        filters=dataclasses.replace(paper.filters, trivial_reject_rate=0.5),
        solve=dataclasses.replace(paper.solve, temperature=0.35, max_new_tokens=99, max_sols_per_puzzle=3,
                                  attempts=333, header="def sol({inputs}):"),
        training=dataclasses.replace(paper.training, cap_first_iteration=11, cap_later_iterations=22),
    )


def test_the_self_play_options_default_to_the_presets_values(monkeypatch):
    monkeypatch.setattr(options_module, "load_preset", _edited_preset)
    opts = PipelineOptions([]).view_as(SelfPlayOptions)
    assert (opts.puzzle_temperature, opts.puzzle_max_tokens, opts.trivial_reject_rate) == (0.55, 123, 0.5)
    assert (opts.solve_temperature, opts.solve_max_tokens, opts.max_solutions) == (0.35, 99, 3)


def test_the_unedited_preset_gives_the_papers_defaults():
    opts = PipelineOptions([]).view_as(SelfPlayOptions)
    paper = load_preset()
    assert (opts.puzzle_temperature, opts.puzzle_max_tokens) == (paper.generation.temperature, 200)
    assert opts.trivial_reject_rate == paper.filters.trivial_reject_rate == 0.95
    assert (opts.solve_temperature, opts.solve_max_tokens, opts.max_solutions) == (None, 150, 8)


def test_the_training_texts_solution_header_is_the_presets():
    edited = _edited_preset()
    puzzle = {"id": "p", "name": "generated/prompt-0#0", "sat": "def f(x: int, a=3):\n    return x * a == 12",
              "solutions": ["def sol(a=3):\n    return 12 // a"], "source_uri": "self-play:prompt-0", "source_row": 0}
    [example] = plans.solved_puzzle_examples(puzzle, edited, "raw", seed_format.load_self_play_prompt())
    assert "\n\ndef sol(a=3):\n    return 12 // a\n\nassert f(g())" in example["response"]


def test_the_per_puzzle_limit_of_the_training_text_defaults_to_the_presets():
    bodies = [f"\n    return {i}" for i in range(10, 30)]
    examples = training_text.puzzle_examples("def f(x: int, a=3):\n    return x * a == 12", bodies)
    assert len(examples) == load_preset().solve.max_sols_per_puzzle == 8


def test_the_projections_round_plan_defaults_to_the_presets_values(monkeypatch):
    from transforms.selfplay import projection

    monkeypatch.setattr(projection, "load_preset", _edited_preset)
    plan = projection.RoundPlan()
    assert (plan.samples_per_prompt, plan.generation_new_tokens, plan.attempts, plan.solve_new_tokens) == (
        77, 123, 333, 99)
    assert plan.training_examples == 22


def test_the_unedited_round_plan_is_the_papers():
    from transforms.selfplay.projection import RoundPlan

    plan = RoundPlan()
    assert (plan.generated_puzzles, plan.samples_per_prompt, plan.generation_new_tokens) == (100_000, 64, 200)
    assert (plan.attempts, plan.solve_new_tokens, plan.training_examples, plan.test_attempts) == (
        128, 150, 1_000_000, 100)


def test_the_references_sampling_is_the_default_and_reaches_the_requests():
    """The reference samples with HF generate's default top_k (50) and never samples EOS (min_length = max_length),
    for puzzles, solutions and the test attempts alike."""
    paper = load_preset()
    assert (paper.generation.top_k, paper.generation.ban_eos) == (paper.solve.top_k, paper.solve.ban_eos) == (50, True)
    opts = PipelineOptions([]).view_as(SelfPlayOptions)
    assert (opts.sample_top_k, opts.allow_eos) == (50, False)
    changed = PipelineOptions(["--sample-top-k=0", "--allow-eos"]).view_as(SelfPlayOptions)
    assert (changed.sample_top_k, changed.allow_eos) == (0, True)
    sampling = plans.Sampling(4, 0.9, 150, ("\nassert",), top_k=opts.sample_top_k, ban_eos=not opts.allow_eos)
    puzzle = {"id": "p", "sat": "def f(x: int, a=3):\n    return x * a == 12"}
    _, request = plans.solve_request(puzzle, "", sampling, run_seed=1)
    assert (request.spec.top_k, request.spec.ban_eos, request.spec.n, request.spec.top_p) == (50, True, 4, 1.0)
    assert request.spec.repetition_penalty == 1.0


def test_the_p3_evaluations_defaults_are_the_presets_test_attempts():
    from transforms.execute.options import EVAL_DEFAULTS

    solve = load_preset().solve
    assert EVAL_DEFAULTS["p3"] == (solve.eval_temperature, solve.max_new_tokens, solve.eval_attempts) == (0.8, 150,
                                                                                                         100)
