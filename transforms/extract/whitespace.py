"""Whitespace normalization (both policies, :func:`normalize_code`): CRLF and CR become LF, trailing
whitespace is stripped from every line, leading and trailing blank lines are dropped and the common
indentation is removed. Tabs are kept (Go, Makefiles). Multilang syntax checks run on the normalized
code, which is the code emitted.
"""
from __future__ import annotations

import textwrap


def normalize_code(code: str) -> str:
    """LF newlines, no trailing whitespace, no leading/trailing blank lines, common indent removed."""
    lines = [line.rstrip() for line in code.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    start, end = 0, len(lines)
    while start < end and not lines[start]:
        start += 1
    while end > start and not lines[end - 1]:
        end -= 1
    return textwrap.dedent("\n".join(lines[start:end]))


def normalized_code_key(code: str, language: str) -> str:
    """A string for exact deduplication: language, then the normalized code without blank lines.

    Two snippets share a key when they differ only in newline style, trailing whitespace, blank
    lines or common indentation. Hash it (e.g. ``schemas.records.content_id``) for a compact id.
    """
    lines = [line for line in normalize_code(code).split("\n") if line]
    return language + "\n" + "\n".join(lines)
