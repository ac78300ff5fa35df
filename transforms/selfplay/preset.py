"""The paper's strings and defaults (``transforms/presets/self_play_paper.yaml``) as typed, checked data."""
from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Any, Mapping

import yaml

PRESET_DIR = Path(__file__).resolve().parents[1] / "presets"
PAPER_PRESET = PRESET_DIR / "self_play_paper.yaml"


@dataclasses.dataclass(frozen=True)
class GenerationStrings:
    separator: str
    rename_from: str
    rename_to: str  # placeholder {i}
    next: str
    completion_head: str
    max_tokens: int
    gen_tokens: int
    temperature: float
    top_k: int  # 0: the whole vocabulary
    ban_eos: bool
    samples_per_prompt: int
    n_puzzles: int
    stop: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class FilterStrings:
    trivial_reject_rate: float
    return_true_line: str
    return_true_check: str
    judge_preamble: str
    unsafe_substrings: tuple[str, ...]
    safe_imports: tuple[str, ...]
    trivial_program: str  # placeholders {puzzle}, {candidate}
    definition_names: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class SolveStrings:
    prefix_families: tuple[str, ...]
    prefix_head: str
    prefix_example: str  # placeholders {f}, {g}
    prefix_joiner: str
    # (family, solution as train_prefix.txt spells it): where the released file's text differs from P3's.
    prefix_solutions: tuple[tuple[str, str], ...]
    prompt: str  # placeholders {prefix}, {f}, {header}
    header: str  # placeholder {inputs}
    attempts: int
    temperature: float | None  # None = the generation temperature
    max_new_tokens: int
    top_k: int
    ban_eos: bool
    max_sols_per_puzzle: int
    stop: tuple[str, ...]
    eval_attempts: int
    eval_temperature: float


@dataclasses.dataclass(frozen=True)
class TrainingStrings:
    example: str  # placeholders {f}, {g}
    cap_first_iteration: int
    cap_later_iterations: int


@dataclasses.dataclass(frozen=True)
class SelfPlayPreset:
    name: str
    generation: GenerationStrings
    filters: FilterStrings
    solve: SolveStrings
    training: TrainingStrings


def _build(cls, data: Mapping[str, Any], where: str):
    fields = {f.name: f for f in dataclasses.fields(cls)}
    if set(data) != set(fields):
        raise ValueError(f"{where}: keys {sorted(set(data) ^ set(fields))} are unknown or missing")
    values = {k: tuple(v) if isinstance(v, list) else tuple(v.items()) if isinstance(v, dict) else v
              for k, v in data.items()}
    return cls(**values)


@functools.lru_cache(maxsize=8)
def load_preset(path: str | Path = PAPER_PRESET) -> SelfPlayPreset:
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    sections = {"generation": GenerationStrings, "filters": FilterStrings, "solve": SolveStrings,
                "training": TrainingStrings}
    unknown = set(data) - set(sections) - {"name"}
    if unknown:
        raise ValueError(f"{path}: unknown sections {sorted(unknown)}")
    return SelfPlayPreset(data["name"], **{k: _build(cls, data[k], f"{path}:{k}") for k, cls in sections.items()})
