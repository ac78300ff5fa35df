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

import re
from dataclasses import dataclass

from transforms.extract.languages import DETECTION_PRIORITY, LANGUAGES
from transforms.extract.reasons import NO_CODE, SYNTAX_ERROR
from transforms.extract.syntax import python_compile, python_is_code, tree_sitter_error

# Detection thresholds (see the module docstring).
CANDIDATE_SCORE = 2.0
STRONG_SCORE = 4.0
MAX_DETECTION_ATTEMPTS = 4
SIGNAL_SCAN_CHARS = 8000
SIGNAL_LINE_CHARS = 400
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*+")
_LONG_LINE = re.compile("[^\n]{%d}" % (SIGNAL_LINE_CHARS + 1))


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


@dataclass(frozen=True)
class _Scorer:
    name: str
    gate: re.Pattern[str] | None
    veto: re.Pattern[str] | None
    regexes: tuple[tuple[re.Pattern[str], float], ...]
    word_sets: tuple[tuple[frozenset[str], float], ...]

    def excluded(self, sample: str) -> bool:
        return (self.gate is not None and not self.gate.search(sample)) or (
            self.veto is not None and self.veto.search(sample) is not None
        )

    def score(self, sample: str, words: set[str]) -> float:
        if self.excluded(sample):
            return 0.0
        score = 0.0
        for word_set, weight in self.word_sets:
            if not word_set.isdisjoint(words):
                score += weight
        for pattern, weight in self.regexes:
            if pattern.search(sample):
                score += weight
        return score


_SCORERS = tuple(
    _Scorer(
        name,
        LANGUAGES[name].gate,
        LANGUAGES[name].veto,
        tuple((m, w) for m, w in LANGUAGES[name].signals if not isinstance(m, frozenset)),
        tuple((m, w) for m, w in LANGUAGES[name].signals if isinstance(m, frozenset)),
    )
    for name in DETECTION_PRIORITY
)
_PYTHON_SCORER = next(scorer for scorer in _SCORERS if scorer.name == "python")
_PRIORITY_INDEX = {name: i for i, name in enumerate(DETECTION_PRIORITY)}


def _signal_sample(code: str) -> tuple[str, set[str]]:
    sample = code[:SIGNAL_SCAN_CHARS]
    if _LONG_LINE.search(sample):  # bounds the per-line cost of the signal regexes
        sample = "\n".join(line[:SIGNAL_LINE_CHARS] for line in sample.split("\n"))
    return sample, set(_IDENTIFIER.findall(sample))


def signal_scores(code: str) -> dict[str, float]:
    """Evidence per detectable language (only languages with some evidence appear)."""
    sample, words = _signal_sample(code)
    scores = {}
    for scorer in _SCORERS:
        score = scorer.score(sample, words)
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
    tree, error = python_compile(code)
    if error is None and not python_is_code(tree):
        return "python: only names/literals, no statement or call"
    return error or tree_sitter_error(code, "python")


def detect_language(code: str) -> Detection:
    """Which language normalized, untagged ``code`` is (see the module docstring for the rule)."""
    sample, words = _signal_sample(code)
    errors: dict[str, str] = {}
    python_score = _PYTHON_SCORER.score(sample, words)
    if python_score >= STRONG_SCORE:
        # Fast path (most records): CPython is the strictest parser we have, so strong Python
        # evidence plus a clean compile settles it without scoring the other languages.
        error = _detected_python_error(code)
        if error is None:
            return Detection("python")
        errors["python"] = error
    scores = {"python": python_score} if python_score else {}
    for scorer in _SCORERS:
        if scorer is not _PYTHON_SCORER:
            score = scorer.score(sample, words)
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
