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

``functions_in_text`` finds the functions in any text: each ``def`` block cut out by indentation (a
function inside a chat message or a Markdown fence), or a whole module when it parses; a signature quoted
in prose is read as a stub, while a body that does not parse (Python 2) or is nested too deep to canonicalize
gets no shape at all. ``benchmark_functions`` reads the function(s) a benchmark solution defines.
Both the ``signature`` method and ``ngram``'s structural check (``methods``) use these shapes.
"""
from __future__ import annotations

import ast
import builtins
import dataclasses
import hashlib
import re
from typing import Callable, Iterator

_BUILTINS = frozenset(n for n in dir(builtins) if not n.startswith("_"))
_SELF = ("self", "cls")
# No leading \b: a pattern that starts with a literal is searched for with a fast scan (14x faster here);
# ``_defs`` drops the matches inside a longer word ("undef f(").
DEF_RE = re.compile(r"def[ \t]+(\w+)[ \t]*\(")
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


_DROPPED_STATEMENTS = (ast.Import, ast.ImportFrom, ast.Global, ast.Nonlocal, ast.Pass)
_SKIPPED_FIELDS = frozenset({"ctx", "type_comment", "type_params", "returns", "annotation", "type_ignores"})


class _Canonical:
    """The canonical text of a body (see the module docstring), written out directly from the tree:
    names erased, annotations and order dropped, nothing copied or edited."""

    def __init__(self, bound: set[str], self_name: str | None) -> None:
        self.bound = bound
        self.self_name = self_name

    def statements(self, stmts: list[ast.AST]) -> str:
        parts = [self.node(s) for s in stmts if not isinstance(s, _DROPPED_STATEMENTS) and not _is_docstring(s)]
        return "[" + ",".join(sorted(p for p in parts if p)) + "]"

    def node(self, node: ast.AST) -> str:
        if isinstance(node, ast.Name):
            return node.id if node.id in _BUILTINS and node.id not in self.bound else "_"
        if isinstance(node, ast.arg):
            return "_"
        if isinstance(node, ast.Constant):
            return f"{type(node.value).__name__}:{node.value!r}"
        if isinstance(node, ast.Attribute) and self.self_name and isinstance(node.value, ast.Name) \
                and node.value.id == self.self_name:
            return "_"  # self.helper(...) reads as helper(...)
        if isinstance(node, ast.AnnAssign):
            if node.value is None:
                return ""
            return f"Assign([{self.node(node.target)}],{self.node(node.value)})"
        parts = []
        for field, value in ast.iter_fields(node):
            if field in _SKIPPED_FIELDS:
                continue
            if field == "name" and isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                value = "_"
            if isinstance(value, list):
                if value and isinstance(value[0], (ast.stmt, ast.excepthandler)):
                    parts.append(self.statements(value))
                else:
                    parts.append("[" + ",".join(self.node(v) if isinstance(v, ast.AST) else repr(v)
                                                for v in value) + "]")
            elif isinstance(value, ast.AST):
                parts.append(self.node(value))
            else:
                parts.append(repr(value))
        return f"{type(node).__name__}({','.join(parts)})"


def body_key(fn: ast.FunctionDef | ast.AsyncFunctionDef, method: bool = False) -> str | None:
    """The canonical-body hash of ``fn`` (None for a stub). ``method``: the first parameter is self/cls."""
    stmts = list(fn.body)
    if all(_is_stub_statement(s) for s in stmts):
        return None
    self_name = fn.args.args[0].arg if method and fn.args.args else None
    text = _Canonical(_bound_names(fn) - ({self_name} if self_name else set()), self_name).statements(stmts)
    if text == "[]":
        return None
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=12).hexdigest()


# ------------------------------------------------------------------------------------------ shapes


Accept = Callable[[FunctionShape], bool]


def shape_of(fn: ast.FunctionDef | ast.AsyncFunctionDef, offset: int = 0,
             line_starts: list[int] | None = None, accept: Accept | None = None) -> FunctionShape | None:
    """The shape of ``fn``; with ``line_starts`` of its source, its character span (plus ``offset``).
    ``accept`` sees the signature first (no body key, no display yet): None when it declines, so a
    function that cannot match costs no body canonicalization. None too when ``fn`` is nested too deep to
    canonicalize (``return x + x + ...`` with a thousand terms): such a function has no shape to match, and
    reading it as a stub would match any fully typed signature."""
    try:
        return _shape_of(fn, offset, line_starts, accept)
    except RecursionError:
        return None


def _shape_of(fn: ast.FunctionDef | ast.AsyncFunctionDef, offset: int, line_starts: list[int] | None,
              accept: Accept | None) -> FunctionShape | None:
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
    shape = FunctionShape(
        name=normalize_name(fn.name), params=tuple(normalize_name(a.arg) for a in params),
        annotations=tuple(_annotation(a.annotation) for a in params), returns=_annotation(fn.returns),
        body_key=None, start=start, end=end)
    if accept is not None and not accept(shape):
        return None
    display = f"{fn.name}({', '.join(ast.unparse(a) for a in params)})" + (
        f" -> {ast.unparse(fn.returns)}" if fn.returns is not None else "")
    return dataclasses.replace(shape, body_key=body_key(fn, method), display=display)


def _walk_functions(tree: ast.AST) -> Iterator[ast.FunctionDef | ast.AsyncFunctionDef]:
    """Every function, methods and nested functions included, outer before inner (in source order, with
    an explicit stack: a tree nested a thousand deep must not exhaust Python's recursion limit)."""
    stack = [ast.iter_child_nodes(tree)]
    while stack:
        node = next(stack[-1], None)
        if node is None:
            stack.pop()
            continue
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node
        stack.append(ast.iter_child_nodes(node))


def _line_starts(text: str) -> list[int]:
    starts = [0]
    for line in text.splitlines(keepends=True):
        starts.append(starts[-1] + len(line))
    return starts


def _parse(source: str) -> ast.Module | None:
    return _parse_or_error(source)[0]


def _parse_or_error(source: str) -> tuple[ast.Module | None, Exception | None]:
    """(tree, None), or (None, why it does not parse)."""
    try:
        return ast.parse(source), None
    except (SyntaxError, ValueError, RecursionError, MemoryError) as error:
        return None, error


def module_functions(source: str, names: frozenset[str] | set[str] | None = None, tree: ast.Module | None = None,
                     accept: Accept | None = None) -> list[FunctionShape]:
    """Shapes of the functions of a parseable module whose normalized name is in ``names`` (all if None)
    and that ``accept`` takes; [] if it does not parse. ``tree``: the module already parsed."""
    tree = tree or _parse(source)
    if tree is None:
        return []
    starts = _line_starts(source)
    shapes = (shape_of(fn, 0, starts, accept) for fn in _walk_functions(tree)
              if names is None or normalize_name(fn.name) in names)
    return [shape for shape in shapes if shape is not None]


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


def _defs(text: str) -> Iterator[re.Match]:
    for m in DEF_RE.finditer(text):
        if not m.start() or not (text[m.start() - 1].isalnum() or text[m.start() - 1] == "_"):
            yield m


def functions_in_text(text: str, names: frozenset[str] | set[str] | None = None, accept: Accept | None = None
                      ) -> list[FunctionShape]:
    """Shapes of the functions in ``text`` (only those whose normalized name is in ``names``, if given,
    and whose signature ``accept`` takes; see ``shape_of``).

    With ``names``, each ``def NAME(`` of a wanted name is cut out with the lines indented below it and
    parsed alone (cheaper than the whole text, and it works inside prose or a Markdown fence); a block
    that does not parse is read as a signature quoted in prose (its header alone, a stub). Without
    ``names``, a text that parses as Python is read whole, and otherwise block by block."""
    if "def" not in text:
        return []
    if names is None:
        tree = _parse(text)
        if tree is not None:
            return module_functions(text, None, tree, accept)
    elif not any(normalize_name(m.group(1)) in names for m in _defs(text)):
        return []
    found = []
    for m in _defs(text):
        if names is not None and normalize_name(m.group(1)) not in names:
            continue
        header = _header(text, m.start())
        header_tree = _parse(header + ": ...") if header is not None else None
        if accept is not None and header_tree is not None and header_tree.body \
                and shape_of(header_tree.body[0], accept=accept) is None:
            continue  # the signature alone rules it out: no need to parse the body
        start, end, block = _def_block(text, m.start())
        tree, error = _parse_or_error(block)
        if tree is None:
            # A signature quoted in prose (one line, not Python) is read as its header alone, a stub. A body
            # that does not parse (Python 2, nested too deep) is no stub: it cannot be compared, so no shape.
            if header is None or "\n" in block or not isinstance(error, SyntaxError):
                continue
            end = m.start() + len(header)
            tree = header_tree
        if tree is None or not tree.body or not isinstance(tree.body[0], (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        shape = shape_of(tree.body[0], accept=accept)
        if shape is not None:
            found.append(dataclasses.replace(shape, start=start, end=end))
    return found


def header_spans(text: str) -> list[tuple[int, int]]:
    """[start, end) of every ``def name(...) -> ...:`` header in ``text``, its colon included (a header
    whose parenthesis does not close within ``_header``'s reach is left out)."""
    spans = []
    for m in _defs(text):
        header = _header(text, m.start())
        if header is None:
            continue
        end = m.start() + len(header)
        colon = re.match(r"[ \t]*:", text[end:end + 100])
        spans.append((m.start(), end + (colon.end() if colon else 0)))
    return spans


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
            shape = shape_of(fn)
            if shape is not None:
                out.append((shape, body_source))
            if entry_point:
                break
        if out:
            return out
    return []
