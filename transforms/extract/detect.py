"""Language detection (untagged code), designed so that English prose is never called code:

1. Each detectable language has regex signals with weights (``def f(...):``, ``console.log(``,
   ``#include <iostream>``, ``fmt.Println``...; see ``transforms.extract.languages``). A language whose gate
   regex does not match (HTML must start with a tag, SQL with a statement keyword, PHP needs ``$var``,
   ``<?php`` or an ``echo ...;`` line), or whose veto regex matches (R's ``x <- f()`` is valid Python
   but never Python style), scores nothing and is not tried. Only the first 8,000 characters are
   scanned, with lines cut at 400, which bounds the regex cost.
2. If no language scores >= 4 and at least half of the non-comment lines read as sentences (>= 4
   words, >= 80% plain words, one of them an English function word such as "the", "to", "than", and
   no call, assignment or brace), the text is prose: ``no_code``, nothing is parsed.
3. Fast path: if Python scores >= 4 and the code passes the Python checks below, it is Python (CPython
   is the strictest parser available; most records end here). Otherwise, languages scoring >= 2 are
   tried in order of score (ties: ``DETECTION_PRIORITY``, bash last), at most 4, then Python. The
   first that parses cleanly wins. Python is always tried because CPython's
   parser rejects prose, but a detected Python snippet must also contain real code (a definition,
   import, assignment, call, loop, branch...): a bare name, number or list literal (``true``, ``42``,
   ``[1, 2]``) is an answer, not code. Permissive grammars (bash, ruby, html, php) are therefore only
   tried on positive evidence, which is what keeps prose from becoming "bash".
4. If none parses: ``syntax_error`` in the best-scoring language when it scored >= 4 (clearly code,
   but broken), else ``no_code``.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

from transforms.extract.languages import DETECTION_PRIORITY, LANGUAGES
from transforms.extract.literals import may_match, required_substrings
from transforms.extract.reasons import NO_CODE, SYNTAX_ERROR
from transforms.extract.syntax import python_code_is_code, python_compile, tree_sitter_error

# Detection thresholds (see the module docstring).
CANDIDATE_SCORE = 2.0
STRONG_SCORE = 4.0
MAX_DETECTION_ATTEMPTS = 4
SIGNAL_SCAN_CHARS = 8000
SIGNAL_LINE_CHARS = 400
MAX_PREFILTER_SUBSTRINGS = 12
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*+")


_PROSE_WORD = re.compile(r"[(\"']?[A-Za-z][a-z]*(?:['\u2019-][A-Za-z]+)*[,.;:!?)\"']*")
_COMMENT_STARTS = ("#", "//", "/*", "*", "--", "<!--", "%", ";")
# English function words that are keywords of no language we detect: a keyword-heavy code line such as
# `if x is not None and y in z:` is all plain words too, but has none of these.
_ENGLISH_FUNCTION_WORDS = frozenset(
    "the a an to of this that it its you your we our they their can be are was were will would should "
    "could which than then there these those by on at into using use has have".split()
)


_CODE_MARKS = re.compile(r"\w\(|[=;{}<>]|\)$")  # a call, assignment, brace... (a string may hold prose)


def looks_like_prose(text: str) -> bool:
    """At least half of the non-blank, non-comment lines read as sentences: >= 4 tokens, >= 80% plain
    words, at least one English function word, and no call, assignment or brace."""
    considered = prose = 0
    for raw in text.split("\n"):
        line = raw.strip()
        if not line or line.startswith(_COMMENT_STARTS):
            continue
        considered += 1
        tokens = line.split()
        if len(tokens) >= 4 and not _CODE_MARKS.search(line):
            words = [token for token in tokens if _PROSE_WORD.fullmatch(token)]
            if len(words) >= 0.8 * len(tokens) and any(
                word.strip("(\"'),.;:!?").lower() in _ENGLISH_FUNCTION_WORDS for word in words
            ):
                prose += 1
    return considered > 0 and 2 * prose >= considered


class _Sample:
    """The scanned part of the code, and its identifiers (computed on first use: most records never need them)."""

    __slots__ = ("text", "_words")

    def __init__(self, code: str):
        text = code[:SIGNAL_SCAN_CHARS]
        if len(text) > SIGNAL_LINE_CHARS:  # cut long lines: bounds the per-line cost of the signal regexes
            lines = text.split("\n")
            if any(len(line) > SIGNAL_LINE_CHARS for line in lines):
                text = "\n".join(line[:SIGNAL_LINE_CHARS] for line in lines)
        self.text = text
        self._words: set[str] | None = None

    @property
    def words(self) -> set[str]:
        if self._words is None:
            self._words = set(_IDENTIFIER.findall(self.text))
        return self._words


class _Gate:
    """A gate or veto regex behind its substring prefilter (``transforms.extract.literals``)."""

    __slots__ = ("search", "substrings")

    def __init__(self, pattern: re.Pattern[str]):
        self.search = pattern.search
        self.substrings = _prefilter(pattern)

    def matches(self, text: str) -> bool:
        return may_match(self.substrings, text) and self.search(text) is not None


def _prefilter(pattern: re.Pattern[str]) -> tuple[str, ...] | None:
    substrings = required_substrings(pattern)
    if substrings is None or len(substrings) > MAX_PREFILTER_SUBSTRINGS:
        return None  # so many substring searches would cost more than the regex
    return tuple(sorted(substrings))


class _Scorer:
    """One language's evidence: the gate and veto, then each signal counted once. The signals are tried in
    order of weight (regexes before word sets at equal weight), so a threshold is often reached early.

    A signal is ``(substrings, search, words, weight)``: a regex's ``search`` behind its prefilter (one of
    ``substrings`` must occur, ``None``: no prefilter), or a word set (``words``). The loop is written out
    because it runs ~170 times per untagged record."""

    def __init__(self, name: str):
        spec = LANGUAGES[name]
        self.name = name
        self.gate = _Gate(spec.gate) if spec.gate is not None else None
        self.veto = _Gate(spec.veto) if spec.veto is not None else None
        order = sorted(range(len(spec.signals)),
                       key=lambda i: (-spec.signals[i][1], isinstance(spec.signals[i][0], frozenset), i))
        self.signals = tuple(
            (None, None, signal, weight) if isinstance(signal, frozenset) else
            (_prefilter(signal), signal.search, None, weight)
            for signal, weight in (spec.signals[i] for i in order)
        )

    def excluded(self, sample: _Sample) -> bool:
        return (self.gate is not None and not self.gate.matches(sample.text)) or (
            self.veto is not None and self.veto.matches(sample.text))

    def score(self, sample: _Sample, enough: float = math.inf) -> float:
        """The language's score; with ``enough``, any partial sum >= ``enough`` as soon as it is reached
        (weights are positive, so the full score is at least as high)."""
        if self.excluded(sample):
            return 0.0
        text = sample.text
        score = 0.0
        for substrings, search, words, weight in self.signals:
            if words is not None:
                if words.isdisjoint(sample.words):
                    continue
            else:
                if substrings is not None:
                    for substring in substrings:
                        if substring in text:
                            break
                    else:
                        continue
                if search(text) is None:
                    continue
            score += weight
            if score >= enough:
                return score
        return score


_SCORERS = tuple(_Scorer(name) for name in DETECTION_PRIORITY)
_PYTHON_SCORER = next(scorer for scorer in _SCORERS if scorer.name == "python")
_PRIORITY_INDEX = {name: i for i, name in enumerate(DETECTION_PRIORITY)}


def signal_scores(code: str) -> dict[str, float]:
    """Evidence per detectable language (only languages with some evidence appear)."""
    sample = _Sample(code)
    scores = {}
    for scorer in _SCORERS:
        score = scorer.score(sample)
        if score:
            scores[scorer.name] = score
    return scores


@dataclass(frozen=True)
class Detection:
    language: str | None
    reason: str = ""  # NO_CODE or SYNTAX_ERROR when language is None
    detail: str = ""
    guess: str = ""  # best-scoring language, for the rejection record


def _detected_python_error(code: str) -> str | None:
    compiled, error = python_compile(code)
    if error is None and not python_code_is_code(code, compiled):
        return "python: only names/literals, no statement or call"
    return error


def detect_language(code: str) -> Detection:
    """Which language normalized, untagged ``code`` is (see the module docstring for the rule)."""
    sample = _Sample(code)
    errors: dict[str, str] = {}
    python_score = _PYTHON_SCORER.score(sample, enough=STRONG_SCORE)
    if python_score >= STRONG_SCORE:
        # Fast path (most records): CPython is the strictest parser we have, so strong Python
        # evidence plus a clean compile settles it without scoring the other languages.
        error = _detected_python_error(code)
        if error is None:
            return Detection("python")
        errors["python"] = error
    scores = {}
    for scorer in _SCORERS:
        # Below `enough` the scorer never stopped early: that is Python's full score already.
        weak_python = scorer is _PYTHON_SCORER and python_score < STRONG_SCORE
        score = python_score if weak_python else scorer.score(sample)
        if score:
            scores[scorer.name] = score
    ranked = sorted(scores, key=lambda name: (-scores[name], _PRIORITY_INDEX[name]))
    best = scores[ranked[0]] if ranked else 0.0
    guess = ranked[0] if ranked else ""
    if best < STRONG_SCORE and looks_like_prose(code):
        return Detection(None, NO_CODE, "reads as prose, no strong code signal", guess)
    candidates = [name for name in ranked if scores[name] >= CANDIDATE_SCORE][:MAX_DETECTION_ATTEMPTS]
    if "python" not in candidates and not _PYTHON_SCORER.excluded(sample):
        candidates.append("python")
    for name in candidates:
        if name in errors:
            continue
        error = _detected_python_error(code) if name == "python" else tree_sitter_error(code, name)
        if error is None:
            return Detection(name)
        errors[name] = error
    tried = ", ".join(candidates) or "nothing"
    if best >= STRONG_SCORE:
        why = errors.get(guess, "it did not parse")
        return Detection(None, SYNTAX_ERROR, f"looks like {guess} (score {best:g}) but {why}; tried {tried}", guess)
    return Detection(None, NO_CODE, f"no language parses it with enough evidence (tried {tried})", guess)
