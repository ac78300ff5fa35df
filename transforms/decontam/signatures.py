"""Python functions as structure: a normalized signature and a canonical body, read with ``ast``.

A *shape* (``FunctionShape``) of a function is

* its **signature**: the name and the parameter names lower-cased with underscores removed (so
  ``truncateNumber`` is ``truncate_number``), ``self``/``cls`` dropped from a method, and each annotation
  and the return annotation as normalized text (``typing.List[int]`` and ``List[int]`` are ``list[int]``),
  or None where the function has none;
* its **body key**: a hash of the body with every name the body binds or reads replaced by ``_`` (only
  builtins the body does not rebind keep their names, like keywords keep theirs in the token view),
  parameters' and variables' annotations, docstrings, imports, ``global``/``nonlocal`` and ``pass``
  dropped, ``self.x`` read as ``x``, literal values kept, and every statement list sorted. So renaming,
  reformatting, comments, type hints, moving a function into a class and reordering statements do not
  change it, while a different computation does. A body that is only a docstring, ``pass``, ``...`` or
  ``raise NotImplementedError`` has no key (the function is a stub).

``functions_in_text`` finds the functions in any text: a whole module when it parses, otherwise each
``def`` block cut out by indentation (a function inside a chat message or a Markdown fence).
"""
from __future__ import annotations

import ast
import builtins
import copy
import dataclasses
import hashlib
import re
from typing import Iterator

_BUILTINS = frozenset(n for n in dir(builtins) if not n.startswith("_"))
_SELF = ("self", "cls")
_DEF_RE = re.compile(r"\bdef[ \t]+(\w+)[ \t]*\(")
_MAX_BLOCK_CHARS = 50_000  # a function longer than this is not a benchmark copy worth parsing


def normalize_name(name: str) -> str:
    return name.replace("_", "").lower()


def _annotation(node: ast.expr | None) -> str | None:
    if node is None:
        return None
    text = ast.unparse(node).replace("typing.", "").replace(" ", "").lower()
    return text.replace("'", "").replace('"', "")  # string annotations ("List[int]") read as the type


@dataclasses.dataclass(frozen=True)
class FunctionShape:
    name: str  # normalized
    params: tuple[str, ...]  # normalized, without self/cls
    annotations: tuple[str | None, ...]  # per parameter
    returns: str | None
    body_key: str | None  # None: a stub (no body)
    start: int = 0  # character offsets of the def in the text it was read from
    end: int = 0
    display: str = ""  # the signature as written, for evidence

    def signature_matches(self, other: FunctionShape) -> bool:
        """Same name and parameter names; annotations equal wherever both have one."""
        if self.name != other.name or self.params != other.params:
            return False
        pairs = list(zip(self.annotations, other.annotations)) + [(self.returns, other.returns)]
        return all(a is None or b is None or a == b for a, b in pairs)

    def fully_typed_equal(self, other: FunctionShape) -> bool:
        """Same name, parameters, and every annotation present on both and equal (a stub's only evidence)."""
        annotations = self.annotations + (self.returns,)
        return (self.name == other.name and self.params == other.params and None not in annotations
                and annotations == other.annotations + (other.returns,))


# ------------------------------------------------------------------------------------------ the body


def _is_docstring(stmt: ast.stmt) -> bool:
    return isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant) and isinstance(stmt.value.value, str)


def _is_stub_statement(stmt: ast.stmt) -> bool:
    if isinstance(stmt, ast.Pass) or _is_docstring(stmt):
        return True
    if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant) and stmt.value.value is Ellipsis:
        return True
    if isinstance(stmt, ast.Raise) and stmt.exc is not None:
        exc = stmt.exc.func if isinstance(stmt.exc, ast.Call) else stmt.exc
        return isinstance(exc, ast.Name) and exc.id == "NotImplementedError"
    return False


