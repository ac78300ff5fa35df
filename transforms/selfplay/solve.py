"""Solving puzzles as the reference does (gen.py ``solve_puzzles``, solve.py).

Prompt: a fixed few-shot prefix of solved tutorial puzzles (the reference's ``data/train_prefix.txt``:
``from typing import List`` and P3's Tutorial1..5, each as ``f``, ``g`` and ``assert f(g())``), then the puzzle,
a blank line and ``def g(<inputs>):``, where ``<inputs>`` are the puzzle's parameters AFTER the answer, with
their defaults as written (``def f(x: int, a=5)`` -> ``def g(a=5):``). The answer parameter itself does not
appear in ``g``'s header; ``g`` returns it.

A completion becomes ``g``'s body by cutting it at the first line that starts in column 0 (``solution_body``).
An attempt is verified when ``f(g())`` returns exactly True and the answer has f's annotated type (the
judge's ``test_puzzle``). Up to ``max_sols_per_puzzle`` (8) DISTINCT verified solutions are kept, shortest
first. Distinct means a different body text, exactly as cut (no normalisation); ties in length keep the attempt
order (the reference's ``sorted(dedup(successes), key=len)``).

For the sandbox: ``verification_request`` gives the plain data (``sol_source``, ``sat_source``, ``ans_type``) to
run ``g`` and check its answer; ``verification_program`` gives one self-contained program for an executor that
only runs programs. ``sol_source`` holds f too, because in the reference ``g`` runs in the namespace where ``f``
is defined.
"""
from __future__ import annotations

import ast
import dataclasses
import inspect
from typing import Iterable, Sequence

from transforms.selfplay.filters import unsafe_reason
from transforms.selfplay.p3 import P3, P3FolderError, P3Instance, load_p3, require_train
from transforms.selfplay.preset import SolveStrings, load_preset
from transforms.selfplay.source import WeirdSignature, answer_parameter, puzzle_inputs, solution_body


def _strings(strings: SolveStrings | None) -> SolveStrings:
    return strings or load_preset().solve


@dataclasses.dataclass(frozen=True)
class SolveDefaults:
    attempts: int  # per generated puzzle
    temperature: float | None  # None = the generation temperature
    max_new_tokens: int
    max_sols_per_puzzle: int
    eval_attempts: int  # per test puzzle
    eval_temperature: float
    stop: tuple[str, ...]


def solve_defaults(strings: SolveStrings | None = None) -> SolveDefaults:
    s = _strings(strings)
    return SolveDefaults(s.attempts, s.temperature, s.max_new_tokens, s.max_sols_per_puzzle, s.eval_attempts,
                         s.eval_temperature, s.stop)


# ------------------------------------------------------------------------------------------------ prefix

def build_solve_prefix(train: Sequence[P3Instance], strings: SolveStrings | None = None) -> str:
    """The few-shot prefix rebuilt from P3's tutorial families (train split only), ending in a blank line: the
    released ``train_prefix.txt`` byte for byte. It holds the same five puzzles and solutions as P3, two of them
    spelled without P3's spaces (``"a"*(i+2)+"b"``, ``"0"*9``): the preset's ``prefix_solutions`` quote those."""
    s = _strings(strings)
    require_train(train)
    by_family = {}
    for p in train:
        by_family.setdefault(p.family, p)
    missing = [f for f in s.prefix_families if f not in by_family]
    if missing:
        raise ValueError(f"the solve prefix needs the training families {missing}")
    released = dict(s.prefix_solutions)
    examples = []
    for family in s.prefix_families:
        p = by_family[family]
        if not p.solutions:
            raise ValueError(f"{p.name} has no reference solution for the solve prefix")
        g = p.solutions[0]
        if family in released and _same_code(released[family], g):  # a spelling, never another solution
            g = released[family]
        examples.append(s.prefix_example.format(f=p.f, g=g))
    return _as_prefix(s.prefix_joiner.join([s.prefix_head, *examples]))


