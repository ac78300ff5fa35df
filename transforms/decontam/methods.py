"""Contamination checks against benchmark items: ``substring`` (the paper's baseline), ``ngram``,
``signature``, ``minhash``. The default set is ``ngram`` + ``signature`` (``DEFAULT_METHODS``).

All of them are built once into a ``DecontamIndex`` (plain picklable data, shipped to workers as one Beam
side input) and applied per record with ``DecontamIndex.check(record, columns)``, which returns the
evidence of every method that flags the record (empty list: clean).

``substring`` reproduces bigcode/Magicoder ``find_substrings`` (ise-uiuc/magicoder
src/magicoder/decontamination/find_substrings.py, migrated from bigcode-project/bigcode-dataset): the
record's columns are lower-cased and joined with ``"\\n\\n"``; for each benchmark in order, for each of its
strings in order, ``string.lower() in content``; the first hit rejects. The strings per benchmark are the
ones bigcode/Magicoder guard: the docstring (HumanEval, extracted exactly as theirs) or the prompt
(MBPP text, APPS question, DS-1000 prompt, ...) and the canonical solutions, stripped. Their hand list of
four trivial HumanEval solutions is replaced by the token-count rule (``benchmarks.is_trivial_solution``),
which removes those four too. ``substring_variant="magicoder"`` instead reproduces Magicoder's strings
exactly (``benchmarks.magicoder_strings``: which fields per benchmark, stripped or not, their hand list).

``ngram`` looks for overlap of token n-grams (default n=10) in two views:

* code view (benchmark solutions): identifiers, literals, whitespace and comments normalized away
  (``normalize.code_signature``), so renaming and reformatting do not hide a copy;
* word view (benchmark statements/docstrings and tests): lower-cased words, so a docstring pasted into
  a longer instruction is found, and so are tests, whose literal values are what identifies them.

Every record column is checked in both views. A benchmark *unit* (one solution, one statement, one test
file) is matched when the record contains at least ``threshold`` (default 0.5) of the unit's distinct
n-grams. A fraction, not "any shared n-gram", because after normalization a single 10-gram is often a
common idiom: ``for i in range(len(x)):`` is exactly ten normalized tokens and occurs in many HumanEval
solutions. Half of a unit's n-grams means a contiguous shared run of at least n + (|unit| - n) / 2 tokens.

A solution unit leaves out the n-grams that touch a function header (``def sat(n: int, li=[1, 2], k=4):``)
or hold nothing but literal tokens (``[<num> , <num> , ...``): erased, they identify nothing, yet they were
most of a short puzzle's n-grams (P3's train puzzles matched its test puzzles on shared header shapes). A
solution with fewer than ``min_solution_tokens`` tokens outside its headers is no n-gram unit.

Two additions to ``ngram`` cover what n-grams of that size cannot see:

* **phrases**: a statement or description shorter than ``word_n`` words has no word n-gram at all
  (``Return length of given string``). If it has at least ``phrase_min_words`` words it is guarded as a
  phrase: the ``phrase`` view hashes the same word tokens in ``phrase_min_words``-grams, and a phrase unit
  needs *all* of its n-grams (threshold 1), i.e. the whole phrase. The floor is measured against real
  instructions (``bench/decontam_phrases.py``).
* **structure**: reordering independent statements breaks every n-gram across a statement boundary, so
  a reordered copy of a 20-100 token solution can fall just under the threshold (HumanEval/20 and /156 at
  0.47-0.49). A record whose share of a solution's n-grams is at least ``structure_floor`` (but below the
  threshold) is parsed, and flagged if one of its functions has the solution's canonical body
  (``signatures.body_key``: names erased, statement lists sorted). Few records come near a solution
  (0.06% of the stdlib's functions reach the default 0.3; 0.2% reach 0.2), so few are parsed. Renamed
  throughout and reordered by the tests' disguise generator, the 34 non-trivial HumanEval solutions it
  can reorder score 0.46 or more, except HumanEval/8 (0.21, 23 tokens; its signature catches it when its
  name is kept).

``signature`` guards a benchmark function by its signature *and* its body, for solutions too short for
n-grams (``def truncate_number(number: float) -> float: return number % 1.0``): a record function with the
same normalized name and parameter names, annotations equal where both have them, and the same canonical
body (``signatures``). A function with no body (a stub, or a signature quoted in prose) needs every
annotation present and equal. A function that only shares a name (``add``, ``is_prime``) with different
parameters or body does not match. The record is searched only where ``def NAME(`` names a guarded function.
``signature`` complements the methods listed before it: it looks only at the records they left clean
(so with the default ``ngram,signature`` an exact copy carries ngram's evidence, and the
``contaminated_by_signature`` counter counts what the signature guard added); listed first, it sees all.

``minhash`` (optional) flags records whose code is Jaccard-similar (MinHash estimate >= threshold) to a
benchmark solution; it measures resemblance of the whole column, so unlike ``ngram`` it misses a solution
embedded in a much longer text.
"""
from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
import logging
import re
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from transforms.decontam import benchmarks, normalize, signatures
from transforms.decontam.benchmarks import DEFAULT_MIN_SOLUTION_TOKENS, BenchmarkItem, is_trivial_solution

LOG = logging.getLogger(__name__)
MIN_STATEMENT_WORDS = 3  # the "project" substring variant's floor; the shortest shipped HumanEval statement has 11

