"""Whitespace normalization (both policies, :func:`normalize_code`): CRLF and CR become LF, trailing
whitespace is stripped from every line, leading and trailing blank lines are dropped and the common
indentation is removed. Tabs are kept (Go, Makefiles). Multilang syntax checks run on the normalized
code, which is the code emitted.
"""
from __future__ import annotations

import re
import textwrap

_BLANK_LINES = re.compile(r"\n\n+")


def normalize_code(code: str) -> str:
    """LF newlines, no trailing whitespace, no leading/trailing blank lines, common indent removed."""
    if "\r" in code:
        code = code.replace("\r\n", "\n").replace("\r", "\n")
    lines = [line.rstrip() for line in code.split("\n")]
    start, end = 0, len(lines)
    while start < end and not lines[start]:
        start += 1
    while end > start and not lines[end - 1]:
        end -= 1
    if start == end:
        return ""
    text = "\n".join(lines[start:end])
    if lines[start][0] not in " \t":
        return text  # the first line has no indent, so there is no common indent (dedent would be a no-op)
    return textwrap.dedent(text)


def normalized_code_key(code: str, language: str) -> str:
    """A string for exact deduplication: language, then the normalized code without blank lines.

    Two snippets share a key when they differ only in newline style, trailing whitespace, blank
    lines or common indentation. Hash it (e.g. ``schemas.records.content_id``) for a compact id.
    """
    return normalized_code_key_of_normalized(normalize_code(code), language)


def normalized_code_key_of_normalized(code: str, language: str) -> str:
    """``normalized_code_key`` of code that ``normalize_code`` returned (normalizing is idempotent)."""
    return language + "\n" + _BLANK_LINES.sub("\n", code)
