"""The first fenced code block of a Markdown answer, found CommonMark-style. Pure."""
from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Fence:
    info: str  # the info string after the opening fence, stripped ("" when none)
    body: str  # the content lines, opening-fence indentation removed, not otherwise normalized
    fence: str  # the opening fence itself, e.g. "```" or "~~~~"
    closed: bool


_FENCE_OPEN = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>[^\n]*)$", re.MULTILINE)


def closing_fence_line(text: str, char: str, length: int, start: int) -> int:
    """Where the first closing fence line at or after ``start`` begins, or -1: the first line (of LF-only
    ``text``, ``start`` a line start) that is spaces/tabs, then >= ``length`` of ``char``, then spaces/tabs.

    The same answer as ``re.compile(r"^[ \t]*" + char + "{length,}[ \t]*$", re.MULTILINE).search(text, start)``'s
    start, but found with substring searches: that regex is tried at every position of the body (~10 us
    on a 1 KB answer)."""
    run = char * length
    hit = text.find(run, start)
    while hit >= 0:  # every closing line holds the run; check the line around each one
        newline = text.rfind("\n", start, hit)
        line_start = start if newline < 0 else newline + 1
        line_end = text.find("\n", hit)
        line = text[line_start:] if line_end < 0 else text[line_start:line_end]
        if not line.strip(" \t").strip(char):  # the run is in the stripped part, so it holds >= length chars
            return line_start
        if line_end < 0:
            return -1
        hit = text.find(run, line_end + 1)
    return -1


def find_first_fence(text: str) -> Fence | None:
    """The first fenced code block of a Markdown text, or None (see the module docstring)."""
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    # An opening line holds ``` or ~~~: start the scan at the line of the first one (none: no fence).
    # A ~~~ before the first ``` ends before it, so the tilde search can stop there.
    first = text.find("```")
    first_tildes = text.find("~~~", 0, len(text) if first < 0 else first)
    if first_tildes >= 0:
        first = first_tildes
    if first < 0:
        return None
    for opening in _FENCE_OPEN.finditer(text, text.rfind("\n", 0, first) + 1):
        fence, info = opening.group("fence"), opening.group("info")
        if fence[0] == "`" and "`" in info:
            continue  # an inline code span such as ```x```, not a fence
        if opening.end() == len(text):
            return Fence(info=info.strip(), body="", fence=fence, closed=False)  # the opening is the last line
        body_start = opening.end() + 1
        closing = closing_fence_line(text, fence[0], len(fence), body_start)
        if closing < 0:
            body, closed = text[body_start:], False
        else:
            body, closed = text[body_start : max(body_start, closing - 1)], True
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
