"""Whether a model-written puzzle reaches the interpreter's internals: a static refusal (project addition).

In self-play the puzzle ``f`` is model-written, and its verdict ``f(answer) is True`` is computed in the process
where ``f`` runs: code that reaches that interpreter's internals can rewrite how the result is reported (the
sandbox's encoder in ``sys.modules``), tell the sandbox from plain Python (its frames, the forked trivial-answer
call), and so pass a pair whose ``assert f(g())`` fails as the training text runs it. Bubblewrap bounds what such
code can do to the machine, not what it says about itself; so a puzzle that touches the routes below is refused
before it runs.

The routes (each found as a working exploit, or one step from one):

* attributes that begin with ``_`` (``__globals__``, ``__class__``, ``sys._getframe``, ``random._os``), names
  that begin with ``__`` (``__name__``, ``__builtins__``, ``__import__``; ``_`` and ``_tmp`` are ordinary
  locals), and string constants holding ``__`` (``getattr(x, "__globals__")``, ``"{0.__globals__}"``);
* frame, code, traceback and generator internals (``gi_frame``, ``f_back``, ``f_globals``, ``tb_frame``,
  ``co_consts``...);
* the builtins that look names up or run text (``getattr``, ``globals``, ``vars``, ``eval``, ``exec``,
  ``compile``, ``open``...), and the names ``site`` adds (``credits``, ``license``...), which the sandbox lacks;
* ``match`` statements (their patterns bind names and read attributes by text, out of the other rules' sight);
* ``str.format``/``format_map`` unless on a constant whose fields name no attribute or item (format paths reach
  attributes by text);
* ``id`` and ``hash`` (an object's address; a string's hash seed), ``is`` between objects other than ``None``,
  ``True``, ``False`` and ``...`` (the identity of cached objects: ``re.compile`` returned its cached pattern in
  the sandbox and a new one in a plain script), ``object`` (a bare object's address orders a set of them and shows
  in its repr), ``dir`` (a plain script's namespace holds ``__doc__``, ``__spec__``... the sandbox's does not),
  ``MemoryError`` (the sandbox's address space is capped) and ``RecursionError`` (how deep a call gets tells
  start-up states apart), ``AssertionError`` and the warning classes (``-O`` and ``-W error`` tell settings
  apart), and so a bare ``except``, ``Exception``, ``BaseException`` or ``RuntimeError`` other than raised or
  subclassed (a handler of one catches them), ``return``/``break``/``continue`` in a ``finally`` (it drops
  any exception), any positional class
  pattern (``__match_args__`` names attributes by text; a builtin's name can be rebound to a class built at run
  time), and ``type`` other than in ``type(x) == T`` (a class built from strings; ``type(C().m)(K, obj)``, a
  bound method under any name, whose ``copy.copy`` is ``getattr(obj, name)``), ``mro`` (``int.mro()[-1]`` is
  ``object``) and copy's ``dispatch_table``;
* imports of any of these, under any name (``from typing import get_type_hints as hints``, ``from random import
  _os``), of ``copy`` (copying a bound method is getattr by its function's name), and of any module outside the
  judge's safe imports, wherever the import stands (``from math import pi;
  import pickle``, after a semicolon, passed the judge's line check: pickle's opcodes then rewrote the encoder);
* modules the safe imports carry as attributes (``typing.sys``, ``re.enum``, ``collections.abc``), and tools that
  evaluate text or fetch attributes by a dotted name (``typing.get_type_hints``, ``string.Formatter``).

This is a refusal list, not a proof: CPython has no in-process boundary. What it closes is what the verdict
relies on (the answer reaches ``f`` as checked plain data, and ``g`` never runs where ``f`` is judged).
"""
from __future__ import annotations

import ast
import builtins
import re
import string
from typing import Iterable

from transforms.selfplay.source import bound_names, imported_names, parent_map, parse_for_rules

REASON = "reaches_interpreter"