def _same_code(a: str, b: str) -> bool:
    """Whether two sources parse to the same tree (they differ in layout at most)."""
    try:
        return ast.dump(ast.parse(a)) == ast.dump(ast.parse(b))
    except SyntaxError:
        return False


def check_p3_folder(p3_dir, with_prefix: bool = True) -> P3:
    """The P3 folder loaded (``load_p3``) and, ``with_prefix``, its solve prefix built once: for a job's checks,
    before any work. ``ValueError`` naming the file and what is wrong (``P3FolderError``) or the prefix's problem."""
    p3 = load_p3(p3_dir)
    if with_prefix:
        try:
            build_solve_prefix(p3.train)
        except ValueError as err:
            raise P3FolderError(f"{p3_dir}: {err}") from err
    return p3


def seed_solve_prefix(seed_pool, count: int = 5, strings: SolveStrings | None = None) -> str:
    """A prefix in the same format from the project's own seed puzzles (``seed_puzzles.yaml``), for runs without
    P3: the first ``count`` puzzles, each as ``f``, ``g`` and ``assert f(g())``."""
    s = _strings(strings)
    examples = [s.prefix_example.format(f=p.sat, g=p.sol) for p in list(seed_pool)[:count]]
    if not examples:
        raise ValueError("no seed puzzles for the solve prefix")
    return _as_prefix(s.prefix_joiner.join([s.prefix_head, *examples]))


def _as_prefix(text: str) -> str:
    # solve.py: load_text_file(prefix).strip() + "\n\n"; gen.py then also drops trailing spaces on each line.
    text = text.strip()
    text = "\n".join(line.rstrip(" ") for line in text.split("\n"))
    return text + "\n\n" if text else ""


def load_solve_prefix(path) -> str:
    """A prefix file (e.g. the released ``train_prefix.txt``) as the reference loads it."""
    from pathlib import Path

    return _as_prefix(Path(path).read_text(encoding="utf-8"))


# ------------------------------------------------------------------------------------------------ prompt

@dataclasses.dataclass(frozen=True)
class SolvePrompt:
    text: str
    f: str
    header: str  # def g(<inputs>):
    answer_type: str | None  # f's annotation, for the type check


def solution_header(f: str, strings: SolveStrings | None = None) -> str:
    """``def g(<f's parameters after the answer>):``; ``WeirdSignature`` when f's first line is not a header."""
    return _strings(strings).header.format(inputs=puzzle_inputs(f))


def answer_type(f: str) -> str | None:
    """f's answer annotation as text (``List[int]``); None when absent or f does not parse."""
    try:
        answer = answer_parameter(f)
    except (SyntaxError, ValueError):
        return None
    return answer.annotation_text if answer else None


def build_solve_prompt(prefix: str, f: str, strings: SolveStrings | None = None) -> SolvePrompt:
    """prefix + f + blank line + ``def g(...):``. Raises ``WeirdSignature`` for a puzzle whose inputs cannot be
    read (the reference then writes ``def g(None):``, which never verifies)."""
    s = _strings(strings)
    f = f.strip()
    header = solution_header(f, s)
    return SolvePrompt(s.prompt.format(prefix=prefix, f=f, header=header), f, header, answer_type(f))


# ----------------------------------------------------------------------------------------- verification

@dataclasses.dataclass(frozen=True)
class Attempt:
    index: int  # attempt number, 0-based
    body: str | None  # g's body as cut; None when the completion did not parse
    passed: bool = False


def attempts_from_completions(completions: Iterable[str]) -> list[Attempt]:
    return [Attempt(i, solution_body(c)) for i, c in enumerate(completions)]


def solution_source(prompt: SolvePrompt, body: str) -> str:
    return prompt.header + body


