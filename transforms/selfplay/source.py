"""Slicing puzzle and solution text the way the paper's code does it.

The reference works on raw text, not on syntax trees: it cuts a generated function at the first line that
starts in column 0, reads the solution's parameters off the puzzle's first line, and renames functions with
``str.replace``. The same rules are reimplemented here so that prompts, programs and training text match the
reference byte for byte; ``ast`` is used only to check that a cut parses and to read the answer annotation.
"""
from __future__ import annotations

import ast
import dataclasses
import functools
import re

_FIRST_TOP_LEVEL_LINE = re.compile(r"\n\S")
# Leading column-0 import lines (and the blank lines between them): the form ``puzzles.parse_generated`` writes.
_LEADING_IMPORTS = re.compile(r"(?:(?:import|from)\s[^\n]*\n|[ \t]*\n)*")


class WeirdSignature(ValueError):
    """The puzzle's first line is not a one-line ``def ...):`` header, so its inputs cannot be read off it."""


TOO_DEEP = "nested too deeply to check"


def parse_for_rules(code: str) -> tuple[ast.Module | None, str | None]:
    """What a static rule reads: ``(tree, None)``; ``(None, None)`` when ``code`` does not parse (the filters that run
    it report that); ``(None, TOO_DEEP)`` when it is nested too deeply to parse here, so it cannot be checked."""
    try:
        return ast.parse(code), None
    except (SyntaxError, ValueError):
        return None, None
    except (RecursionError, MemoryError):
        return None, TOO_DEEP


def parent_map(tree: ast.AST) -> dict[ast.AST, ast.AST]:
    """Each node's parent."""
    return {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}


def bound_names(nodes) -> set[str]:
    """Every name ``nodes`` (a tree's nodes, any scope) bind: assignment, ``del``, parameter, ``def``/``class``,
    import, ``except ... as``, ``global``/``nonlocal``, a ``case`` pattern's capture."""
    names: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            names.add(node.id)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
        elif isinstance(node, (ast.Global, ast.Nonlocal)):
            names.update(node.names)
        elif isinstance(node, (ast.MatchAs, ast.MatchStar)) and node.name:
            names.add(node.name)
        elif isinstance(node, ast.MatchMapping) and node.rest:
            names.add(node.rest)
    return names


def strip_puzzle(text: str) -> str:
    """A generated puzzle without the code that follows it: the text, stripped, up to the first newline that is
    followed by a non-blank character (gen.py ``strip_puzzle``)."""
    text = text.strip()
    match = _FIRST_TOP_LEVEL_LINE.search(text)
    return text[: match.start()] if match else text


def split_imports(text: str) -> tuple[str, str]:
    """(the leading import lines of ``text``, the rest). A seed-preset puzzle carries its imports in front of
    ``def f(``; the reference's text-based checks must see the ``def`` first (its puzzles import nothing, the
    judge's environment supplies ``List``), while the imports must still run wherever f is executed."""
    match = _LEADING_IMPORTS.match(text)
    imports = match.group(0) if match and match.group(0).strip() else ""
    return imports, text[len(imports):]


@functools.lru_cache(maxsize=64)
def imported_names(imports: str) -> frozenset[str]:
    """The names that ``imports`` (``split_imports``'s first part) binds: ``import a.b`` binds ``a``, ``as`` an
    alias. A seed-preset puzzle's defaults and annotations may use them (``a=math.pi``)."""
    try:
        tree = ast.parse(imports)
    except (SyntaxError, ValueError):
        return frozenset()
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                if alias.name != "*":
                    names.add(alias.asname or alias.name.split(".")[0])
    return frozenset(names)


def _parses(source: str) -> bool:
    try:
        ast.parse(source)
    except (SyntaxError, ValueError):  # ValueError: e.g. an int literal over Python's digit limit
        return False
    except (RecursionError, MemoryError):  # nested past this process's parser: not a body to run or train on
        return False
    return True


def solution_body(completion: str) -> str | None:
    """The body of ``g`` in a completion that continues ``def g(...):`` - everything before the first line (after
    the first) that starts in column 0 - or None when that body does not parse (gen.py ``find_end``)."""
    lines = completion.split("\n")
    cut = next((i for i in range(1, len(lines)) if lines[i] and lines[i][0] not in " \t"), len(lines))
    body = "\n".join(lines[:cut])
    return body if _parses("def g():" + body) else None


def puzzle_inputs(f_source: str) -> str:
    """The puzzle's parameters after the answer, as written on its first line (``"a=5, b=[1, 2]"``; ``""`` when
    the answer is the only one). Raises ``WeirdSignature`` when the first line is not a complete header
    (preprocess.py ``get_inputs``)."""
    f_source = split_imports(f_source)[1]  # a seed-preset puzzle's imports come before its header
    line = f_source.replace(" -> bool", "").split("\n")[0].strip()
    if not line.endswith("):") and "#" in line:
        # A comment after the header is dropped; a '#' only inside the header (a default string) stays.
        close = line.find("):")
        if close < 0:
            line = ""
        elif "#" in line[close:]:
            line = line[: close + line[close:].index("#")].strip()
    if not (line.startswith("def") and line.endswith("):")):
        raise WeirdSignature(f"cannot read the inputs off {line[:120]!r}")
    params = line[line.index("(") : -2]
    depth = 0
    for i, char in enumerate(params):
        if char == "," and depth == 0:
            return params[i + 1 :].strip()
        depth += {"[": 1, "]": -1}.get(char, 0)
    return ""


@dataclasses.dataclass(frozen=True)
class AnswerParameter:
    name: str
    annotation: ast.expr | None  # as written; None when missing
    annotation_text: str | None  # ast.unparse of it ("List[int]"), the form P3's ans_type uses


def first_function(source: str) -> ast.FunctionDef:
    """The first top-level function of ``source``; ``SyntaxError``/``ValueError`` when it has none."""
    tree = ast.parse(source)
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            return node
    raise ValueError("no function definition")


def answer_parameter(f_source: str) -> AnswerParameter | None:
    """The puzzle's first parameter (the answer) and its annotation; None when f takes no positional one."""
    fn = first_function(f_source)
    params = fn.args.posonlyargs + fn.args.args
    if not params:
        return None
    ann = params[0].annotation
    return AnswerParameter(params[0].arg, ann, ast.unparse(ann) if ann is not None else None)


def remove_docstring(source: str) -> str:
    """``source`` without the docstring of its first function, when the docstring stands on lines of its own
    and is not the whole body (P3's ``sat`` texts carry none; their docstrings are in ``sol_docstring``)."""
    try:
        fn = first_function(source)
    except (SyntaxError, ValueError):
        return source
    first = fn.body[0]
    if len(fn.body) < 2 or not (isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
                                and isinstance(first.value.value, str)):
        return source
    lines = source.split("\n")
    start, end = first.lineno - 1, first.end_lineno - 1
    if lines[start][: first.col_offset].strip() or lines[end][first.end_col_offset :].strip():
        return source  # shares a line with other code: leave it
    return "\n".join(lines[:start] + lines[end + 1 :])
