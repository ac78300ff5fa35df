"""P3 (Python Programming Puzzles) as the self-play paper splits it, loaded from ``puzzles.json`` and
``split.json`` given by path.

- ``P3.train``: every instance of the 155 training families, in file order. They are the only puzzles a prompt
  may show (``require_train`` enforces it where prompts are built).
- ``P3.test``: the 228 test puzzles, the FIRST instance of each test family, in ``split.json`` order - the order
  of the reference's ``data/test_228.json`` (alphabetical by family).
- ``P3.test_instances``: every instance of the test families, in file order (1,009 in P3). Never shown nor
  evaluated on: the self-play filter refuses a generated puzzle that is any of them (``puzzle_fingerprint``).
- ``P3.unparsable``: instances this Python cannot parse (integer literals over its 4,300-digit limit). They are
  kept and flagged (``parse_error``), never dropped silently: a prompt may still show their text, as the
  reference does, and an unparsable test puzzle simply counts as unsolved.

Texts are renamed as the reference does (``def sat(`` -> ``def f(``, ``def sol(`` -> ``def g(``). P3 keeps its
docstrings in ``sol_docstring``, so ``sat`` has none; ``remove_docstring`` still runs on it in case a file does.
"""
from __future__ import annotations

import ast
import dataclasses
import functools
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
    test_instances: tuple[P3Instance, ...] = ()  # every instance of the test families, in file order

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


class P3FolderError(ValueError):
    """A P3 folder that cannot be read as one: the message names the file and what is wrong with it."""


# The fields every row of puzzles.json must have (a string each); the others are optional.
REQUIRED_FIELDS = ("name", "sat", "sol_header", "ans_type")


def _instance(raw: dict, split: str) -> P3Instance:
    f = remove_docstring(_rename(raw["sat"], "def sat(", "def f("))
    header = _rename(raw["sol_header"], "def sol(", "def g(")
    bodies = tuple(raw.get("sol_bodies") or ())
    error = _parse_error([f, *(f"{header}\n{b}" for b in bodies)])
    return P3Instance(raw["name"], raw["name"].split(":")[0], split, f, raw["ans_type"], header,
                      raw.get("sol_docstring", ""), bodies, raw.get("module", ""), error)


def _read_json(path: Path, what: str):
    if not path.is_file():
        why = "is not a file" if path.exists() else "does not exist"
        raise P3FolderError(f"{path} {why} (a P3 folder holds puzzles.json and split.json)")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise P3FolderError(f"{path} cannot be read: {exc}") from exc
    if not text.strip():
        raise P3FolderError(f"{path} is empty (it should hold {what})")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise P3FolderError(f"{path} is not valid JSON ({exc}); it should hold {what}") from exc


def _split_families(splits, path: Path, split: str) -> tuple[str, ...]:
    families = splits.get(split)
    if not isinstance(families, list) or not all(isinstance(f, str) for f in families):
        raise P3FolderError(f"{path}: {split!r} must be a list of family names, got {type(families).__name__}")
    if not families:
        raise P3FolderError(f"{path}: the {split!r} list is empty (P3 needs its {split} families)")
    return tuple(families)


def _check_row(raw, index: int, path: Path) -> None:
    if not isinstance(raw, dict):
        raise P3FolderError(f"{path}: entry {index} is a {type(raw).__name__}, not a puzzle object")
    label = f"entry {index}" + (f" ({raw['name']})" if isinstance(raw.get("name"), str) else "")
    lacking = [k for k in REQUIRED_FIELDS if k not in raw]
    if lacking:
        raise P3FolderError(f"{path}: {label} lacks {', '.join(map(repr, lacking))} (every puzzle needs "
                            f"{', '.join(REQUIRED_FIELDS)})")
    wrong = [k for k in REQUIRED_FIELDS if not isinstance(raw[k], str)]
    bodies = raw.get("sol_bodies")
    if bodies is not None and not (isinstance(bodies, list) and all(isinstance(b, str) for b in bodies)):
        wrong.append("sol_bodies")
    if wrong:
        raise P3FolderError(f"{path}: {label} has {', '.join(map(repr, wrong))} of the wrong type (strings; "
                            "sol_bodies a list of strings)")


