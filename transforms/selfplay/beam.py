"""Beam glue of self-play: generated samples -> parsed puzzles -> verified pairs -> one pair per distinct puzzle.

Every generated sample ends in exactly one place: a verified, distinct pair, or a dead letter with a reason: a
parse reason (``transforms.selfplay.puzzles.PARSE_REASONS``), ``engine_error``, ``verify_failed``,
``verify_timeout`` or ``duplicate_puzzle``.
"""
from __future__ import annotations

from typing import Any, Iterator, Sequence

import apache_beam as beam

from runners.api import GenerateRequest, SamplingSpec, request_seed
from runners.inference import to_samples
from schemas.records import RecordKind
from transforms.execute.isolation import IsolationLimits
from transforms.execute.verdicts import verify_pair
from transforms.io.training_examples import training_example
from transforms.selfplay import puzzles
from transforms.stage import Reject, StageBooks, StageFn

STAGE = "self_play"


def plan_prompts(pool: Sequence[puzzles.Puzzle], template: puzzles.SelfPlayPrompt, *, num_prompts: int, shots: int,
                 samples_per_prompt: int, temperature: float, max_tokens: int, run_seed: int
                 ) -> list[tuple[str, dict[str, Any]]]:
    """One keyed plan per prompt: its request and the examples it shows."""
    if num_prompts < 1 or shots < 1 or samples_per_prompt < 1:
        raise ValueError("--num-prompts, --shots and --samples-per-prompt must be at least 1")
    plans = []
    for j in range(num_prompts):
        examples = puzzles.choose_examples(pool, shots, j, run_seed)
        index = len(examples) + 1
        key = f"prompt-{j}"
        seed = request_seed(key, 0, run_seed)
        spec = SamplingSpec(n=samples_per_prompt, temperature=temperature, top_p=1.0,
                            repetition_penalty=1.0, max_tokens=max_tokens, stop=template.stop, seed=seed)
        plans.append((key, {"prompt_index": j, "index": index, "tail": template.next.format(i=index),
                            "examples": examples, "seed": seed,
                            "request": GenerateRequest(puzzles.few_shot_prompt(examples, template), spec)}))
    return plans


def _sample_base(_key: str, plan: dict[str, Any], i: int) -> dict[str, Any]:
    return {"prompt_index": plan["prompt_index"], "sample_index": i, "index": plan["index"],
            "tail": plan["tail"], "examples": plan["examples"], "seed": plan["seed"]}


def generated_samples(element, n: int) -> Iterator[dict[str, Any]]:
    """A plan joined to its generation result -> n samples (an engine error gives n error samples)."""
    return to_samples(element, n, _sample_base)


def _provenance(sample: dict[str, Any]) -> dict[str, Any]:
    return {"source_uri": f"self-play:prompt-{sample['prompt_index']}", "source_row": sample["sample_index"]}


def _payload(sample: dict[str, Any], **extra: Any) -> dict[str, Any]:
    payload = {k: v for k, v in sample.items() if k != "examples"}
    payload["examples"] = [e.name for e in sample["examples"]]
    return {**payload, **extra}


class ParsePuzzleFn(beam.DoFn):
    """A sample -> ``{"puzzle", "sample"}``, or a dead letter of the generate step (engine error) or the parse step."""

    def __init__(self):
        self.generate_books = StageBooks(f"{STAGE}.generate", RecordKind.PUZZLE)
        self.books = StageBooks(f"{STAGE}.parse", RecordKind.PUZZLE)

    def process(self, sample: dict[str, Any]) -> Iterator[Any]:
        if "engine_error" in sample:
            self.generate_books.took()
            yield self.generate_books.reject(_payload(sample), "engine_error", sample["engine_error"],
                                             **_provenance(sample))
            return
        self.books.took()
        name = f"generated/prompt-{sample['prompt_index']}#{sample['sample_index']}"
        try:
            puzzle = puzzles.parse_generated(sample["tail"], sample["text"], sample["index"], sample["examples"], name)
        except puzzles.PuzzleRejected as e:
            yield self.books.reject(_payload(sample), e.reason, e.detail, **_provenance(sample))
            return
        yield self.books.kept({"puzzle": puzzle, "sample": sample})


class VerifyPuzzleFn(StageFn):
    """g() runs in a sandbox and returns its answer as plain data of f's answer type; f(answer) runs in a fresh
    sandbox and must return exactly True (``transforms.execute.verdicts.verify_pair``)."""

    stage = f"{STAGE}.verify"
    record_kind = RecordKind.PUZZLE

    def __init__(self, limits: IsolationLimits, model: str, template: puzzles.SelfPlayPrompt,
                 allow_unisolated: bool = False):
        super().__init__()
        self._limits = limits
        self._model = model
        self._template = template
        self._allow_unisolated = allow_unisolated

    def process_record(self, element: dict[str, Any]) -> Iterator[Any]:
        puzzle, sample = element["puzzle"], element["sample"]
        result = verify_pair(puzzle.sat, puzzles.solution_program(puzzle), puzzles.answer_type(puzzle.sat),
                             self._limits, preamble=self._template.preamble, allow_unisolated=self._allow_unisolated)
        if not result.passed:
            reason = "verify_timeout" if result.status == "timeout" else "verify_failed"
            yield Reject(reason, result.reason, _payload(sample, sat=puzzle.sat, sol=puzzle.sol),
                         provenance=_provenance(sample))
            return
        yield puzzles.puzzle_record(
            puzzle, prompt_index=sample["prompt_index"], sample_index=sample["sample_index"],
            examples=[e.name for e in sample["examples"]], model=self._model, seed=sample["seed"],
            verify_seconds=round(result.duration_s, 3), stage=self.stage, **_provenance(sample))


class KeepOnePerPuzzleFn(StageFn):
    """The verified pair with the smallest id survives (deterministic); the others are duplicates."""

    stage = f"{STAGE}.dedup"
    record_kind = RecordKind.PUZZLE

    def process(self, element: tuple[str, Sequence[dict[str, Any]]]) -> Iterator[Any]:
        _, records = element
        ordered = sorted(records, key=lambda r: r["id"])
        self.books.took(len(ordered))
        yield self.books.kept(ordered[0])
        for r in ordered[1:]:
            yield self.books.reject(r, "duplicate_puzzle", f"same puzzle as {ordered[0]['id']}")


def to_training_example(record: dict[str, Any], template: puzzles.SelfPlayPrompt) -> dict[str, Any]:
    puzzle = puzzles.Puzzle(record["name"], record["sat"], record["sol"], record["origin"])
    instruction, response = puzzles.training_pair(puzzle, template)
    return training_example(source="self_play", instruction=instruction, response=response, language="python",
                            snippet_id=record["id"], provenance={"puzzle_id": record["puzzle_id"], "name": record["name"]},
                            source_uri=record["source_uri"], source_row=record["source_row"])
