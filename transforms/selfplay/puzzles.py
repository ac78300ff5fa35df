"""Self-play programming puzzles (Haluptzok et al., ICLR 2023): pure logic.

A puzzle is a function ``f(x, ...) -> bool``; a solution is a function ``g()`` that returns an ``x`` with
``f(g()) is True``. The model is shown numbered examples (``f1``/``g1`` ...) and writes the next puzzle and
its solution; the sandbox keeps the pairs it can verify. Puzzles are stored in a canonical form (``ast``
round trip, functions named ``f`` and ``g``), so equal puzzles get equal ids however they were formatted.

Example pools: the project's own seed puzzles (``presets/seed_puzzles.yaml``), and optionally the P3
training families (``load_p3``). The P3 test families are for evaluation only: ``load_p3(split="test")``
gives them, and ``example_pool`` refuses them.
"""
from __future__ import annotations

import ast
import dataclasses
import json
import random
from pathlib import Path
from typing import Any, Sequence

import yaml

from schemas.records import content_id
from transforms.presets import PRESET_DIR

MAX_SOURCE_CHARS = 4000

# Why a generated sample is not a puzzle (dead-letter reasons).
PARSE_REASONS = ("syntax_error", "missing_puzzle", "missing_solution", "puzzle_without_input", "trivial_puzzle",
                 "untyped_answer", "solution_needs_arguments", "copied_example", "too_long")


class PuzzleRejected(ValueError):
    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclasses.dataclass(frozen=True)
class Puzzle:
    name: str
    sat: str  # canonical source of ``def f(...)`` (imports it needs in front)
    sol: str  # canonical source of ``def g(...)``
    origin: str  # "seed" | "p3-train" | "p3-test" | "generated"

    @property
    def puzzle_id(self) -> str:
        """Id of the puzzle alone: two samples with the same f are one puzzle."""
        return content_id("puzzle", self.sat)

    @property
    def id(self) -> str:
        return content_id("puzzle_pair", self.sat, self.sol)


@dataclasses.dataclass(frozen=True)
class SelfPlayPrompt:
    preamble: str
    header: str
    example: str
    next: str
    stop: tuple[str, ...]
    train_instruction: str
    train_response: str


def load_self_play_prompt(path: str | Path = PRESET_DIR / "self_play.yaml") -> SelfPlayPrompt:
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    return SelfPlayPrompt(data["preamble"], data["header"], data["example"], data["next"], tuple(data["stop"]),
                          data["train_instruction"], data["train_response"])


# ------------------------------------------------------------------------------------------- canonical form

def _rename(tree: ast.Module, old: str, new: str) -> None:
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.name == old:
            node.name = new
        elif isinstance(node, ast.Name) and node.id == old:
            node.id = new


def _function(source: str, name: str) -> tuple[ast.Module, ast.FunctionDef]:
    tree = ast.parse(source)
    defs = [n for n in tree.body if isinstance(n, ast.FunctionDef)]
    if len(defs) != 1:
        raise ValueError(f"expected one function in {source[:80]!r}")
    return tree, defs[0]


def canonical(source: str, old_name: str, new_name: str) -> str:
    """``source`` (one function, imports allowed) with the function renamed, in ``ast.unparse`` form."""
    tree, fn = _function(source, old_name)
    _rename(tree, fn.name, new_name)
    return ast.unparse(tree)


def make_puzzle(name: str, sat: str, sol: str, origin: str) -> Puzzle:
    sat_name = _function(sat, "")[1].name
    sol_name = _function(sol, "")[1].name
    return Puzzle(name, canonical(sat, sat_name, "f"), canonical(sol, sol_name, "g"), origin)


# ------------------------------------------------------------------------------------------------- pools

def load_seed_puzzles(path: str | Path = PRESET_DIR / "seed_puzzles.yaml") -> list[Puzzle]:
    return [make_puzzle(p["name"], p["sat"], p["sol"], "seed")
            for p in yaml.safe_load(Path(path).read_text(encoding="utf-8"))]


def load_p3(p3_dir: str | Path, split: str = "train") -> list[Puzzle]:
    """P3 instances of the given split's families that have a reference solution (``puzzles.json`` and
    ``split.json`` of the self-play paper's release). Instances this Python cannot parse (integer literals
    over its 4,300-digit limit) are left out."""
    p3_dir = Path(p3_dir)
    splits = json.loads((p3_dir / "split.json").read_text(encoding="utf-8"))
    if split not in splits:
        raise ValueError(f"{p3_dir}/split.json has no {split!r} split (it has {sorted(splits)})")
    families = set(splits[split])
    out = []
    for p in json.loads((p3_dir / "puzzles.json").read_text(encoding="utf-8")):
        if p["name"].split(":")[0] not in families or not p.get("sol_bodies"):
            continue
        sol = f"{p['sol_header']}\n{p['sol_bodies'][0]}"
        try:
            out.append(make_puzzle(f"p3/{p['name']}", p["sat"], sol, f"p3-{split}"))
        except (SyntaxError, ValueError):
            continue
    return out


MAX_EXAMPLE_CHARS = 1200  # longer examples would crowd the prompt out of a small model's context


def example_pool(p3_dir: str | Path | None = None) -> list[Puzzle]:
    """Few-shot examples: the seed puzzles, plus the P3 training families when ``p3_dir`` is given."""
    pool = load_seed_puzzles()
    if p3_dir:
        pool += [p for p in load_p3(p3_dir, "train") if len(p.sat) + len(p.sol) <= MAX_EXAMPLE_CHARS]
    if any(p.origin == "p3-test" for p in pool):
        raise ValueError("P3 test puzzles are for evaluation only, never prompts")
    return pool


