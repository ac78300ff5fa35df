"""P3 (Python Programming Puzzles) as the self-play paper splits it, loaded from ``puzzles.json`` and
``split.json`` given by path.

- ``P3.train``: every instance of the 155 training families, in file order. They are the only puzzles a prompt
  may show (``require_train`` enforces it where prompts are built).
- ``P3.test``: the 228 test puzzles, the FIRST instance of each test family, in ``split.json`` order - the order
  of the reference's ``data/test_228.json`` (alphabetical by family).
- ``P3.unparsable``: instances this Python cannot parse (integer literals over its 4,300-digit limit). They are
  kept and flagged (``parse_error``), never dropped silently: a prompt may still show their text, as the
  reference does, and an unparsable test puzzle simply counts as unsolved.

Texts are renamed as the reference does (``def sat(`` -> ``def f(``, ``def sol(`` -> ``def g(``). P3 keeps its
docstrings in ``sol_docstring``, so ``sat`` has none; ``remove_docstring`` still runs on it in case a file does.
"""
from __future__ import annotations

import ast
import dataclasses
import json
from pathlib import Path
from typing import Iterable

from transforms.selfplay.source import remove_docstring

TRAIN, TEST, NEITHER = "train", "test", "neither"


@dataclasses.dataclass(frozen=True)
class P3Instance:
    name: str  # "Family:index"
    family: str
    split: str  # train | test | neither
    f: str  # the puzzle, ``def f(...)``, docstring removed
    ans_type: str  # "List[int]", ...
    sol_header: str  # ``def g(...):``
    sol_docstring: str
    sol_bodies: tuple[str, ...]
    module: str
    parse_error: str | None = None  # why this Python cannot parse the puzzle or a solution; None when it can

    @property
    def solutions(self) -> tuple[str, ...]:
        """The reference solutions as ``g`` sources."""
        return tuple(f"{self.sol_header}\n{body}" for body in self.sol_bodies)


@dataclasses.dataclass(frozen=True)
class P3:
    train: tuple[P3Instance, ...]
    test: tuple[P3Instance, ...]
    train_families: tuple[str, ...]  # split.json order
    test_families: tuple[str, ...]
    instances: int  # all instances in puzzles.json
    unassigned: int  # instances whose family is in neither split

    @property
    def unparsable(self) -> tuple[P3Instance, ...]:
        return tuple(p for p in self.train + self.test if p.parse_error)

    def first_train_instances(self) -> list[P3Instance]:
        """One puzzle per training family, the first in file order (gen.py ``load_puzzles``)."""
        first: dict[str, P3Instance] = {}
        for p in self.train:
            first.setdefault(p.family, p)
        return list(first.values())

    def train_family(self, family: str) -> list[P3Instance]:
        if family not in self.train_families:
            raise ValueError(f"{family!r} is not a P3 training family")
        return [p for p in self.train if p.family == family]


def _rename(source: str, old: str, new: str) -> str:
    source = source.strip()
    return new + source[len(old):] if source.startswith(old) else source


def _parse_error(sources: Iterable[str]) -> str | None:
    for source in sources:
        try:
            ast.parse(source)
        except (SyntaxError, ValueError) as exc:
            return f"{type(exc).__name__}: {str(exc)[:160]}"
    return None


def _instance(raw: dict, split: str) -> P3Instance:
    f = remove_docstring(_rename(raw["sat"], "def sat(", "def f("))
    header = _rename(raw["sol_header"], "def sol(", "def g(")
    bodies = tuple(raw.get("sol_bodies") or ())
    error = _parse_error([f, *(f"{header}\n{b}" for b in bodies)])
    return P3Instance(raw["name"], raw["name"].split(":")[0], split, f, raw["ans_type"], header,
                      raw.get("sol_docstring", ""), bodies, raw.get("module", ""), error)


def load_p3(p3_dir: str | Path) -> P3:
    p3_dir = Path(p3_dir)
    splits = json.loads((p3_dir / "split.json").read_text(encoding="utf-8"))
    missing = {TRAIN, TEST} - set(splits)
    if missing:
        raise ValueError(f"{p3_dir}/split.json lacks {sorted(missing)}")
    train_families, test_families = tuple(splits[TRAIN]), tuple(splits[TEST])
    if set(train_families) & set(test_families):
        raise ValueError(f"{p3_dir}/split.json puts families in both splits")
    raws = json.loads((p3_dir / "puzzles.json").read_text(encoding="utf-8"))
    train, first_test = [], {}
    unassigned = 0
    train_set, test_set = set(train_families), set(test_families)
    for raw in raws:
        family = raw["name"].split(":")[0]
        if family in train_set:
            train.append(_instance(raw, TRAIN))
        elif family in test_set:
            if family not in first_test:
                first_test[family] = _instance(raw, TEST)
        else:
            unassigned += 1
    absent = [f for f in test_families if f not in first_test]
    if absent:
        raise ValueError(f"{p3_dir}/puzzles.json has no instance of test families {absent[:5]}")
    return P3(tuple(train), tuple(first_test[f] for f in test_families), train_families, test_families,
              len(raws), unassigned)


def require_train(instances: Iterable[P3Instance]) -> list[P3Instance]:
    """``instances`` as a list, or ``ValueError`` if any is not from a training family: the test families are
    for evaluation only and never appear in a prompt."""
    instances = list(instances)
    bad = [p.name for p in instances if p.split != TRAIN]
    if bad:
        raise ValueError(f"only P3 training families may appear in prompts; got {bad[:5]}")
    return instances