METHODS = ("substring", "ngram", "signature", "minhash")
DEFAULT_METHODS = ("ngram", "signature")
SUBSTRING_VARIANTS = ("project", "magicoder")
# Shortest statement guarded as a phrase, in words; measured by bench/decontam_phrases.py (README).
DEFAULT_PHRASE_MIN_WORDS = 5
DEFAULT_STRUCTURE_FLOOR = 0.3
SPAN_TEXT_LIMIT = 400
PYTHON = ("python", "py", "python3")


@dataclasses.dataclass(frozen=True)
class DecontamConfig:
    methods: tuple[str, ...] = DEFAULT_METHODS
    ngram_n: int = 10  # code tokens per n-gram
    word_n: int = 10  # words per n-gram in the word view
    ngram_threshold: float = 0.5  # fraction of a unit's distinct n-grams found in the record
    min_solution_tokens: int = DEFAULT_MIN_SOLUTION_TOKENS
    tokenizer: str = "regex"  # "regex" | "python" (see normalize)
    minhash_n: int = 5
    minhash_num_perm: int = 128
    minhash_threshold: float = 0.7
    minhash_seed: int = 1
    phrase_min_words: int = DEFAULT_PHRASE_MIN_WORDS  # 0: no phrase units
    structure_floor: float = DEFAULT_STRUCTURE_FLOOR  # 0: no structural check of near misses
    substring_variant: str = "project"  # "project" | "magicoder"

    def __post_init__(self) -> None:
        unknown = set(self.methods) - set(METHODS)
        if unknown or not self.methods:
            raise ValueError(f"unknown decontamination methods {sorted(unknown)}; choose from {METHODS}")
        if not 0 < self.ngram_threshold <= 1:
            raise ValueError("ngram_threshold must be in (0, 1]")
        if self.ngram_n < 2 or self.word_n < 2:
            raise ValueError("n-gram sizes must be >= 2")
        if self.phrase_min_words and not 2 <= self.phrase_min_words < self.word_n:
            raise ValueError(f"phrase_min_words must be 0 (off) or in [2, word_n={self.word_n})")
        if not 0 <= self.structure_floor < self.ngram_threshold:
            raise ValueError("structure_floor must be 0 (off) or in (0, ngram_threshold)")
        if self.substring_variant not in SUBSTRING_VARIANTS:
            raise ValueError(f"unknown substring_variant {self.substring_variant!r}: choose from {SUBSTRING_VARIANTS}")


@dataclasses.dataclass(frozen=True)
class Unit:
    """One guarded benchmark string in one view."""

    benchmark: str
    task_id: str
    field: str  # "solution" | "statement" | "description" | "tests"
    view: str  # "code" | "words" | "phrase"
    language: str
    n_grams: int  # distinct n-grams
    body_keys: tuple[str, ...] = ()  # canonical bodies of a solution's functions (structural check)


def _span_text(text: str, start: int, end: int) -> str:
    s = text[start:end]
    return s if len(s) <= SPAN_TEXT_LIMIT else s[:SPAN_TEXT_LIMIT] + f"...<{len(s) - SPAN_TEXT_LIMIT} more chars>"


def _columns_text(record: Mapping[str, Any], columns: Sequence[str]) -> list[tuple[str, str]]:
    return [(c, record.get(c) or "") for c in columns]


# ------------------------------------------------------------------------------------------- substring


@dataclasses.dataclass
class SubstringIndex:
    """bigcode/Magicoder's FILTER_OUT: {benchmark-string-group: [strings]} in insertion order."""

    groups: dict[str, list[tuple[str, str]]]  # group -> [(task_id, string)]

    @classmethod
    def build(cls, items: Sequence[BenchmarkItem], min_solution_tokens: int, variant: str = "project"
              ) -> SubstringIndex:
        if variant == "magicoder":
            return cls(benchmarks.magicoder_strings(items))
        groups: dict[str, list[tuple[str, str]]] = {}
        too_short = []
        for item in items:  # docstrings/prompts of a benchmark first, then its solutions, like FILTER_OUT
            s = item.statement.strip()
            if len(s.split()) < MIN_STATEMENT_WORDS:  # "x" would match nearly every snippet
                too_short += [f"{item.benchmark}/{item.task_id}"] if s else []
                continue
            groups.setdefault(f"{item.benchmark}_docstrings", []).append((item.task_id, s))
        if too_short:
            LOG.warning("substring: %d benchmark statement(s) of fewer than %d words are not searched for (they "
                        "would match nearly everything): %s", len(too_short), MIN_STATEMENT_WORDS,
                        ", ".join(too_short[:5]))
        for item in items:
            for sol in item.solutions:
                s = sol.strip()
                if s and not is_trivial_solution(s, item.language, min_solution_tokens):
                    groups.setdefault(f"{item.benchmark}_solutions", []).append((item.task_id, s))
        return cls(groups)

    def n_strings(self) -> int:
        return sum(len(v) for v in self.groups.values())

    def check(self, record: Mapping[str, Any], columns: Sequence[str]) -> dict[str, Any] | None:
        cols = _columns_text(record, columns)
        content = "\n\n".join(text.lower() for _, text in cols)
        for group, strings in self.groups.items():
            for task_id, string in strings:
                needle = string.lower()
                pos = content.find(needle)
                if pos >= 0:
                    column, start, end = _locate(cols, pos, pos + len(needle))
                    text = dict(cols)[column]
                    return {
                        "method": "substring", "benchmark": group.rsplit("_", 1)[0], "task_id": task_id,
                        "field": group.rsplit("_", 1)[1], "filter_reason": f"{group}_match",
                        "column": column, "span": [start, end], "matched_text": _span_text(text, start, end),
                    }
        return None


