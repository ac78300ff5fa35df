"""Refusing self-play code whose generators hold a finalizer.

A generator's ``finally`` clause, the exit of a ``with`` block it is suspended in, and a handler that catches
``GeneratorExit`` run when the generator is closed: by ``close()``, or when it is collected. A generator in a
reference cycle is collected by the cyclic garbage collector, whose next run is counted in allocations since the
last one; that count differs between the sandbox, a plain script and ``python -c`` (the agent allocates before the
program runs; a red team measured 93 left in the sandbox, 433 in a plain script, the same in every run). A finalizer
that writes to state ``f`` reads then makes ``f(g())`` hold in the sandbox and not in plain Python (or the reverse),
and ``verify_pair`` passed such a pair. Such code is refused before it runs.

The rule: a function (``def``, ``async def`` or lambda) whose own body (nested functions and classes not counted)
yields (``yield`` or ``yield from``) may not, in that same body, hold a ``try`` with a ``finally`` clause, a
``with`` or ``async with`` statement, or an ``except`` handler that can catch ``GeneratorExit`` (bare, or naming
``GeneratorExit`` or ``BaseException``, alone or in a tuple; ``except*`` too; or naming anything but a builtin
subclass of ``Exception`` by its own name, which the code does not rebind: ``stop = GeneratorExit`` then ``except
stop``, found by the seventh red team). A generator expression cannot hold a
statement, so it has no finalizer. A ``with`` statement or ``try/finally`` outside any generator runs when its block
ends, not when something is collected, and is allowed. Conservative: no flow analysis (a ``finally`` that writes
nothing is refused too). No P3 puzzle defines a generator at all.

``BufferError`` is refused too, anywhere: a memoryview a suspended generator iterates locks its buffer until the
collector frees the generator, and catching the error counts the collector's timing (the tenth red team). And so is
``bytearray``, the one resizable buffer a program can make: an export of it (a ``memoryview``, ``re.finditer`` over
it) held by any reference cycle (a self-recursive closure will do) makes a resize raise until the collector runs,
so an uncaught ``BufferError`` decides ``f(g())`` by the collector's timing (the eleventh red team: the sandbox
verified such a pair; a plain script raised). No P3 puzzle uses either.

What this leaves to ``introspection.interpreter_route`` (always checked with it): ``__del__`` and every other
dunder name, ``gc`` and ``weakref`` (not safe imports), which it refuses.
"""
from __future__ import annotations

import ast
import builtins
from typing import Iterator

from transforms.selfplay.source import bound_names, parse_for_rules

REASON = "finalizes_generator"
_FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)
_SCOPES = (*_FUNCTIONS, ast.ClassDef)
_CATCHES_CLOSE = frozenset({"GeneratorExit", "BaseException"})  # what a handler names to catch close()


def generator_finalizer_route(code: str) -> str | None:
    """The first finalizer held by a generator in ``code`` (a short description), or None. Code that does not
    parse has none to find (the filters that run it report it); code nested too deeply to parse here cannot be
    checked, and is refused."""
    tree, refusal = parse_for_rules(code)
    if tree is None:
        return refusal
    rebound = bound_names(ast.walk(tree))
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id == "BufferError":  # a buffer's lock ends when its exporter (a
            # memoryview a suspended generator iterates) is collected: catching it times the collector
            return f"BufferError, whose lock ends at a collection (line {node.lineno})"
        if isinstance(node, ast.Name) and node.id == "bytearray":  # resizing raises while a collectable export lives
            return f"bytearray, whose resizing fails until a collection frees its exports (line {node.lineno})"
    for function in ast.walk(tree):
        if not isinstance(function, _FUNCTIONS):
            continue
        own = list(_own_nodes(function))
        if not any(isinstance(node, (ast.Yield, ast.YieldFrom)) for node in own):
            continue
        name = getattr(function, "name", "<lambda>")
        for node in own:
            finalizer = _finalizer(node, rebound)
            if finalizer:
                return f"{finalizer} in generator {name} (line {node.lineno})"
    return None


def _own_nodes(function: ast.AST) -> Iterator[ast.AST]:
    """The nodes of ``function``'s own body: nested functions and classes (their own scopes) not entered, though
    their decorators, defaults and bases, evaluated in this scope, are."""
    body = function.body if isinstance(function.body, list) else [function.body]
    stack = list(body)
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, _SCOPES):
            if isinstance(node, ast.Lambda):
                stack.extend(node.args.defaults + [d for d in node.args.kw_defaults if d is not None])
            elif isinstance(node, ast.ClassDef):
                stack.extend(node.decorator_list + node.bases + [k.value for k in node.keywords])
            else:
                stack.extend(node.decorator_list + node.args.defaults
                             + [d for d in node.args.kw_defaults if d is not None])
            continue
        stack.extend(ast.iter_child_nodes(node))


def _finalizer(node: ast.AST, rebound: set[str]) -> str | None:
    if isinstance(node, (ast.Try, ast.TryStar)) and node.finalbody:
        return "a finally clause"
    if isinstance(node, (ast.With, ast.AsyncWith)):
        return "a with statement"
    if isinstance(node, ast.ExceptHandler) and _catches_close(node.type, rebound):
        return "an except that catches GeneratorExit"
    return None


def _catches_close(caught: ast.expr | None, rebound: set[str]) -> bool:
    """Whether the handler may catch ``GeneratorExit``: unless every class it names is a builtin subclass of
    ``Exception`` (``GeneratorExit`` is not one) read by its own name, which ``rebound`` (the code's bindings) does
    not hold, it may (an alias, an attribute, a computed class)."""
    if caught is None:
        return True  # bare except
    names = caught.elts if isinstance(caught, ast.Tuple) else [caught]
    for name in names:
        if not (isinstance(name, ast.Name) and name.id not in rebound and name.id not in _CATCHES_CLOSE
                and isinstance(getattr(builtins, name.id, None), type)
                and issubclass(getattr(builtins, name.id), Exception)):
            return True
    return False