# MemoryError's and RecursionError's bases: a handler naming one catches the sandbox's MemoryError (its address
# space is capped) or a RecursionError whose depth tells interpreter start-ups apart (below)
BROAD_EXCEPTIONS = frozenset({"Exception", "BaseException", "RuntimeError"})
LOOKUP_BUILTINS = frozenset({  # look a name up by its text, run text, or reach past the program
    "getattr", "setattr", "delattr", "hasattr", "globals", "locals", "vars", "eval", "exec", "compile", "open",
    "input", "breakpoint",
    "id", "hash",  # an address (and a str's hash, the seed): a verdict resting on one holds for one process only
    "object",  # a bare object's address shows in its repr and orders a set of them: fixed in a plain script
    "dir",  # the names of the running namespace: a plain script's module has __doc__, __spec__... the sandbox's not
    # stdout's error handler is the locale's: printing a lone surrogate works under the sandbox's C.UTF-8 and raises
    # under en_US.UTF-8 (a tenth red team); a puzzle has nothing to print
    "print",
    "MemoryError",  # the sandbox's address space is capped (1 GiB): plain Python's is not
    # how deep a call gets before it, seen by catching it, tells what start-up left behind: a plain run's `site`
    # fills re's cache with a pattern the sandbox's lacks, and compiling it again needs more frames once evicted
    # (the twentieth red team's f read re's cache that way)
    "RecursionError",
    # what ``site`` adds, which the sandbox's interpreter (-S) lacks: a NameError there, a value in plain Python
    "help", "exit", "quit", "copyright", "credits", "license",
    # AssertionError and the warning classes tell the interpreter's settings apart, which the training text is not
    # meant to depend on: ``-O`` drops asserts, ``-W error`` (or PYTHONWARNINGS) raises a warning (the twenty-fourth
    # red team caught re's FutureWarning and an AssertionError to pass only under default settings)
    "AssertionError",
    *(name for name, value in vars(builtins).items() if isinstance(value, type) and issubclass(value, Warning)),
})
# str.format follows attribute and index paths ("{0.gi_frame}", "{0._" + "_globals_" + "_}"): only a constant
# format string whose fields name no attribute or item is let through.
FORMAT_METHODS = frozenset({"format", "format_map"})


def plain_format(text: str, depth: int = 0) -> bool:
    """``text``'s fields name only a position or a keyword: no attribute or item path (``{0.gi_frame}``), in the
    fields nested in a spec too (``{:{0.real}}``). A spec's own dots (``{:.2f}``) are the type's format mini-language,
    not a path (a red team found ``'{:.2f}'.format(x)`` refused). A format that does not parse is not plain."""
    if depth > 2:  # str.format allows one nested level; deeper text is not a format it runs
        return False
    try:
        fields = list(string.Formatter().parse(text))
    except ValueError:
        return False
    return all((field is None or not ("." in field or "[" in field))
               and (not spec or plain_format(spec, depth + 1)) for _, field, spec, _ in fields)


# Module-valued attributes of the safe imports and of the modules they carry (``tests`` re-derive the set from the
# running Python), and tools that evaluate annotation text or resolve dotted attribute names.
MODULE_ATTRIBUTES = frozenset({
    "abc", "bltns", "builtins", "contextlib", "copyreg", "ctypes", "enum", "functools", "gc", "genericpath",
    "importlib", "inspect", "io", "operator", "os", "path", "posix", "signal", "st", "stat", "stdlib_re",
    "subprocess", "sys", "threading", "types", "warnings", "weakref",
})
EVALUATING_TOOLS = frozenset({
    "get_type_hints", "ForwardRef", "Formatter", "get_field", "get_value", "vformat", "attrgetter", "methodcaller",
    "modules",
    "mro",  # int.mro()[-1] is `object`
    "dispatch_table",  # copy's (copyreg's) registry of how each type is copied: rewritable, and other in the sandbox
    # typing's ways to `type` itself: get_origin(Type) is type, and `class M(Type)` is a metaclass (an eighth red
    # team, 2026-12-03: both rebuilt the bound-method getattr gadget past the refusal of the name `type`)
    "Type", "get_origin", "get_args",
    "no_type_check_decorator",  # functools.wraps: a function named by whatever it wraps (a runtime string)
    # typing's re-exports of a metaclass (a class builder from strings), of types.GenericAlias (a proxy that
    # forwards any attribute, dunders included) and of the interpreter's internal types (a tenth red team)
    "ABCMeta", "NamedTupleMeta", "GenericAlias", "MethodWrapperType", "MethodDescriptorType",
    "WrapperDescriptorType",
})
# What `type(x)` may be compared with: builtin types, whose __eq__ never hands the type object to model code
# (`type(x) == R()` called R.__eq__ with it: the eighth red team).
BUILTIN_TYPE_NAMES = frozenset({
    "int", "float", "complex", "str", "bytes", "bool", "list", "tuple", "dict", "set", "frozenset", "range",
})
_INTERNAL_ATTRIBUTE = re.compile(r"_|(?:gi|cr|ag|f|tb|co)_")
# Constants whose identity is the language's: `x is None` is plain Python everywhere.
_SINGLETONS = (None, True, False, ...)