def load_p3(p3_dir: str | Path) -> P3:
    """The P3 folder ``p3_dir``, or ``P3FolderError`` (a ``ValueError``) naming the file and what is wrong: a path
    that is not a folder, a file missing, empty or not JSON, a split without families, a puzzle without its fields,
    no instance of a test family or of any training family.

    Read once per process while its files are unchanged (a job's checks and its pipeline, and a driver's checks of
    its steps, all load it; ~0.35 s each). ``P3`` is immutable, so the copy can be shared."""
    p3_dir = Path(p3_dir)
    try:
        stamp = tuple((s.st_mtime_ns, s.st_size) for s in (
            (p3_dir / name).stat() for name in ("split.json", "puzzles.json")))
    except OSError:  # not there: _read_p3 says what is missing
        return _read_p3(p3_dir)
    return _read_p3_unchanged(p3_dir.resolve(), stamp)


@functools.lru_cache(maxsize=4)
def _read_p3_unchanged(p3_dir: Path, stamp: tuple) -> P3:
    return _read_p3(p3_dir)


def _read_p3(p3_dir: Path) -> P3:
    if not p3_dir.is_dir():
        why = "is not a folder" if p3_dir.exists() else "does not exist"
        raise P3FolderError(f"{p3_dir} {why}: P3 is a folder holding puzzles.json and split.json")
    split_path, puzzles_path = p3_dir / "split.json", p3_dir / "puzzles.json"
    splits = _read_json(split_path, 'an object {"train": [families], "test": [families]}')
    if not isinstance(splits, dict):
        raise P3FolderError(f"{split_path} holds a {type(splits).__name__}, not an object with 'train' and 'test'")
    missing = {TRAIN, TEST} - set(splits)
    if missing:
        raise P3FolderError(f"{split_path} lacks {sorted(missing)}")
    train_families, test_families = (_split_families(splits, split_path, s) for s in (TRAIN, TEST))
    if set(train_families) & set(test_families):
        raise P3FolderError(f"{split_path} puts families in both splits")
    raws = _read_json(puzzles_path, "a list of puzzles")
    if not isinstance(raws, list):
        raise P3FolderError(f"{puzzles_path} holds a {type(raws).__name__}, not a list of puzzles")
    if not raws:
        raise P3FolderError(f"{puzzles_path} holds no puzzle (an empty list)")
    for index, raw in enumerate(raws):
        _check_row(raw, index, puzzles_path)
    train, first_test, test_instances = [], {}, []
    unassigned = 0
    train_set, test_set = set(train_families), set(test_families)
    for raw in raws:
        family = raw["name"].split(":")[0]
        if family in train_set:
            train.append(_instance(raw, TRAIN))
        elif family in test_set:
            test_instances.append(_instance(raw, TEST))
            first_test.setdefault(family, test_instances[-1])
        else:
            unassigned += 1
    absent = [f for f in test_families if f not in first_test]
    if absent:
        raise P3FolderError(f"{puzzles_path} has no instance of test families {absent[:5]}")
    if not train:
        raise P3FolderError(f"{puzzles_path} has no instance of any training family of {split_path} "
                            f"(first: {list(train_families[:3])})")
    return P3(tuple(train), tuple(first_test[f] for f in test_families), train_families, test_families,
              len(raws), unassigned, tuple(test_instances))


def require_train(instances: Iterable[P3Instance]) -> list[P3Instance]:
    """``instances`` as a list, or ``ValueError`` if any is not from a training family: the test families are
    for evaluation only and never appear in a prompt."""
    instances = list(instances)
    bad = [p.name for p in instances if p.split != TRAIN]
    if bad:
        raise ValueError(f"only P3 training families may appear in prompts; got {bad[:5]}")
    return instances
