"""What the self-play stages ask the engine, and the plain records they pass on. Pure.

* Generation: one keyed plan per prompt, ``n`` samples in its request (``paper``: f-only P3 train puzzles packed
  to the token budget, ``generate.build_generation_prompt``; ``seed``: the project's f/g format).
* Solve: one keyed request per puzzle with its ``n`` attempts (``solve.build_solve_prompt``), or the reason it
  cannot be attempted.
* The PUZZLE record of a filtered puzzle and its solutions; the TRAINING_EXAMPLE records of a solved puzzle (one
  builder for a round's own training set and for the self-play loop's merge of rounds), and the example order
  that decides which examples a cap keeps.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

from runners.api import GenerateRequest, SamplingSpec, request_seed
from schemas.records import content_id
from transforms.execute.verdicts import parse_ans_type
from transforms.io.training_examples import training_example
from transforms.selfplay import generate, puzzles, solve, training_text
from transforms.selfplay.p3 import P3Instance
from transforms.selfplay.preset import SelfPlayPreset
from transforms.selfplay.source import WeirdSignature

PRESETS = ("paper", "seed")
TRAINING_FORMATS = ("raw", "instruction")


@dataclasses.dataclass(frozen=True)
class Sampling:
    n: int
    temperature: float
    max_tokens: int
    stop: tuple[str, ...]
    top_k: int = 0  # 0: the whole vocabulary
    ban_eos: bool = False

    def spec(self, seed: int) -> SamplingSpec:
        """The engine's sampling of one request: no top-p and no repetition penalty, as the reference's HF
        generate."""
        return SamplingSpec(n=self.n, temperature=self.temperature, top_p=1.0, top_k=self.top_k,
                            ban_eos=self.ban_eos, repetition_penalty=1.0, max_tokens=self.max_tokens, stop=self.stop,
                            seed=seed)


def generation_plans(preset_name: str, *, paper_pool: Sequence[P3Instance], seed_pool: Sequence[puzzles.Puzzle],
                     count_tokens: Callable[[str], int], prompt_budget: int, num_prompts: int, shots: int,
                     sampling: Sampling, run_seed: int, preset: SelfPlayPreset) -> list[tuple[str, dict[str, Any]]]:
    """``(key, plan)`` per prompt; a plan holds its request, the names of its examples and what its completions
    continue (``head``: ``def f(`` for ``paper``; the numbered header for ``seed``)."""
    if preset_name not in PRESETS:
        raise ValueError(f"self-play preset must be one of {PRESETS}, got {preset_name!r}")
    if num_prompts < 1 or sampling.n < 1:
        raise ValueError("--num-prompts and --samples-per-prompt must be at least 1")
    plans = []
    for j in range(num_prompts):
        if preset_name == "paper":
            if not paper_pool:
                raise ValueError("the paper preset builds its prompts from the P3 training families: pass --p3-dir")
            prompt = generate.build_generation_prompt(
                paper_pool, count_tokens, prompt_index=j, seed=run_seed, max_tokens=prompt_budget,
                gen_tokens=sampling.max_tokens, strings=preset.generation)
            head = preset.generation.completion_head
        else:
            prompt = generate.build_seed_prompt(seed_pool, shots=shots, prompt_index=j, seed=run_seed)
            head = f"def f{prompt.k + 1}("
        key = f"prompt-{j}"
        spec = sampling.spec(request_seed(key, 0, run_seed))
        plans.append((key, {"prompt_index": j, "preset": preset_name, "k": prompt.k, "examples": list(prompt.examples),
                            "head": head, "seed": spec.seed, "request": GenerateRequest(prompt.text, spec)}))
    return plans


def puzzle_text(sample: dict[str, Any], seed_examples: Sequence[puzzles.Puzzle] = ()) -> str:
    """The puzzle a generation sample holds, before the filters: ``paper``: ``def f(`` + the completion (the
    filters cut it); ``seed``: the f of the parsed f/g pair (``PuzzleRejected`` when there is none)."""
    if sample["preset"] == "paper":
        return sample["head"] + sample["text"]
    parsed = puzzles.parse_generated(sample["head"], sample["text"], sample["k"] + 1, seed_examples)
    return parsed.sat


def verifiable_type(answer_type: str | None) -> bool:
    """Whether the verifier can check answers of this type (int, float, str, bool, nested List[...])."""
    if not answer_type:
        return False
    try:
        parse_ans_type(answer_type)
    except ValueError:
        return False
    return True


def solve_request(puzzle: dict[str, Any], prefix: str, sampling: Sampling, run_seed: int,
                  strings=None) -> tuple[solve.SolvePrompt, GenerateRequest] | tuple[str, str]:
    """The solve prompt and request of a puzzle (``n`` attempts), or ``(reason, detail)`` when it cannot be
    attempted: ``weird_signature`` (its inputs cannot be read off its header) or ``unverifiable_answer_type``."""
    try:
        prompt = solve.build_solve_prompt(prefix, puzzle["sat"], strings)
    except WeirdSignature as err:
        return "weird_signature", str(err)
    if not verifiable_type(prompt.answer_type):
        return "unverifiable_answer_type", f"answer type {prompt.answer_type!r} is not int, float, str, bool or List"
    spec = sampling.spec(request_seed(puzzle["id"], 0, run_seed))
    return prompt, GenerateRequest(prompt.text, spec)


def puzzle_id(sat: str) -> str:
    return content_id("selfplay_puzzle", sat)


def puzzle_record(sample: dict[str, Any], sat: str, answer_type: str | None, tested: bool, model: str,
                  ) -> dict[str, Any]:
    """The PUZZLE record of a puzzle that passed the filters (solutions are added by the solve stage)."""
    return {
        "id": puzzle_id(sat), "name": f"generated/prompt-{sample['prompt_index']}#{sample['sample_index']}",
        "sat": sat, "answer_type": answer_type, "trivial_tested": tested, "sol": None, "solutions": [],
        "attempts": 0, "verified_attempts": 0, "origin": "generated", "preset": sample["preset"],
        "prompt_index": sample["prompt_index"], "sample_index": sample["sample_index"],
        "examples": list(sample["examples"]), "model": model, "seed": sample["seed"],
        "source_uri": f"self-play:prompt-{sample['prompt_index']}", "source_row": sample["sample_index"],
        "stage": "self_play.filter",
    }


def require_training_format(training_format: str) -> None:
    """``ValueError`` unless ``training_format`` is one of ``TRAINING_FORMATS``."""
    if training_format not in TRAINING_FORMATS:
        raise ValueError(f"training format must be raw or instruction, got {training_format!r}")


def solved_puzzle_examples(puzzle: dict[str, Any], preset: SelfPlayPreset, training_format: str,
                           template: puzzles.SelfPlayPrompt, iteration: int | None = None) -> list[dict[str, Any]]:
    """A solved PUZZLE record -> one TRAINING_EXAMPLE per solution in ``puzzle["solutions"]``: the reference's raw
    text (``raw``: an empty instruction and the text as the response, trained with the loss on every token) or the
    instruction format (the puzzle as the instruction, g as the response). ``iteration`` (the merge of rounds: the
    round the puzzle record came from, as its ``source_uri``/``source_row`` repeat across rounds) goes into the
    provenance only, never into the example's id."""
    require_training_format(training_format)
    header = solve.solution_header(puzzle["sat"], preset.solve)  # every solution starts with it
    provenance = {"puzzle": puzzle["name"], "format": training_format,
                  **({"iteration": iteration} if iteration is not None else {})}
    examples = []
    for g in puzzle["solutions"]:
        if training_format == "raw":
            text = training_text.training_example(puzzle["sat"], g[len(header):], preset.training,
                                                  preset.solve.header)
            instruction, response = "", text
        else:
            instruction = template.train_instruction.format(f=puzzle["sat"])
            response = template.train_response.format(g=g)
        examples.append(training_example(
            source="self_play", instruction=instruction, response=response, language="python",
            snippet_id=puzzle["id"], provenance=provenance,
            source_uri=puzzle["source_uri"], source_row=puzzle["source_row"]))
    return examples


def example_sort_key(example: dict[str, Any], seed: int) -> str:
    """The order in which a cap keeps training examples: a seeded hash of the example's id."""
    return content_id("selfplay_training_cap", seed, example["id"])