def verification_request(prompt: SolvePrompt, body: str) -> dict[str, str | None]:
    """What to execute for one attempt: run ``g()`` (defined after ``f``), check its answer has ``ans_type`` and
    that ``f(answer)`` is exactly True. ``unsafe`` is the judge's static refusal ("unsafe_code") or None."""
    sol = f"{prompt.f}\n\n{solution_source(prompt, body)}"
    return {"sol_source": sol, "sat_source": prompt.f, "ans_type": prompt.answer_type,
            "unsafe": unsafe_reason(sol + "\n\nassert test_puzzle(f, g())")}


def answer_type_matches(value, type_text):
    """The judge's type check (utils.type_check) on an annotation's text: exact type for int, float, str and bool
    (so True is not an int), elementwise for List[...] and Set[...]; other subscripted types are not checked;
    any other bare type fails."""
    type_text = type_text.replace("typing.", "")
    exact = {"int": int, "float": float, "str": str, "bool": bool}
    if type_text in exact:
        return type(value) is exact[type_text]
    if not type_text.endswith("]"):
        return False
    inner = type_text[type_text.index("[") + 1 : -1]
    if type_text.startswith("List["):
        return isinstance(value, list) and all(answer_type_matches(v, inner) for v in value)
    if type_text.startswith("Set["):
        return isinstance(value, set) and all(answer_type_matches(v, inner) for v in value)
    return True


def verification_program(prompt: SolvePrompt, body: str) -> str:
    """One program that runs cleanly exactly when the attempt verifies: the reference judges
    ``f + g + assert test_puzzle(f, g())`` with ``test_puzzle`` in its environment; here the check is inline."""
    return "\n\n".join([
        "from typing import List, Set, Tuple, Dict",
        inspect.getsource(answer_type_matches).strip(),
        prompt.f,
        solution_source(prompt, body),
        f"answer = g()\nassert answer_type_matches(answer, {prompt.answer_type!r})\nassert f(answer) is True\n",
    ])


def mark_attempts(attempts: Sequence[Attempt], passed: Sequence[bool]) -> list[Attempt]:
    """Attempts with their verdicts (``passed`` lists one verdict per attempt whose body is not None)."""
    parsed = [a for a in attempts if a.body is not None]
    if len(parsed) != len(passed):
        raise ValueError(f"{len(passed)} verdicts for {len(parsed)} parsed attempts")
    verdicts = iter(passed)
    return [dataclasses.replace(a, passed=bool(next(verdicts))) if a.body is not None else a for a in attempts]


def select_solutions(attempts: Sequence[Attempt], max_sols_per_puzzle: int | None = None,
                     strings: SolveStrings | None = None) -> list[str]:
    """Up to ``max_sols_per_puzzle`` distinct verified bodies, shortest first, ties in attempt order."""
    limit = _strings(strings).max_sols_per_puzzle if max_sols_per_puzzle is None else max_sols_per_puzzle
    if limit < 1:  # a slice would keep none (0) or silently drop the longest (-1)
        raise ValueError(f"max_sols_per_puzzle must be at least 1, got {limit}")
    distinct = list(dict.fromkeys(a.body for a in sorted(attempts, key=lambda a: a.index)
                                  if a.passed and a.body is not None))
    return sorted(distinct, key=len)[:limit]


def first_success(attempts: Sequence[Attempt]) -> int | None:
    """1-based number of the first verified attempt (what the reference's test evaluation records)."""
    return next((a.index + 1 for a in sorted(attempts, key=lambda a: a.index) if a.passed), None)


__all__ = ["Attempt", "SolveDefaults", "answer_type_matches", "SolvePrompt", "WeirdSignature", "answer_type",
           "attempts_from_completions", "build_solve_prefix", "build_solve_prompt", "check_p3_folder", "first_success",
           "load_solve_prefix", "mark_attempts", "select_solutions", "solution_header", "solution_source",
           "solve_defaults", "verification_program", "verification_request"]