# ------------------------------------------------------------------------------------------------ prompts

def choose_examples(pool: Sequence[Puzzle], shots: int, prompt_index: int, run_seed: int) -> list[Puzzle]:
    """``shots`` distinct examples for one prompt, the same for the same (prompt index, run seed)."""
    rng = random.Random(content_id("self_play_examples", run_seed, prompt_index))
    return rng.sample(list(pool), min(shots, len(pool)))


def few_shot_prompt(examples: Sequence[Puzzle], template: SelfPlayPrompt) -> str:
    parts = [template.preamble, template.header]
    for i, puzzle in enumerate(examples, start=1):
        parts.append(template.example.format(f=canonical(puzzle.sat, "f", f"f{i}"),
                                             g=canonical(puzzle.sol, "g", f"g{i}"), i=i))
    parts.append(template.next.format(i=len(examples) + 1))
    return "".join(parts)


# ---------------------------------------------------------------------------------------- generated text

def _parse_longest_prefix(text: str) -> ast.Module:
    """The longest prefix of ``text``, cut at a top-level line, that parses (generation may stop mid-way)."""
    lines = text.splitlines(keepends=True)
    cuts = [i for i in range(len(lines), 0, -1) if i == len(lines) or not lines[i][:1].isspace()]
    for cut in cuts:
        try:
            return ast.parse("".join(lines[:cut]))
        except SyntaxError:
            continue
    raise PuzzleRejected("syntax_error", text[:200])


def _uses_argument(fn: ast.FunctionDef, arg: str) -> bool:
    return any(isinstance(n, ast.Name) and n.id == arg for stmt in fn.body for n in ast.walk(stmt))


def parse_generated(prompt_tail: str, generated: str, index: int, examples: Sequence[Puzzle] = (),
                    name: str = "") -> Puzzle:
    """The puzzle and solution the model wrote after the prompt (which ends with ``prompt_tail``, the start of
    ``def f{index}(``), in canonical form; ``PuzzleRejected`` with a reason otherwise."""
    text = prompt_tail + generated
    if len(text) > MAX_SOURCE_CHARS:
        raise PuzzleRejected("too_long", f"{len(text)} characters")
    tree = _parse_longest_prefix(text)
    imports = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    defs = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    f, g = defs.get(f"f{index}"), defs.get(f"g{index}")
    if f is None:
        raise PuzzleRejected("missing_puzzle", generated[:200])
    if g is None:
        raise PuzzleRejected("missing_solution", generated[:200])
    positional = f.args.posonlyargs + f.args.args
    if not positional:
        raise PuzzleRejected("puzzle_without_input", ast.unparse(f)[:200])
    if not _uses_argument(f, positional[0].arg):
        raise PuzzleRejected("trivial_puzzle", f"f ignores its input {positional[0].arg!r}")
    annotation = positional[0].annotation
    if annotation is None or answer_type(f"def f({ast.unparse(positional[0])}): pass") is None:
        raise PuzzleRejected("untyped_answer", f"f's input {positional[0].arg!r} has no P3 answer type "
                                               "(int, float, str, bool, nested List[...])")
    g_args = g.args.posonlyargs + g.args.args
    if len(g_args) > len(g.args.defaults) or any(d is None for d in g.args.kw_defaults):
        raise PuzzleRejected("solution_needs_arguments", ast.unparse(g)[:200])
    sat_tree = ast.Module(body=[*imports, f], type_ignores=[])
    sol_tree = ast.Module(body=[*imports, g], type_ignores=[])
    _rename(sat_tree, f.name, "f")
    _rename(sol_tree, g.name, "g")
    _rename(sol_tree, f"f{index}", "f")  # a solution may call its own puzzle
    puzzle = Puzzle(name, ast.unparse(sat_tree), ast.unparse(sol_tree), "generated")
    if any(puzzle.sat == e.sat for e in examples):
        raise PuzzleRejected("copied_example", "the puzzle is one of the prompt's examples")
    return puzzle


def answer_type(sat: str) -> str | None:
    """The P3 answer type of a puzzle: the annotation of ``f``'s first argument (``int``, ``List[str]``...), or
    None when it has none the verifier can check."""
    from transforms.execute.verdicts import parse_ans_type

    fn = next((n for n in ast.parse(sat).body if isinstance(n, ast.FunctionDef) and n.name == "f"), None)
    args = (fn.args.posonlyargs + fn.args.args) if fn else []
    if not args or args[0].annotation is None:
        return None
    text = ast.unparse(args[0].annotation)
    try:
        parse_ans_type(text)
    except ValueError:
        return None
    return text


def solution_program(puzzle: Puzzle) -> str:
    """What ``g`` runs with: the puzzle too, since a solution may call it (as in the reference's judge)."""
    return f"{puzzle.sat}\n\n{puzzle.sol}"


def training_pair(puzzle: Puzzle, template: SelfPlayPrompt) -> tuple[str, str]:
    """(instruction, response) of a verified pair."""
    return template.train_instruction.format(f=puzzle.sat), template.train_response.format(g=puzzle.sol)


def puzzle_record(puzzle: Puzzle, **extra: Any) -> dict[str, Any]:
    return {"id": puzzle.id, "puzzle_id": puzzle.puzzle_id, "name": puzzle.name, "sat": puzzle.sat,
            "sol": puzzle.sol, "origin": puzzle.origin, **extra}