# Safe imports of the judge's that a model-written puzzle may not use here: copying a bound method is getattr(its
# object, its function's name), a function can carry any name (namedtuple's typename through
# typing.no_type_check_decorator) and deepcopy's memo can bind it to any object: getattr by a string of the
# program's choosing (the seventh and ninth red teams, 2026-12-03). No human P3 puzzle imports copy.
REFUSED_MODULES = frozenset({"copy"})


def interpreter_route(code: str, safe_modules: Iterable[str] | None = None,
                      refused_modules: Iterable[str] = REFUSED_MODULES) -> str | None:
    """The first route of ``code`` into the interpreter's internals (a short description), or None. Code that does
    not parse has none to find: the filters that run it report it; code nested too deeply to parse here cannot be
    checked, and is refused. ``safe_modules``: the modules an import may name (default: the paper preset's judge's
    ``safe_imports``), less ``refused_modules``."""
    tree, refusal = parse_for_rules(code)
    if tree is None:
        return refusal
    if safe_modules is None:
        from transforms.selfplay.preset import load_preset

        safe_modules = load_preset().filters.safe_imports
    safe = frozenset(safe_modules) - frozenset(refused_modules)
    parents = parent_map(tree)
    bound = bound_names(ast.walk(tree))
    imported = _import_bound(tree)
    for node in ast.walk(tree):
        if isinstance(node, (ast.Attribute, ast.Subscript)) and isinstance(node.ctx, (ast.Store, ast.Del)):
            root = node
            while isinstance(root, (ast.Attribute, ast.Subscript)):
                root = root.value
            if isinstance(root, ast.Name) and root.id in imported:
                # `math.prod = repr` in g reached f's math.prod(...) in the literal run and the training text, not in
                # the check's own sandbox (the fifteenth red team); the rules trust the modules' functions
                return f"assignment into {root.id}, a module or what it holds (line {node.lineno})"
        if isinstance(node, ast.Import):
            outside = [a.name for a in node.names if a.name.split(".")[0] not in safe]
            if outside:
                return f"import of {outside[0]}, not a safe module (line {node.lineno})"
        elif isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").split(".")[0] not in safe):
            return f"import from {'.' * node.level}{node.module or ''}, not a safe module (line {node.lineno})"
        if (isinstance(node, ast.Attribute) and node.attr in FORMAT_METHODS  # called or kept for later
                and not (isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)
                         and plain_format(node.value.value))):
            return f".{node.attr} of a format that is not a plain constant (line {node.lineno})"
        if isinstance(node, ast.Attribute):
            name = node.attr
            if _refused_attribute(name):
                return f"attribute .{name} (line {node.lineno})"
        elif isinstance(node, ast.MatchClass):  # `case object(__globals__=g)` reads attributes by these names
            for name in node.kwd_attrs:
                if _refused_attribute(name):
                    return f"pattern attribute {name} (line {node.lineno})"
            # A positional pattern reads the attributes the class's ``__match_args__`` names, which a class built at
            # run time sets from a string: `case A(g)` read ``f.__globals__`` (a red team, 2026-12-03), and so did
            # `case int(g)` once `int` was rebound to such a class. No P3 puzzle uses one.
            if node.patterns:
                return f"positional class pattern {ast.unparse(node.cls)}(...) (line {node.lineno})"
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "type"
              and len(node.args) + len(node.keywords) > 1):
            return f"a class built by type() (line {node.lineno})"  # its dunders come from strings
        elif isinstance(node, ast.Compare) and any(isinstance(op, (ast.Is, ast.IsNot)) for op in node.ops):
            # Identity of anything but a singleton is the process's: caches (re's, small ints, interned strings)
            # hold other objects in the sandbox than in a plain script.
            if not any(isinstance(o, ast.Constant) and any(o.value is c for c in _SINGLETONS)
                       for o in (node.left, *node.comparators)) and not _compares_types(node, bound):
                return f"identity comparison of objects that are not None, True, False or ... (line {node.lineno})"
        elif isinstance(node, ast.keyword) and node.arg is not None and node.arg.startswith("_"):
            return f"keyword {node.arg} (line {node.lineno})"  # dict(__eq__=...) builds a class namespace
        elif isinstance(node, ast.Name):
            if _refused_name(node.id):
                return f"name {node.id} (line {node.lineno})"
            if node.id in BROAD_EXCEPTIONS and not _raised_or_subclassed(node, parents):
                return (f"{node.id} other than raised or subclassed: a handler could catch MemoryError or "
                        f"RecursionError (line {node.lineno})")
            if node.id == "type" and not _type_comparison(node, parents, bound):
                return f"type other than in a comparison such as type(x) == int (line {node.lineno})"
        elif isinstance(node, ast.Constant) and isinstance(node.value, (str, bytes)):
            if ("__" if isinstance(node.value, str) else b"__") in node.value:
                return f"a string holding '__' (line {node.lineno})"
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and (
                node.name.startswith("__") or _refused_attribute(node.name)):
            # a function's name is what getattr reads when its bound method is copied: `def _os` then `m = _os`
            # reached random._os; `class mro`, type's mro
            return f"definition {node.name} (line {node.lineno})"
        elif isinstance(node, ast.alias) and _refused_import(node):
            return f"import {node.name} (line {node.lineno})"
        elif isinstance(node, ast.arg) and node.arg.startswith("__"):
            return f"parameter {node.arg} (line {node.lineno})"
        elif isinstance(node, (ast.MatchAs, ast.MatchStar, ast.MatchMapping, ast.ExceptHandler, ast.Global,
                               ast.Nonlocal)):
            if isinstance(node, ast.ExceptHandler) and node.type is None:
                return f"a bare except: it catches MemoryError and RecursionError (line {node.lineno})"
            # names these bind are not Name nodes: `case __eq__:` in a class body defined a dunder (a tenth red team)
            bound = ([node.rest] if isinstance(node, ast.MatchMapping) else list(node.names)
                     if isinstance(node, (ast.Global, ast.Nonlocal)) else [node.name])
            for name in filter(None, bound):
                if _refused_name(name):
                    return f"name {name} bound by a pattern, except or global (line {node.lineno})"
    # `return`, `break` or `continue` in a `finally` drops the exception in flight, whatever it is, as a bare except
    # catches it (the sixteenth red team dropped the sandbox's MemoryError so)
    for node in ast.walk(tree):
        if isinstance(node, ast.Try) and node.finalbody:
            escape = next((inner for stmt in node.finalbody for inner in _leaves_finally(stmt)), None)
            if escape is not None:
                kind = type(escape).__name__.lower()
                return f"{kind} in a finally: it drops any exception, as a bare except (line {escape.lineno})"
    # Checked last, so the routes above are named first. A match statement's patterns bind names and read
    # attributes by text (`case set(add=a)`, `case str(format=fm)`), out of the other rules' sight: the eighth red
    # team on the address rule (2026-12-05) rebound builtins, read methods and format paths, and aliased
    # GeneratorExit that way. No P3 puzzle or reference solution uses one.
    match = next((node for node in ast.walk(tree) if isinstance(node, ast.Match)), None)
    return f"a match statement (line {match.lineno})" if match is not None else None


