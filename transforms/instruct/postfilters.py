"""Post-filters on generated candidate instructions (pure functions; the Summarize stage calls them).

Per candidate, in this order (the first that fires is the reason):

- ``empty``: the model added nothing with a letter or digit after the prefix;
- ``refusal``: the text refuses or apologises instead of describing a problem;
- ``code_echo``: the text repeats the code instead of describing it (the whole code, or most of its lines);
- ``too_short`` / ``too_long``: the stored instruction is outside the configured character bounds.

Across the candidates of one snippet: ``duplicate_candidate`` for a candidate whose normalised instruction
equals one with a lower candidate index (the lowest index is kept).
"""
from __future__ import annotations

import re
from typing import Iterable, NamedTuple

from transforms.instruct.options import FilterConfig

EMPTY = "empty"
REFUSAL = "refusal"
CODE_ECHO = "code_echo"
TOO_SHORT = "too_short"
TOO_LONG = "too_long"
DUPLICATE_CANDIDATE = "duplicate_candidate"
REASONS = (EMPTY, REFUSAL, CODE_ECHO, TOO_SHORT, TOO_LONG, DUPLICATE_CANDIDATE)

_WORD = re.compile(r"\w")
# Refusals and assistant boilerplate; anchored on phrases that do not occur in a problem description.
_REFUSAL = re.compile(
    r"\b("
    r"I(?:'m| am) sorry|I apologi[sz]e|sorry, but|"
    r"I(?:'m| am) (?:not able|unable) to|"
    r"I (?:cannot|can't|can not|won't) (?:help|assist|provide|do|answer|complete|write|comply)|"
    r"as an AI(?: language model)?|as a language model|I'm just an AI|"
    r"I do not have enough (?:information|context)"
    r")",
    re.IGNORECASE,
)
_SPACE = re.compile(r"\s+")
_ECHO_LINE_MIN_CHARS = 10  # shorter lines ("}", "return x") occur in honest descriptions too
_ECHO_WHOLE_MIN_CHARS = 20  # quoting a tiny one-liner is not an echo of the snippet


class Verdict(NamedTuple):
    reason: str
    detail: str


def _squash(text: str) -> str:
    return _SPACE.sub(" ", text).strip()


def echoes_code(instruction: str, code: str, config: FilterConfig = FilterConfig()) -> tuple[bool, str]:
    """Whether ``instruction`` repeats ``code``: the whole code, or at least a share of its substantial lines."""
    squashed_code = _squash(code)
    squashed_text = _squash(instruction)
    if len(squashed_code) >= _ECHO_WHOLE_MIN_CHARS and squashed_code in squashed_text:
        return True, "contains the whole code"
    lines = {_squash(line) for line in code.splitlines()}
    lines = {line for line in lines if len(line) >= _ECHO_LINE_MIN_CHARS}
    if not lines:
        return False, ""
    echoed = sum(1 for line in lines if line in squashed_text)
    if echoed >= config.code_echo_min_lines and echoed / len(lines) >= config.code_echo_line_fraction:
        return True, f"repeats {echoed} of {len(lines)} code lines"
    return False, ""


def check_candidate(generated_text: str, instruction: str, code: str,
                    config: FilterConfig = FilterConfig()) -> Verdict | None:
    """The first post-filter that rejects one candidate, or ``None`` when it passes.

    ``generated_text`` is the model's continuation of the prefix; ``instruction`` the stored
    ``(prefix + generated_text).strip()``. A disabled config passes everything.
    """
    if not config.enabled:
        return None
    if not _WORD.search(generated_text):
        return Verdict(EMPTY, f"continuation {generated_text[:40]!r} has no letter or digit")
    refusal = _REFUSAL.search(generated_text)
    if refusal:
        return Verdict(REFUSAL, f"matched {refusal.group(0)!r}")
    echo, detail = echoes_code(generated_text, code, config)
    if echo:
        return Verdict(CODE_ECHO, detail)
    n = len(instruction)
    if config.min_instruction_chars and n < config.min_instruction_chars:
        return Verdict(TOO_SHORT, f"{n} chars < {config.min_instruction_chars}")
    if config.max_instruction_chars and n > config.max_instruction_chars:
        return Verdict(TOO_LONG, f"{n} chars > {config.max_instruction_chars}")
    return None


def normalize_for_duplicates(instruction: str) -> str:
    """Case- and whitespace-insensitive form; trailing punctuation does not make a new instruction."""
    return _squash(instruction).casefold().rstrip(".!?:; ")


def duplicate_of(candidates: Iterable[tuple[int, str, str]]) -> dict[str, int]:
    """For ``(candidate_index, candidate_id, instruction)`` triples of ONE snippet: ``{duplicate's candidate id:
    kept index}``.

    The kept one is the lowest candidate index with the same normalised instruction. Candidates are compared by
    id, never with themselves: a second copy of one candidate (its snippet arrived twice) is not its own
    duplicate; each copy is judged as the first one is, and the extra snippet is dead-lettered by Select.
    """
    first: dict[str, tuple[int, str]] = {}
    duplicates: dict[str, int] = {}
    for index, candidate_id, instruction in sorted(candidates):
        key = normalize_for_duplicates(instruction)
        kept = first.setdefault(key, (index, candidate_id))
        if kept[1] != candidate_id:
            duplicates[candidate_id] = kept[0]
    return duplicates
