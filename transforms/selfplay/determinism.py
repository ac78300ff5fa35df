"""Refusing self-play code that may draw from randomness not seeded by a constant.

A self-play pair is kept when ``f(g()) is True`` holds in the sound check (``g`` and ``f(answer)`` in separate
sandboxes) and in the literal run of ``f(g())`` (``verdicts.verify_pair``). The paper's judge lets code ``import
random``; a puzzle ``return x == random.randint(0, 1)`` solved by ``return 0`` (or a ``g`` that returns
``random.randint(0, 1)`` for ``return x == 0``) holds with probability 1/2 in each run, so it is kept about a
quarter of the time, and its training text is not a verified pair. Such code is refused before it runs.

The rule: the one use of the ``random`` module allowed is ``Random(<constant>)`` (an int, float, str or bytes
literal, or a negated number), called where it is named, and methods of the instance it returns, other than
``seed`` with anything but one such constant. So ``random.Random(42).randint(0, 9)`` and ``rng =
random.Random("seed"); rng.shuffle(xs)`` pass; a module-level draw, ``random.seed`` (even with a constant: the
global generator is shared by ``g`` and ``f`` in the literal run, and not in the sound check), ``Random()``,
``Random(None)``, ``Random(x)``, ``SystemRandom``, the module or the class passed around (``r = random``,
``getattr(random, "randint")``, ``class R(random.Random)``) are refused, under any import form. ``from random
import`` of any name but ``Random`` (``*`` too) is refused at the import, used or not: a name a puzzle imports at
module level is one its ``g`` may read without importing it. So is any import of ``random`` in a class body: the
class attribute it binds is read by attribute name (``K.m.randint``), which the rule does not follow. The bare
name ``random`` counts as the module whether or not the code imports it (the seed preset's preamble imports it
for every puzzle; P3's puzzles use it unimported). Conservative: a local variable named ``random`` or an
alias's name reused for another value is refused too. No flow analysis.

What this leaves to ``introspection.interpreter_route`` (always checked with it): ``__import__``, ``eval``,
``getattr`` on an instance (``getattr(rng, "se" + "ed")``), ``type(rng)``, ``rng.__init__()`` and private
attributes (``random._inst``, ``rng._randbelow``), which it refuses.
What it does not close: other process-dependent values (a set's string order, which follows the hash seed of
each run; a default ``repr`` holding an address), which are not drawn from ``random``.
"""
from __future__ import annotations

import ast

from transforms.selfplay.source import parent_map, parse_for_rules

REASON = "draws_unseeded_random"
MODULE = "random"
SEEDED_CLASS = "Random"  # random.Random(seed): its own generator, a function of its seed alone
RESEEDING_METHOD = "seed"  # rng.seed() or rng.seed(None) draws a new seed from the operating system
_SEED_TYPES = (int, float, str, bytes)  # what Random() seeds from deterministically (None draws from the OS)


def unseeded_random_route(code: str) -> str | None:
    """The first way ``code`` may draw from randomness not seeded by a constant (a short description), or None.
    Code that does not parse has none to find (the filters that run it report it); code nested too deeply to parse
    here cannot be checked, and is refused."""
    tree, refusal = parse_for_rules(code)
    if tree is None:
        return refusal
    parents = parent_map(tree)
    modules, classes = {MODULE}, set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import) and any(_is_random(a.name) for a in node.names):
            modules.update(a.asname or a.name.split(".")[0] for a in node.names if _is_random(a.name))
        elif isinstance(node, ast.ImportFrom) and not node.level and _is_random(node.module or ""):
            for alias in node.names:
                if alias.name != SEEDED_CLASS:
                    return f"from {node.module} import {alias.name} (line {node.lineno})"
                classes.add(alias.asname or alias.name)
        else:
            continue
        if isinstance(_scope(node, parents), ast.ClassDef):
            # a class attribute: read as ``K.m.randint``, by an attribute name the checks below do not follow
            return f"import of {MODULE} in a class body (line {node.lineno})"
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Store):
            if node.id in modules and not _seeded_construction(parents.get(node), parents):
                return f"{node.id} other than as {node.id}.{SEEDED_CLASS}(<constant>) (line {node.lineno})"
            if node.id in classes and not _seeded_call(node, parents):
                return f"{node.id} other than called with a constant seed (line {node.lineno})"
        elif isinstance(node, ast.Attribute) and node.attr == RESEEDING_METHOD and not _seeded_call(node, parents):
            return f".{RESEEDING_METHOD} other than with a constant seed (line {node.lineno})"
    return None


def _scope(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> ast.AST | None:
    """The function, lambda, class or module whose namespace a statement binds names in."""
    scope = parents.get(node)
    while scope is not None and not isinstance(scope, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda,
                                                        ast.ClassDef, ast.Module)):
        scope = parents.get(scope)
    return scope


def _is_random(module: str) -> bool:
    return module == MODULE or module.startswith(MODULE + ".")


def _seeded_construction(attribute: ast.AST | None, parents: dict[ast.AST, ast.AST]) -> bool:
    """``<module>.Random(<constant>)``: the module's name is read only to construct a seeded generator."""
    return (isinstance(attribute, ast.Attribute) and attribute.attr == SEEDED_CLASS
            and _seeded_call(attribute, parents))


def _seeded_call(func: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    """``func`` is called right where it stands, with one constant seed and nothing else."""
    call = parents.get(func)
    return (isinstance(call, ast.Call) and call.func is func and len(call.args) == 1 and not call.keywords
            and constant_seed(call.args[0]))


def constant_seed(node: ast.AST) -> bool:
    """An int, float, str or bytes literal, or a negated number: a seed every run of the program agrees on."""
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        node = node.operand
        return isinstance(node, ast.Constant) and type(node.value) in (int, float)
    return isinstance(node, ast.Constant) and isinstance(node.value, _SEED_TYPES)