def _leaves_finally(node: ast.AST, in_loop: bool = False):
    """The ``return``, ``break`` and ``continue`` under ``node`` (a statement of a ``finally``) that leave the
    ``finally``: not those of nested functions, lambdas or classes, nor a ``break``/``continue`` of a loop inside."""
    if isinstance(node, ast.Return) or (isinstance(node, (ast.Break, ast.Continue)) and not in_loop):
        yield node
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
        return
    for child in ast.iter_child_nodes(node):
        looped = in_loop or (isinstance(node, (ast.For, ast.AsyncFor, ast.While)) and child in node.body)
        yield from _leaves_finally(child, looped)


def _raised_or_subclassed(name: ast.Name, parents: dict[ast.AST, ast.AST]) -> bool:
    """``raise Exception``, ``raise Exception(...)`` or ``class E(Exception)``: the uses that cannot catch
    ``MemoryError`` (a subclass's handler does not catch it). Anything else, ``except Exception``, a tuple of it or an
    alias, could catch the one the sandbox's 1 GiB address-space cap raises where plain Python reserves the memory
    untouched (``bytes(3 * 2 ** 30)``: a twelfth red team, 2026-12-04)."""
    parent = parents.get(name)
    if isinstance(parent, ast.ClassDef) and name in parent.bases:
        return True
    if isinstance(parent, ast.Call) and parent.func is name:
        name, parent = parent, parents.get(parent)
    return isinstance(parent, ast.Raise) and parent.exc is name


