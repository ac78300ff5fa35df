"""The first fenced code block of a Markdown answer, found CommonMark-style. Pure."""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Fence:
    info: str  # the info string after the opening fence, stripped ("" when none)
    body: str  # the content lines, opening-fence indentation removed, not otherwise normalized
    fence: str  # the opening fence itself, e.g. "```" or "~~~~"
    closed: bool


_FENCE_OPEN = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>[^\n]*)$", re.MULTILINE)


@functools.lru_cache(maxsize=64)
def _closing_fence(char: str, length: int) -> re.Pattern[str]:
    return re.compile(r"^[ \t]*" + re.escape(char) + "{%d,}[ \t]*$" % length, re.MULTILINE)


def find_first_fence(text: str) -> Fence | None:
    """The first fenced code block of a Markdown text, or None (see the module docstring)."""
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    # An opening line holds ``` or ~~~: start the scan at the line of the first one (none: no fence).
    first = min((i for i in (text.find("```"), text.find("~~~")) if i >= 0), default=-1)
    if first < 0:
        return None
    for opening in _FENCE_OPEN.finditer(text, text.rfind("\n", 0, first) + 1):
        fence, info = opening.group("fence"), opening.group("info")
        if fence[0] == "`" and "`" in info:
            continue  # an inline code span such as ```x```, not a fence
        closing_re = _closing_fence(fence[0], len(fence))
        body_start = min(opening.end() + 1, len(text))
        closing = closing_re.search(text, body_start)
        if closing is None:
            body, closed = text[body_start:], False
        else:
            body, closed = text[body_start : max(body_start, closing.start() - 1)], True
        indent = len(opening.group("indent"))
        if indent:
            body = "\n".join(_strip_indent(line, indent) for line in body.split("\n"))
        return Fence(info=info.strip(), body=body, fence=fence, closed=closed)
    return None


def _strip_indent(line: str, width: int) -> str:
    i = 0
    while i < width and i < len(line) and line[i] in " \t":
        i += 1
    return line[i:]