def _locate(cols: list[tuple[str, str]], pos: int, end: int) -> tuple[str, int, int]:
    """Map a match [pos, end) in the "\\n\\n"-joined lower-cased content back to (column, start, end) in
    that column's original text (``lower()`` may lengthen a character: "İ" becomes two)."""
    offset = 0
    for column, text in cols:
        low_size = len(text.lower())
        if pos < offset + low_size + 2 or column == cols[-1][0]:
            start, stop = max(0, pos - offset), min(end - offset, low_size)
            if low_size == len(text):
                return column, start, stop
            return column, _original_offset(text, start), _original_offset(text, stop, end=True)
        offset += low_size + 2
    return cols[-1][0], 0, 0


def _original_offset(text: str, lowered: int, end: bool = False) -> int:
    """The offset in ``text`` of offset ``lowered`` in ``text.lower()``: the character whose lower-cased
    form holds it (with ``end``, the end of the character that holds the one before it)."""
    if end:
        return _original_offset(text, lowered - 1) + 1 if lowered > 0 else 0
    seen = 0
    for index, char in enumerate(text):
        seen += len(char.lower())
        if seen > lowered:
            return index
    return len(text)


# ----------------------------------------------------------------------------------------------- ngram


def _description(docstring: str) -> str:
    """The prose part of a docstring: everything before its first example."""
    cut = len(docstring)
    for marker in (">>>", "Example", "example:", "For example"):
        i = docstring.find(marker)
        if 0 <= i < cut:
            cut = i
    return docstring[:cut]


# A docstring line that starts its examples or notes: ">>> f(1)", "Examples:", "Note: ...", or a call
# shown with its result ("f(1) == 2", "f(1) ➞ 2", "f(1) -> 2", "f(1) should return 2").
_EXAMPLE_LINE = re.compile(
    r"^\s*(?:>>>|examples?\b|for example|note\b|e\.g\.)|\w\s*\(.*\)\s*(?:==|=>|->|➞|should\b)", re.IGNORECASE)


def _prose(docstring: str) -> str:
    """The lines of a docstring before its first example or note line (where a copy usually stops)."""
    kept = []
    for line in docstring.splitlines():
        if _EXAMPLE_LINE.search(line):
            break
        kept.append(line)
    return "\n".join(kept)


def _solution_body_keys(item: BenchmarkItem, solution: str, config: DecontamConfig) -> tuple[str, ...]:
    """Canonical bodies of the functions a Python solution defines whose body alone is not trivial."""
    if (item.language or "python").lower() not in PYTHON:
        return ()
    return tuple(sorted({
        shape.body_key for shape, body in signatures.benchmark_functions(item.prompt, solution, item.entry_point)
        if shape.body_key and not is_trivial_solution(body, item.language, config.min_solution_tokens)}))


_FILTER_BITS = 21  # 2 Mi-bit (256 KiB, cache-resident) presence filter in front of the exact lookup