def _bound_names(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> set[str]:
    names = {a.arg for a in ast.walk(fn.args) if isinstance(a, ast.arg)}
    for node in ast.walk(ast.Module(body=fn.body, type_ignores=[])):
        if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            names.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
    return names


class _Canonical(ast.NodeTransformer):
    """Erase names, annotations and order (see the module docstring); applied to a copy of a body."""

    def __init__(self, bound: set[str], self_name: str | None) -> None:
        self.bound = bound
        self.self_name = self_name

    def visit_Name(self, node: ast.Name) -> ast.AST:
        keep = node.id in _BUILTINS and node.id not in self.bound
        return ast.Name(id=node.id if keep else "_", ctx=ast.Load())

    def visit_Attribute(self, node: ast.Attribute) -> ast.AST:
        if self.self_name and isinstance(node.value, ast.Name) and node.value.id == self.self_name:
            return ast.Name(id="_", ctx=ast.Load())  # self.helper(...) reads as helper(...)
        self.generic_visit(node)
        node.ctx = ast.Load()
        return node

    def visit_Subscript(self, node: ast.Subscript) -> ast.AST:
        self.generic_visit(node)
        node.ctx = ast.Load()
        return node

    def visit_Starred(self, node: ast.Starred) -> ast.AST:
        self.generic_visit(node)
        node.ctx = ast.Load()
        return node

    def visit_Tuple(self, node: ast.Tuple) -> ast.AST:
        self.generic_visit(node)
        node.ctx = ast.Load()
        return node

    def visit_List(self, node: ast.List) -> ast.AST:
        self.generic_visit(node)
        node.ctx = ast.Load()
        return node

    def visit_arg(self, node: ast.arg) -> ast.AST:
        return ast.arg(arg="_")

    def visit_AnnAssign(self, node: ast.AnnAssign) -> ast.AST | None:
        if node.value is None:
            return None
        return self.visit(ast.Assign(targets=[node.target], value=node.value))

    def _function(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> ast.AST:
        node.name = "_"
        node.returns = None
        node.type_comment = None
        self.generic_visit(node)
        return node

    visit_FunctionDef = _function
    visit_AsyncFunctionDef = _function

    def visit_ClassDef(self, node: ast.ClassDef) -> ast.AST:
        node.name = "_"
        self.generic_visit(node)
        return node

    def generic_visit(self, node: ast.AST) -> ast.AST:
        super().generic_visit(node)
        for field in ("body", "orelse", "finalbody", "handlers"):
            stmts = getattr(node, field, None)
            if isinstance(stmts, list) and stmts and isinstance(stmts[0], (ast.stmt, ast.excepthandler)):
                setattr(node, field, _sorted_statements(stmts))
        return node


_DROPPED_STATEMENTS = (ast.Import, ast.ImportFrom, ast.Global, ast.Nonlocal, ast.Pass)


def _sorted_statements(stmts: list[ast.AST]) -> list[ast.AST]:
    kept = [s for s in stmts if not isinstance(s, _DROPPED_STATEMENTS) and not _is_docstring(s)]
    return sorted(kept, key=_dump)


def _dump(node: ast.AST) -> str:
    return ast.dump(node, annotate_fields=False, include_attributes=False)


def body_key(fn: ast.FunctionDef | ast.AsyncFunctionDef, method: bool = False) -> str | None:
    """The canonical-body hash of ``fn`` (None for a stub). ``method``: the first parameter is self/cls."""
    stmts = list(fn.body)
    if all(_is_stub_statement(s) for s in stmts):
        return None
    self_name = fn.args.args[0].arg if method and fn.args.args else None
    canon = _Canonical(_bound_names(fn) - ({self_name} if self_name else set()), self_name)
    body = [canon.visit(copy.deepcopy(s)) for s in stmts]  # the canonicalizer edits in place
    body = _sorted_statements([s for s in body if s is not None])
    if not body:
        return None
    return hashlib.blake2b("\n".join(map(_dump, body)).encode("utf-8", "surrogatepass"), digest_size=12).hexdigest()


# ------------------------------------------------------------------------------------------ shapes


def shape_of(fn: ast.FunctionDef | ast.AsyncFunctionDef, offset: int = 0,
             line_starts: list[int] | None = None) -> FunctionShape:
    """The shape of ``fn``; with ``line_starts`` of its source, its character span (plus ``offset``)."""
    args = fn.args
    params = list(args.posonlyargs) + list(args.args)
    method = bool(params) and params[0].arg in _SELF
    if method:
        params = params[1:]
    params += list(args.kwonlyargs) + [a for a in (args.vararg, args.kwarg) if a is not None]
    start = end = 0
    if line_starts is not None:
        start = offset + line_starts[fn.lineno - 1] + fn.col_offset
        end = offset + line_starts[fn.end_lineno - 1] + fn.end_col_offset
    display = f"{fn.name}({', '.join(ast.unparse(a) for a in params)})" + (
        f" -> {ast.unparse(fn.returns)}" if fn.returns is not None else "")
    return FunctionShape(
        name=normalize_name(fn.name), params=tuple(normalize_name(a.arg) for a in params),
        annotations=tuple(_annotation(a.annotation) for a in params), returns=_annotation(fn.returns),
        body_key=body_key(fn, method), start=start, end=end, display=display)


def _walk_functions(tree: ast.AST) -> Iterator[ast.FunctionDef | ast.AsyncFunctionDef]:
    """Every function, methods and nested functions included, outer before inner."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node
        yield from _walk_functions(node)


def _line_starts(text: str) -> list[int]:
    starts = [0]
    for line in text.splitlines(keepends=True):
        starts.append(starts[-1] + len(line))
    return starts


def _parse(source: str) -> ast.Module | None:
    try:
        return ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None


def module_functions(source: str, names: frozenset[str] | set[str] | None = None, tree: ast.Module | None = None
                     ) -> list[tuple[ast.FunctionDef | ast.AsyncFunctionDef, FunctionShape]]:
    """(node, shape) of every function of a parseable module whose normalized name is in ``names`` (all
    if None); [] if it does not parse. ``tree``: the module already parsed."""
    tree = tree or _parse(source)
    if tree is None:
        return []
    starts = _line_starts(source)
    return [(fn, shape_of(fn, 0, starts)) for fn in _walk_functions(tree)
            if names is None or normalize_name(fn.name) in names]


def _def_block(text: str, pos: int) -> tuple[int, int, str]:
    """(start, end, source) of the ``def`` at ``pos`` with the lines below it indented deeper than its
    own line, dedented; a def in the middle of a prose line is cut from ``def`` on."""
    line_start = text.rfind("\n", 0, pos) + 1
    prefix = text[line_start:pos]
    indent = len(prefix) - len(prefix.lstrip(" \t"))
    start = line_start + indent if prefix.strip() in ("", "async") else pos
    lines = text[start:start + _MAX_BLOCK_CHARS].split("\n")
    block = [lines[0]]
    for line in lines[1:]:
        stripped = line.lstrip(" \t")
        if stripped and len(line) - len(stripped) <= indent:
            break
        block.append(line)
    while len(block) > 1 and not block[-1].strip():
        block.pop()
    end = start + sum(len(line) + 1 for line in block) - 1
    return start, end, "\n".join([block[0]] + [line[indent:] for line in block[1:]])


def functions_in_text(text: str, names: frozenset[str] | set[str] | None = None) -> list[FunctionShape]:
    """Shapes of the functions in ``text`` (only those whose normalized name is in ``names``, if given).

    A text that parses as Python is read whole; otherwise each ``def NAME(`` is cut out with the lines
    indented below it and parsed alone (a block that still does not parse is skipped)."""
    if "def" not in text:
        return []
    if names is not None and not any(normalize_name(m.group(1)) in names for m in _DEF_RE.finditer(text)):
        return []
    tree = _parse(text)
    if tree is not None:
        return [shape for _, shape in module_functions(text, names, tree)]
    found = []
    for m in _DEF_RE.finditer(text):
        if names is not None and normalize_name(m.group(1)) not in names:
            continue
        start, end, block = _def_block(text, m.start())
        tree = _parse(block)
        if tree is None:  # a signature quoted in prose: read the header alone, as a stub
            header = _header(text, m.start())
            if header is None:
                continue
            end = start + len(header)
            tree = _parse(header + ": ...")
        if tree is None or not tree.body or not isinstance(tree.body[0], (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        found.append(dataclasses.replace(shape_of(tree.body[0]), start=start, end=end))
    return found


def _header(text: str, pos: int) -> str | None:
    """``def name(...)`` up to its closing parenthesis, plus a ``-> annotation`` if one follows."""
    depth = 0
    for i in range(text.index("(", pos), min(len(text), pos + 2000)):
        depth += {"(": 1, ")": -1}.get(text[i], 0)
        if depth == 0:
            returns = re.match(r"[ \t]*->[ \t]*([\w.\[\], |]+?)[ \t]*(?=:|$|\n|`)", text[i + 1:i + 200])
            return text[pos:i + 1] + (f" -> {returns.group(1)}" if returns else "")
    return None


def benchmark_functions(prompt: str, solution: str, entry_point: str = ""
                        ) -> list[tuple[FunctionShape, str]]:
    """(shape, body source) of the functions a benchmark solution defines: the entry point when it is
    known (HumanEval-style, the prompt holds its header and the solution its body), otherwise every
    function of the solution. [] when neither parses."""
    for source in ((prompt + solution, solution) if entry_point else (solution,)):
        tree = _parse(source)
        if tree is None:
            continue
        out = []
        for fn in _walk_functions(tree):
            if entry_point and fn.name != entry_point:
                continue
            body = [s for s in fn.body if not _is_docstring(s)]
            body_source = "\n".join(ast.get_source_segment(source, s) or "" for s in body)
            out.append((shape_of(fn), body_source))
            if entry_point:
                break
        if out:
            return out
    return []