def _import_bound(tree: ast.Module) -> frozenset[str]:
    """The names an import binds in ``tree`` or in the judge's preamble (``List``): modules and their members."""
    from transforms.selfplay.preset import load_preset

    names = {(alias.asname or alias.name).split(".")[0] for node in ast.walk(tree)
             if isinstance(node, (ast.Import, ast.ImportFrom)) for alias in node.names}
    return frozenset(names | imported_names(load_preset().filters.judge_preamble))


def _type_comparison(name: ast.Name, parents: dict[ast.AST, ast.AST], bound: set[str]) -> bool:
    """Whether this ``type`` is ``type(x)`` of one plain argument, compared with ``==``, ``!=``, ``in`` or
    ``not in``: the one use puzzles make of it. Any other use builds or calls a class (``type(C().m)(K, obj)`` is
    a bound method of any object under any name, whose ``copy.copy`` ran ``getattr(obj, name)``: a seventh red
    team, 2026-12-03; ``T = type``, ``type(*args)`` and ``type(int)(...)`` build classes from strings)."""
    call = parents.get(name)
    if not (isinstance(call, ast.Call) and call.func is name and len(call.args) == 1 and not call.keywords
            and not isinstance(call.args[0], ast.Starred)):
        return False
    compare = parents.get(call)
    return isinstance(compare, ast.Compare) and _compares_types(compare, bound)


def _compares_types(compare: ast.Compare, bound: set[str]) -> bool:
    """``type(x) == int``, ``type(x) is list``, ``type(x) in (int, str)``: a ``type(x)`` of one plain argument
    compared only with builtin types by name or other such calls. A builtin type is one object in every process, so
    its identity is its equality."""
    operands = (compare.left, *compare.comparators)
    return (all(isinstance(op, (ast.Eq, ast.NotEq, ast.In, ast.NotIn, ast.Is, ast.IsNot)) for op in compare.ops)
            and any(_type_of_one(o) for o in operands) and all(_builtin_type_operand(o, bound) for o in operands))


def _type_of_one(node: ast.AST) -> bool:
    return (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "type"
            and len(node.args) == 1 and not node.keywords and not isinstance(node.args[0], ast.Starred))


def _builtin_type_operand(node: ast.AST, bound: set[str]) -> bool:
    """A builtin type by its name, which the code does not bind (``list = re.compile('q')`` made ``x != list``
    an identity test: the twelfth red team), a tuple, list or set of them, or another ``type(x)``."""
    if isinstance(node, ast.Name):
        return node.id in BUILTIN_TYPE_NAMES and node.id not in bound
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return all(_builtin_type_operand(e, bound) for e in node.elts)
    return _type_of_one(node)


def _refused_name(name: str) -> bool:
    """A name a program may not use or bind: a dunder, a lookup builtin, an evaluating tool."""
    return name.startswith("__") or name in LOOKUP_BUILTINS or name in EVALUATING_TOOLS


def _refused_attribute(name: str) -> bool:
    return bool(_INTERNAL_ATTRIBUTE.match(name)) or name in MODULE_ATTRIBUTES or name in EVALUATING_TOOLS


def _refused_import(alias: ast.alias) -> bool:
    """An imported module or name that is a route itself, whatever it is bound to (``from typing import
    get_type_hints as hints``, ``from random import _os``)."""
    parts = alias.name.split(".")
    return any(part.startswith("_") or part in MODULE_ATTRIBUTES or part in EVALUATING_TOOLS
               or part in LOOKUP_BUILTINS for part in parts) or (alias.asname or "").startswith("__")
