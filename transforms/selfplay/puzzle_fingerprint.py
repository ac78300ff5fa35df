"""A puzzle's fingerprint up to formatting and renaming: two texts of ``f`` that differ only in whitespace,
comments, quotes, docstrings, the function's name, a return annotation or the names of its parameters and local
variables get the same fingerprint. The self-play filter uses it to refuse a generated puzzle that is a P3 test
puzzle (``p3_test_puzzle``): the model may reproduce one from pre-training, and it must not become training data
for the evaluation that scores it on that puzzle.

``canonical_form(source)``: the first function of ``source`` parsed with ``ast``, then

- every statement that is only a string (docstrings included) dropped, and ``u''`` prefixes forgotten;
- the return annotation dropped (``-> bool`` does not change a puzzle);
- the function renamed to ``<f>`` (its recursive calls too), its parameters to ``<a0>``, ``<a1>``, ... in order,
  and every other name the function binds (assignment targets, loop and comprehension variables, ``with ... as``,
  ``except ... as``, walrus, nested functions, classes and their parameters, lambda parameters, ``match``
  captures) to ``<v0>``, ``<v1>``, ... in order of first binding in a depth-first walk of the body. The order
  depends on the tree's shape only, so a renamed copy gets the same placeholders. Names the function only reads
  (builtins, ``List``, modules), attribute names, keyword names of calls, annotations and default values stay.

and ``ast.dump`` of the result. ``None`` when the text does not parse (as a P3 puzzle with an integer literal
over this Python's 4,300-digit limit: such a text cannot pass the filters either, its ``return True`` program does
not compile in the sandbox) or holds no function. ``fingerprint`` is a 128-bit BLAKE2b of that form.

Pure: no Beam, no I/O. Not a semantic equivalence: ``x + 1`` and ``1 + x`` differ, as do two puzzles that differ
only in a constant (another instance of a family is another puzzle).
"""
from __future__ import annotations

import ast
import hashlib
from typing import Iterable

FUNCTION = "<f>"


def _placeholder_map(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> dict[str, str]:
    names = {fn.name: FUNCTION}
    args = fn.args
    params = [*args.posonlyargs, *args.args, *([args.vararg] if args.vararg else []), *args.kwonlyargs,
              *([args.kwarg] if args.kwarg else [])]
    for i, a in enumerate(params):
        names[a.arg] = f"<a{i}>"
    declared_global = {n for node in ast.walk(fn) if isinstance(node, ast.Global) for n in node.names}
    bound: list[str] = []

    def bind(name: str | None) -> None:
        if name and name not in names and name not in declared_global and name not in bound:
            bound.append(name)

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Load):
            bind(node.id)
        elif isinstance(node, ast.arg):
            bind(node.arg)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bind(node.name)
        elif isinstance(node, ast.ExceptHandler):
            bind(node.name)
        elif isinstance(node, (ast.MatchAs, ast.MatchStar)):
            bind(node.name)
        elif isinstance(node, ast.MatchMapping):
            bind(node.rest)
        for child in ast.iter_child_nodes(node):
            visit(child)

    for statement in fn.body:
        visit(statement)
    names.update({name: f"<v{i}>" for i, name in enumerate(bound)})
    return names


def _is_string_statement(node: ast.stmt) -> bool:
    return isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)


def _rename(fn: ast.FunctionDef | ast.AsyncFunctionDef, names: dict[str, str]) -> None:
    fn.name = FUNCTION
    fn.returns = None
    for node in ast.walk(fn):
        for field in ("body", "orelse", "finalbody"):
            block = getattr(node, field, None)
            if isinstance(block, list) and block and isinstance(block[0], ast.stmt):
                setattr(node, field, [s for s in block if not _is_string_statement(s)])
        if isinstance(node, ast.Name):
            node.id = names.get(node.id, node.id)
        elif isinstance(node, ast.arg):
            node.arg = names.get(node.arg, node.arg)
            node.type_comment = None
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node is not fn:
            node.name = names.get(node.name, node.name)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            node.name = names.get(node.name, node.name)
        elif isinstance(node, (ast.MatchAs, ast.MatchStar)) and node.name:
            node.name = names.get(node.name, node.name)
        elif isinstance(node, ast.MatchMapping) and node.rest:
            node.rest = names.get(node.rest, node.rest)
        elif isinstance(node, ast.Constant):
            node.kind = None
        if hasattr(node, "type_comment") and not isinstance(node, ast.arg):
            node.type_comment = None


def canonical_form(source: str) -> str | None:
    """The first function of ``source`` up to formatting and renaming (module docstring), or None."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    fn = next((n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))), None)
    if fn is None:
        return None
    try:
        _rename(fn, _placeholder_map(fn))
        return ast.dump(fn)
    except RecursionError:
        return None


def fingerprint(source: str) -> str | None:
    """A 128-bit hash (hex) of ``canonical_form(source)``, or None when there is none."""
    form = canonical_form(source)
    return None if form is None else hashlib.blake2b(form.encode("utf-8"), digest_size=16).hexdigest()


def fingerprint_index(named_sources: Iterable[tuple[str, str]]) -> dict[str, str]:
    """``{fingerprint: name}`` of ``(name, source)`` pairs, the first name of each fingerprint kept; a source with
    no fingerprint (it does not parse) is left out. Small and picklable: ~1,000 P3 test puzzles make ~60 KB."""
    index: dict[str, str] = {}
    for name, source in named_sources:
        key = fingerprint(source)
        if key is not None:
            index.setdefault(key, name)
    return index


__all__ = ["FUNCTION", "canonical_form", "fingerprint", "fingerprint_index"]