class _KeySet:
    """Membership of uint64 n-gram hashes: a presence filter on the top bits, then an exact sorted lookup
    for the few candidates (most n-grams of clean text are rejected by one array gather). Also holds the
    postings as flat arrays (``units[offsets[i]:offsets[i + 1]]`` are the units of ``keys[i]``)."""

    def __init__(self, postings: Mapping[int, Sequence[int]]) -> None:
        self.keys = np.array(sorted(postings), dtype=np.uint64)
        bits = np.zeros(1 << _FILTER_BITS, bool)
        bits[(self.keys >> np.uint64(64 - _FILTER_BITS)).astype(np.intp)] = True
        self.filter = np.packbits(bits, bitorder="little")
        lists = [postings[k] for k in self.keys.tolist()]
        self.offsets = np.zeros(len(lists) + 1, np.int64)
        np.cumsum([len(v) for v in lists], out=self.offsets[1:])
        self.units = np.array([u for v in lists for u in v], dtype=np.int64)

    def __len__(self) -> int:
        return int(self.keys.size)

    def lookup(self, grams: np.ndarray) -> np.ndarray:
        """Index into ``keys`` of every gram, -1 where the gram is not a key."""
        found = np.full(grams.size, -1, np.int64)
        if not self.keys.size or not grams.size:
            return found
        slot = grams >> np.uint64(64 - _FILTER_BITS)
        byte = self.filter[(slot >> np.uint64(3)).astype(np.intp)]
        candidates = np.flatnonzero((byte >> (slot & np.uint64(7)).astype(np.uint8)) & np.uint8(1))
        if candidates.size:
            sub = grams[candidates]
            pos = np.searchsorted(self.keys, sub)
            pos[pos == self.keys.size] = 0
            hit = self.keys[pos] == sub
            found[candidates[hit]] = pos[hit]
        return found

    def member(self, grams: np.ndarray) -> np.ndarray:
        return self.lookup(grams) >= 0

    def unit_pairs(self, owners: np.ndarray, key_index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(owner, unit) for every posting of every (owner, key) pair."""
        counts = self.offsets[key_index + 1] - self.offsets[key_index]
        first = np.repeat(self.offsets[key_index], counts)
        step = np.arange(first.size) - np.repeat(np.cumsum(counts) - counts, counts)
        return np.repeat(owners, counts), self.units[first + step]


@dataclasses.dataclass
class NgramIndex:
    """Hashed n-gram postings (64-bit n-gram hash -> ids of the units containing it), one per view."""

    n: int
    word_n: int
    threshold: float
    tokenizer: str
    units: list[Unit]
    code_postings: dict[int, tuple[int, ...]]
    word_postings: dict[int, tuple[int, ...]]
    phrase_n: int = 0  # words per n-gram of the phrase view (0: no phrase units)
    phrase_postings: dict[int, tuple[int, ...]] = dataclasses.field(default_factory=dict)
    structure_floor: float = 0.0  # 0: no structural check of near misses

    @classmethod
    def build(cls, items: Sequence[BenchmarkItem], config: DecontamConfig) -> NgramIndex:
        units: list[Unit] = []
        postings: dict[str, dict[int, list[int]]] = {view: collections.defaultdict(list)
                                                      for view in ("code", "words", "phrase")}
        seen: set[tuple[str, str, str, frozenset]] = set()

        def add(item: BenchmarkItem, field: str, view: str, grams: set[int], body_keys: tuple[str, ...] = ()
                ) -> None:
            key = (item.benchmark, item.task_id, view, frozenset(grams))
            if not grams or key in seen:  # e.g. a description equal to the whole statement
                return
            seen.add(key)
            uid = len(units)
            units.append(Unit(item.benchmark, item.task_id, field, view, item.language, len(grams), body_keys))
            for g in grams:
                postings[view][g].append(uid)

        for item in items:
            python = (item.language or "python").lower() in PYTHON
            for sol in item.solutions:
                if is_trivial_solution(sol, item.language, config.min_solution_tokens):
                    continue
                # A function header (`def sat(n: int, li=[17, 2, 3], k=4):`) or a bare literal says little
                # once names and literals are erased, yet it can be most of a short solution's n-grams: P3
                # puzzles matched each other on their headers' default lists. Only n-grams clear of headers
                # and not all literal count, and a solution whose code outside its headers is trivially
                # short is not guarded by n-grams.
                headers = signatures.header_spans(sol) if python else []
                grams, body_tokens = normalize.guarded_code_ngrams(sol, config.ngram_n, headers, item.language,
                                                                   config.tokenizer)
                if body_tokens < config.min_solution_tokens:
                    continue
                keys = _solution_body_keys(item, sol, config) if config.structure_floor else ()
                add(item, "solution", "code", grams, keys)
            statement = item.statement
            # The statement whole, and cut where a copy of its prose would stop (before the examples).
            texts = [("statement", statement), ("description", _description(statement)),
                     ("description", _prose(statement))]
            for field, text in texts:
                add(item, field, "words", normalize.text_ngrams(text, config.word_n, "words"))
            if config.phrase_min_words:
                for field, text in texts:
                    if config.phrase_min_words <= len(normalize.word_tokens(text)) < config.word_n:
                        add(item, field, "phrase", normalize.text_ngrams(text, config.phrase_min_words, "phrase"))
            for test in item.tests:
                add(item, "tests", "words", normalize.text_ngrams(test, config.word_n, "words"))
        return cls(
            n=config.ngram_n, word_n=config.word_n, threshold=config.ngram_threshold, tokenizer=config.tokenizer,
            units=units,
            code_postings={g: tuple(v) for g, v in postings["code"].items()},
            word_postings={g: tuple(v) for g, v in postings["words"].items()},
            phrase_n=config.phrase_min_words,
            phrase_postings={g: tuple(v) for g, v in postings["phrase"].items()},
            structure_floor=config.structure_floor,
        )

    def __post_init__(self) -> None:
        self._keys = {"code": _KeySet(self.code_postings), "words": _KeySet(self.word_postings),
                      "phrase": _KeySet(self.phrase_postings)}
        self._unit_sizes = np.array([u.n_grams for u in self.units], dtype=np.float64)
        # A phrase unit needs all of its n-grams: the whole phrase.
        self._unit_thresholds = np.array([1.0 if u.view == "phrase" else self.threshold for u in self.units])
        self._structural = np.array([bool(u.body_keys) for u in self.units], dtype=bool)

    def view_n(self, view: str) -> int:
        return {"code": self.n, "words": self.word_n, "phrase": self.phrase_n}[view]

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        for derived in ("_keys", "_unit_sizes", "_unit_thresholds", "_structural"):
            state.pop(derived, None)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.__post_init__()

    def _hits(self, records: Sequence[Mapping[str, Any]], columns: Sequence[str],
              languages: Sequence[str | None]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Per view, the distinct (record index, index of the key in that view's ``_KeySet``) pairs: the
        record n-grams that are in the index. Every column is checked in both views."""
        views = [(view, self.view_n(view)) for view in ("code", "words", "phrase") if len(self._keys[view])]
        parts: dict[str, tuple[list[np.ndarray], list[np.ndarray]]] = {view: ([], []) for view, _ in views}
        # The code view's comment syntax depends on the language: hash each language family apart (the
        # word view does not depend on it, so it is hashed with the same batches).
        groups: dict[bool, list[int]] = collections.defaultdict(list)
        for i, lang in enumerate(languages):
            groups[normalize.is_c_family(lang)].append(i)
        for c_family, members in groups.items():
            # Every column of every member in one batch: text t belongs to member t % len(members).
            texts = [records[i].get(column) or "" for column in columns for i in members]
            batch_views = views
            if self.tokenizer == "python":
                batch_views = [(view, n) for view, n in views if view != "code"]
                if len(batch_views) < len(views):
                    self._python_code_hits(records, columns, languages, members, parts["code"])
            member_arr = np.asarray(members, np.int64)
            for view, (grams, owner) in normalize.batch_view_ngrams(texts, batch_views,
                                                                    "c" if c_family else None).items():
                pos = self._keys[view].lookup(grams)
                found = pos >= 0
                parts[view][0].append(member_arr[owner[found] % len(members)])
                parts[view][1].append(pos[found])
        hits = {}
        for view, (owners, key_index) in parts.items():
            if owners:
                width = len(self._keys[view])
                pairs = np.unique(np.concatenate(owners) * width + np.concatenate(key_index))
                hits[view] = np.divmod(pairs, width)
        return hits

    def _python_code_hits(self, records: Sequence[Mapping[str, Any]], columns: Sequence[str],
                          languages: Sequence[str | None], members: list[int],
                          out: tuple[list[np.ndarray], list[np.ndarray]]) -> None:
        """Code-view hits with Python's own tokenizer (``tokenizer="python"``), record by record."""
        keys = self._keys["code"]
        for i in members:
            grams: set[int] = set()
            for column in columns:
                grams |= normalize.text_ngrams(records[i].get(column) or "", self.n, "code", languages[i],
                                               self.tokenizer)
            pos = keys.lookup(np.array(sorted(grams), dtype=np.uint64))
            out[1].append(pos[pos >= 0])
            out[0].append(np.full(out[1][-1].size, i, np.int64))

    def _matches(self, counts: Mapping[int, int]) -> list[tuple[float, int, int]]:
        """(fraction, matched, unit id) of every unit at or above its threshold, best first."""
        found = []
        for uid, matched in counts.items():
            frac = matched / self.units[uid].n_grams
            if frac >= self._unit_thresholds[uid]:
                found.append((frac, matched, uid))
        found.sort(key=lambda t: (-t[0], -t[1], t[2]))
        return found

    def check_batch(self, records: Sequence[Mapping[str, Any]], columns: Sequence[str],
                    languages: Sequence[str | None] | None = None) -> list[dict[str, Any] | None]:
        languages = list(languages) if languages is not None else [None] * len(records)
        out: list[dict[str, Any] | None] = [None] * len(records)
        # Matched n-grams per (record, unit), summed over the views, all in numpy: only the records with a
        # unit at or above the threshold come back to Python.
        owner_parts, unit_parts = [], []
        for view, (owners, key_index) in self._hits(records, columns, languages).items():
            o, u = self._keys[view].unit_pairs(owners, key_index)
            owner_parts.append(o)
            unit_parts.append(u)
        if not owner_parts:
            return out
        n_units = len(self.units)
        pair, matched = np.unique(np.concatenate(owner_parts) * n_units + np.concatenate(unit_parts),
                                  return_counts=True)
        owner, unit = np.divmod(pair, n_units)
        fraction = matched / self._unit_sizes[unit]
        above = fraction >= self._unit_thresholds[unit]
        flagged = []
        flagged_ids = np.unique(owner[above])
        for i in flagged_ids.tolist():
            sel = owner == i
            flagged.append((i, self._matches(dict(zip(unit[sel].tolist(), matched[sel].tolist())))))
        spans = self._spans([(records[i], found[0][2], languages[i]) for i, found in flagged], columns)
        for (i, found), span in zip(flagged, spans):
            out[i] = self._evidence(records[i], columns, found, span)
        if self.structure_floor:
            near = (fraction >= self.structure_floor) & self._structural[unit] & ~np.isin(owner, flagged_ids)
            for i in np.unique(owner[near]).tolist():
                sel = np.flatnonzero(near & (owner == i))
                order = sorted(sel.tolist(), key=lambda k: (-fraction[k], int(unit[k])))
                out[i] = self._structure_evidence(
                    records[i], columns, [(float(fraction[k]), int(matched[k]), int(unit[k])) for k in order])
        return out

    def _structure_evidence(self, record: Mapping[str, Any], columns: Sequence[str],
                            candidates: list[tuple[float, int, int]]) -> dict[str, Any] | None:
        """Evidence if a function of the record has the canonical body of a near-miss solution unit."""
        shapes = [(column, shape) for column in columns
                  for shape in signatures.functions_in_text(record.get(column) or "") if shape.body_key]
        for frac, matched, uid in candidates:
            unit = self.units[uid]
            for column, shape in shapes:
                if shape.body_key in unit.body_keys:
                    text = record.get(column) or ""
                    return {
                        "method": "ngram", "benchmark": unit.benchmark, "task_id": unit.task_id,
                        "field": unit.field, "view": unit.view, "n": self.n, "score": round(frac, 4),
                        "matched_ngrams": matched, "unit_ngrams": unit.n_grams, "threshold": self.threshold,
                        "structure_floor": self.structure_floor, "verified_by": "canonical_body",
                        "function": shape.display, "units_matched": 1, "also_matched": [],
                        "column": column, "span": [shape.start, shape.end],
                        "matched_text": _span_text(text, shape.start, shape.end),
                    }
        return None

    def check(self, record: Mapping[str, Any], columns: Sequence[str],
              language: str | None = None) -> dict[str, Any] | None:
        return self.check_batch([record], columns, [language])[0]

    def _evidence(self, record: Mapping[str, Any], columns: Sequence[str], found: list[tuple[float, int, int]],
                  span: tuple[int, str, int, int]) -> dict[str, Any]:
        frac, matched, uid = found[0]
        unit = self.units[uid]
        evidence = {
            "method": "ngram", "benchmark": unit.benchmark, "task_id": unit.task_id, "field": unit.field,
            "view": unit.view, "n": self.view_n(unit.view),
            "score": round(frac, 4), "matched_ngrams": matched, "unit_ngrams": unit.n_grams,
            "threshold": float(self._unit_thresholds[uid]), "units_matched": len(found),
            # Benchmarks have near-twins (HumanEval/56 and /61 differ only in the bracket character).
            "also_matched": sorted({f"{self.units[u].benchmark}:{self.units[u].task_id}" for _, _, u in found[1:]}
                                   - {f"{unit.benchmark}:{unit.task_id}"})[:10],
        }
        length, column, start, end = span
        if length:
            text = dict(_columns_text(record, columns))[column]
            evidence.update({"column": column, "span": [start, end], "matched_text": _span_text(text, start, end)})
        return evidence

    def _batch_tokens(self, texts: list[str], view: str, language: str | None
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(values, starts, ends) of the tokens of ``texts`` joined by ``normalize.join_texts``, offsets in
        the joined text: the tokens the batch check hashed. numpy for all texts at once where that path has
        offsets; the scalar tokenizers for ``tokenizer="python"`` and for the word view of non-ASCII text."""
        joined = normalize.join_texts(texts)
        if view == "code" and self.tokenizer == "regex":
            toks = normalize.fast_code_tokens(joined, normalize.is_c_family(language), positions=True)
            return toks.values, toks.starts, toks.ends
        view = normalize.TOKEN_VIEW[view]
        if view == "words" and len(joined.lower()) == len(joined):
            toks = normalize.fast_word_tokens(joined, positions=True)
            return toks.values, toks.starts, toks.ends
        values, starts, ends, offset = [], [], [], 0
        for k, text in enumerate(texts):
            if k:  # the separator between texts, as the batch path has it
                values.append(normalize.SEPARATOR)
                starts.append(offset - 2)
                ends.append(offset - 1)
            toks = (normalize.code_tokens(text, language, self.tokenizer) if view == "code"
                    else normalize.word_tokens(text))
            values += [t.value for t in toks]
            starts += [offset + t.start for t in toks]
            ends += [offset + t.end for t in toks]
            offset += len(text) + 3
        return (np.array(values, dtype=np.uint64), np.array(starts, dtype=np.int64), np.array(ends, dtype=np.int64))

    def _spans(self, items: list[tuple[Mapping[str, Any], int, str | None]], columns: Sequence[str]
               ) -> list[tuple[int, str, int, int]]:
        """For each (record, unit id, language): the longest run of consecutive n-grams of the unit in one
        column of the record (the first such run, columns in order), as (run length in n-grams, column,
        start, end); (0, "", 0, 0) if there is none. All the records of a view in one numpy pass."""
        groups: dict[tuple[str, bool], list[int]] = collections.defaultdict(list)
        for k, (_, uid, language) in enumerate(items):
            groups[self.units[uid].view, normalize.is_c_family(language)].append(k)
        out: list[tuple[int, str, int, int]] = [(0, "", 0, 0)] * len(items)
        for (view, c_family), members in groups.items():
            keys = self._keys[view]
            n = self.view_n(view)
            texts = [items[k][0].get(column) or "" for k in members for column in columns]
            offsets = np.zeros(len(texts), np.int64)
            np.cumsum([len(t) + 3 for t in texts[:-1]], out=offsets[1:])
            values, starts, ends = self._batch_tokens(texts, view, "c" if c_family else None)
            grams, owner, first = normalize._gram_hashes(values, n, with_starts=True)
            key_index = keys.lookup(grams)
            found = np.flatnonzero(key_index >= 0)
            gram_of, unit_of = keys.unit_pairs(found, key_index[found])
            wanted = np.repeat(np.array([items[k][1] for k in members], np.int64), len(columns))
            hit = np.unique(gram_of[unit_of == wanted[owner[gram_of]]])  # grams of the record's unit, in order
            if not hit.size:
                continue
            # Runs of consecutive windows of one text.
            cut = np.flatnonzero((np.diff(first[hit]) != 1) | (np.diff(owner[hit]) != 0)) + 1
            run_first = np.concatenate(([0], cut))
            run_last = np.concatenate((cut, [hit.size])) - 1
            best: dict[int, tuple[int, str, int, int]] = {}
            for a, b in zip(run_first.tolist(), run_last.tolist()):
                text = int(owner[hit[a]])
                m = text // len(columns)
                length = b - a + 1
                if length > best.get(m, (0,))[0]:  # the first longest, texts and positions in order
                    start_tok, end_tok = int(first[hit[a]]), int(first[hit[b]]) + n - 1
                    best[m] = (length, columns[text % len(columns)], int(starts[start_tok] - offsets[text]),
                               int(ends[end_tok] - offsets[text]))
            for m, span in best.items():
                out[members[m]] = span
        return out


# ------------------------------------------------------------------------------------------- signature


@dataclasses.dataclass
class SignatureIndex:
    """Guarded benchmark functions by normalized name: (benchmark, task_id, shape) per unit."""

    units: list[tuple[str, str, signatures.FunctionShape]]
    by_name: dict[str, tuple[int, ...]]

    @classmethod
    def build(cls, items: Sequence[BenchmarkItem]) -> SignatureIndex:
        """The entry point of every Python item (or the solution's only function when the format names
        none); items with neither guard nothing here."""
        units: list[tuple[str, str, signatures.FunctionShape]] = []
        seen = set()
        for item in items:
            if (item.language or "python").lower() not in PYTHON:
                continue
            for sol in item.solutions:
                functions = signatures.benchmark_functions(item.prompt, sol, item.entry_point)
                if len(functions) != 1:
                    continue
                shape = dataclasses.replace(functions[0][0], start=0, end=0)
                key = (item.benchmark, item.task_id, shape)
                if key not in seen:
                    seen.add(key)
                    units.append(key)
        by_name: dict[str, list[int]] = collections.defaultdict(list)
        for uid, (_, _, shape) in enumerate(units):
            by_name[shape.name].append(uid)
        return cls(units, {name: tuple(v) for name, v in by_name.items()})

    def __post_init__(self) -> None:
        self._names = frozenset(self.by_name)
        self._known_names: dict[str, bool] = {}  # raw def name -> guarded (a cache: names repeat)

    def _could_match(self, shape: signatures.FunctionShape) -> bool:
        """A guarded function has this signature (checked before the body is canonicalized)."""
        return any(shape.signature_matches(self.units[uid][2]) for uid in self.by_name.get(shape.name, ()))

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state.pop("_names", None)
        state.pop("_known_names", None)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.__post_init__()

    def check(self, record: Mapping[str, Any], columns: Sequence[str]) -> dict[str, Any] | None:
        matches = []
        for column in columns:
            text = record.get(column) or ""
            for shape in signatures.functions_in_text(text, self._names, self._could_match):
                for uid in self.by_name[shape.name]:
                    benchmark, task_id, target = self.units[uid]
                    if not shape.signature_matches(target):
                        continue
                    if shape.body_key is None:
                        if not shape.fully_typed_equal(target):
                            continue
                        how = "stub: no body, same fully typed signature"
                    elif shape.body_key == target.body_key:
                        how = "same canonical body"
                    else:
                        continue
                    matches.append((column, shape, benchmark, task_id, target, how))
        if not matches:
            return None
        column, shape, benchmark, task_id, target, how = matches[0]
        text = record.get(column) or ""
        return {
            "method": "signature", "benchmark": benchmark, "task_id": task_id, "field": "signature",
            "signature": target.display, "matched_signature": shape.display, "body": how,
            "column": column, "span": [shape.start, shape.end],
            "matched_text": _span_text(text, shape.start, shape.end),
            "also_matched": sorted({f"{b}:{t}" for _, _, b, t, _, _ in matches[1:]} - {f"{benchmark}:{task_id}"})[:10],
        }

    def check_batch(self, records: Sequence[Mapping[str, Any]], columns: Sequence[str],
                    skip: Iterable[int] = ()) -> list[dict[str, Any] | None]:
        """``check`` for the records whose text has ``def NAME(`` with a guarded name, found with one
        regex scan of the whole batch (most records name no guarded function and cost only that scan).
        Records in ``skip`` (already flagged) are not looked at."""
        skipped = set(skip)
        texts = [("" if i in skipped else record.get(column) or "") for i, record in enumerate(records)
                 for column in columns]
        joined = "\x00".join(texts)
        starts = np.cumsum([0] + [len(t) + 1 for t in texts[:-1]])
        wanted = set()
        known = self._known_names
        for m in signatures.DEF_RE.finditer(joined):
            raw = m.group(1)
            guarded = known.get(raw)
            if guarded is None:
                if len(known) > 100_000:
                    known.clear()
                guarded = known[raw] = signatures.normalize_name(raw) in self._names
            if guarded:
                wanted.add(int(np.searchsorted(starts, m.start(), side="right")) - 1)
        out: list[dict[str, Any] | None] = [None] * len(records)
        for i in sorted({t // len(columns) for t in wanted}):
            out[i] = self.check(records[i], columns)
        return out


# --------------------------------------------------------------------------------------------- minhash


@dataclasses.dataclass
class MinhashIndex:
    """datasketch MinHashLSH over the code view of benchmark solutions."""

    config: DecontamConfig
    units: list[Unit]
    lsh: Any  # datasketch.MinHashLSH (keys are unit ids)
    signatures: list[Any]  # datasketch.LeanMinHash per unit

    @classmethod
    def build(cls, items: Sequence[BenchmarkItem], config: DecontamConfig) -> MinhashIndex:
        from datasketch import LeanMinHash, MinHashLSH

        lsh = MinHashLSH(threshold=config.minhash_threshold, num_perm=config.minhash_num_perm)
        units, sigs = [], []
        for item in items:
            for sol in item.solutions:
                if is_trivial_solution(sol, item.language, config.min_solution_tokens):
                    continue
                grams = normalize.text_ngrams(sol, config.minhash_n, "code", item.language, config.tokenizer)
                if not grams:
                    continue
                m = LeanMinHash(_minhash(grams, config))
                lsh.insert(len(units), m)
                units.append(Unit(item.benchmark, item.task_id, "solution", "code", item.language, len(grams)))
                sigs.append(m)
        return cls(config, units, lsh, sigs)

    def check(self, record: Mapping[str, Any], columns: Sequence[str],
              language: str | None = None) -> dict[str, Any] | None:
        best = None
        for column, text in _columns_text(record, columns):
            grams = normalize.text_ngrams(text, self.config.minhash_n, "code", language, self.config.tokenizer)
            if not grams:
                continue
            m = _minhash(grams, self.config)
            for uid in self.lsh.query(m):
                j = m.jaccard(self.signatures[uid])
                if j >= self.config.minhash_threshold and (best is None or j > best[0]):
                    best = (j, uid, column)
        if best is None:
            return None
        j, uid, column = best
        unit = self.units[uid]
        return {
            "method": "minhash", "benchmark": unit.benchmark, "task_id": unit.task_id, "field": unit.field,
            "score": round(float(j), 4), "threshold": self.config.minhash_threshold, "column": column,
            "span": [0, len(record.get(column) or "")],
        }


def _minhash(grams: Iterable[int], config: DecontamConfig):
    from datasketch import MinHash

    m = MinHash(num_perm=config.minhash_num_perm, seed=config.minhash_seed)
    m.update_batch([g.to_bytes(8, "little") for g in grams])
    return m


# ----------------------------------------------------------------------------------------------- index


@dataclasses.dataclass
class DecontamIndex:
    config: DecontamConfig
    benchmarks: dict[str, int]  # benchmark -> number of items
    items_fingerprint: str  # content hash of every guarded item (for the manifest)
    substring: SubstringIndex | None = None
    ngram: NgramIndex | None = None
    minhash: MinhashIndex | None = None
    signature: SignatureIndex | None = None

    @classmethod
    def build(cls, items: Sequence[BenchmarkItem], config: DecontamConfig = DecontamConfig()) -> DecontamIndex:
        if not items:
            raise ValueError("no benchmark items to decontaminate against")
        counts = collections.Counter(item.benchmark for item in items)
        h = hashlib.blake2b(digest_size=16)
        for item in items:
            h.update(json.dumps(dataclasses.asdict(item), sort_keys=True).encode("utf-8", "surrogatepass"))
        return cls(
            config=config,
            benchmarks=dict(sorted(counts.items())),
            items_fingerprint=h.hexdigest(),
            substring=SubstringIndex.build(items, config.min_solution_tokens, config.substring_variant)
            if "substring" in config.methods else None,
            ngram=NgramIndex.build(items, config) if "ngram" in config.methods else None,
            minhash=MinhashIndex.build(items, config) if "minhash" in config.methods else None,
            signature=SignatureIndex.build(items) if "signature" in config.methods else None,
        )

    def check_batch(self, records: Sequence[Mapping[str, Any]], columns: Sequence[str],
                    languages: Sequence[str | None] | None = None) -> list[list[dict[str, Any]]]:
        """Per record, the evidence of every configured method that flags it (``[]``: clean)."""
        languages = list(languages) if languages is not None else [None] * len(records)
        found: list[list[dict[str, Any]]] = [[] for _ in records]
        for method in self.config.methods:
            if method == "ngram":
                results = self.ngram.check_batch(records, columns, languages)
            elif method == "substring":
                results = [self.substring.check(r, columns) for r in records]
            elif method == "signature":
                # A complement: only the records the methods before it left clean (see the module doc).
                results = self.signature.check_batch(records, columns, skip=[i for i, ev in enumerate(found) if ev])
            else:
                results = [self.minhash.check(r, columns, lang) for r, lang in zip(records, languages)]
            for evidence, result in zip(found, results):
                if result is not None:
                    evidence.append(result)
        return found

    def check(self, record: Mapping[str, Any], columns: Sequence[str],
              language: str | None = None) -> list[dict[str, Any]]:
        return self.check_batch([record], columns, [language])[0]

    def describe(self) -> dict[str, Any]:
        """Manifest entry: what this index guards against, and how."""
        out: dict[str, Any] = {
            "config": dataclasses.asdict(self.config), "benchmarks": self.benchmarks,
            "items_fingerprint": self.items_fingerprint,
        }
        if self.substring is not None:
            out["substring_strings"] = self.substring.n_strings()
        if self.ngram is not None:
            views = collections.Counter(u.view for u in self.ngram.units)
            out["ngram_units"] = dict(sorted(views.items()))
            out["ngram_distinct"] = {"code": len(self.ngram.code_postings), "words": len(self.ngram.word_postings),
                                     "phrase": len(self.ngram.phrase_postings)}
            out["ngram_structural_units"] = int(sum(bool(u.body_keys) for u in self.ngram.units))
        if self.signature is not None:
            out["signature_functions"] = len(self.signature.units)
        if self.minhash is not None:
            out["minhash_units"] = len(self.minhash.units)
        return out
