"""Refusing self-play code that may put objects hashed by their address in a set, or show their address in text.

A set iterates in the order of its elements' hashes. Instances of a class the code defines (it cannot define
``__hash__``: names with ``__`` are refused by ``introspection.interpreter_route``), functions, lambdas, classes,
builtin types and functions, and ``None`` (before Python 3.12) hash by their address, which follows ASLR: a red team
verified ``list({A(), A()})[0]``-style pairs while plain Python's ``f(g())`` was False in 2 of 10 runs. Such code
is refused before it runs.

The rule, conservative (no flow analysis):

* any ``class`` statement is refused: its instances (and the class) hash by address, and a set of them can be
  made in ways no static rule follows (``set(map(A, xs))``, ``d.keys() | ...``). No P3 puzzle defines a class.
* code that makes a set (a set display or comprehension, or reads ``set`` or ``frozenset``) may not read as a
  value a lambda, a name it binds with ``def``, or a builtin type or function (``{int, str}``, ``{len}``), other
  than where it is called (``set(map(str, xs))`` stores strings): as the function of a call, a decorator, the
  first argument of ``map``/``filter``, a ``key=`` argument, the classes of ``isinstance``/``issubclass``, an
  operand of a comparison (the result is a bool), an exception caught or raised. Nor may it put ``None`` or
  ``...`` in a set display (or in a list or tuple display handed to ``set``/``frozenset``). A name a ``def`` binds
  counts wherever it is read, except in a scope (function, lambda, comprehension, or the module) that binds the
  same name only otherwise (an assignment, a ``for`` target, a parameter, ``except ... as``): Python makes such a
  name local to that scope, so ``for f in fs`` inside a comprehension reads the loop's values, not ``def f``. The
  exception never applies to a name that is a ``:=`` target, declared ``global`` or ``nonlocal``, or imported
  anywhere in the code (those bind across scopes), nor where the same scope also binds it with ``def``, nor to any
  name in code with a star import.

* code that makes a set may not keep an object hashed by its address that a call makes: a generator expression, or
  a call of ``iter``, of a builtin class that keeps object's hash (``zip``, ``map``, ``enumerate``, ``object``,
  ``type``, exceptions...), of a function of the code that yields, or of a function, method or class of the safe
  modules whose result hashes by address (``re.match``/``search``/``fullmatch``/``finditer``, ``hashlib``'s
  constructors, ``random.Random``, ``collections.namedtuple``...). Each must stay where it is made: used up there
  (the iterable of a loop or comprehension, ``*``, ``yield from``, an argument of a builtin that iterates it or of
  ``str.join``), read (``re.match(p, s).group()``), tested (``if``, ``not``, a comparison) or raised; or assigned
  to a plain name every read of which, in any scope, is one of those. What ``finditer`` yields (matches) may only
  reach a loop's or comprehension's plain name read the same way, and ``map`` may not call such a function. Nor
  may the code read as a value a method of a builtin type or a function, class, method or other address-hashed
  value of the safe modules (``xs.append``, ``math.sqrt``, ``typing.T``), other than where it is called as above;
  nor ``Ellipsis``, ``NotImplemented`` or an imported module other than to read its attributes. Reading a method
  that returns its receiver or a copy (``.copy()``, ``.with_traceback()``) does not use an object up.
* in code that makes a set, an exception caught with ``except ... as e`` may only be used up, read, tested, raised
  or described (``str(e)``, ``repr(e)``, ``type(e)``, ``isinstance(e, ...)``), and no function may be decorated (a
  decorator is handed the function and may keep it). No P3 puzzle or reference solution is refused by these
  rules (2026-12-05; a second red team that day found the routes of this bullet and the last sentence above).

The default repr of most of the same objects holds their address (``<function f at 0x7f...>``, ``<zip object at
0x...>``, ``<memory at 0x...>``): code that makes text from values (``str``, ``repr``, ``ascii``, ``format``,
``typing.Text``, ``UserString``, an f-string field, ``%``, ``.format``, a template's ``substitute``, or an ``except
... as`` name, whose message may hold a repr: ``[].index(f)``) is held to the same rules, except that builtin types
and functions may be read as values there (their reprs hold no address). Dict views count as making a set (their
``|`` is one). In both modes: a name bound by ``from m import x`` counts as the object it names (a function read as
a value, ``Random(1)`` kept); a call that makes a class (``namedtuple``, ``typing.NamedTuple``...) is refused, its
attributes being objects of their own under names the code chooses; ``key=`` counts as a call only for ``sorted``,
``min``, ``max`` and ``.sort`` (``dict(key=f)`` keeps ``f``); and code that binds a name of a builtin the rule
relies on (``def filter``, ``str = ...``) is refused. Plain Python often gives a function the same address every
run, the sandbox (which shifts its layout) another, so a verdict resting on one differs between them.

Every program is checked, not only one that makes a set or text the rule sees (both can be made in ways no list of
makers follows: ``hashlib.algorithms_guaranteed.union([f])``); a set the rule sees (a display, ``set``, a dict view,
a ``Set[...]`` parameter, a safe module's set) adds builtins read as values. Also: ``typing``'s functions
(``overload``, ``MappingView``...) return objects hashed by address; ``.getter``/``.setter``/``.deleter``/``.cast``/
``.toreadonly`` return a new one of their receiver's kind; ``typing.KeysView``/``ItemsView`` make sets;
``.values()`` views hash by address; ``async def`` functions make coroutines and a lambda that yields makes a
generator (refused); ``t %= f`` makes text; and an annotation other than a type hint is refused, since Python
evaluates a parameter's or a module variable's annotation when it runs (``def h(v: s.add(f))``). And: ``next``, ``sum``,
``min`` and ``max`` use up only the iterable they walk (``next(it, default)`` hands back its default); a caught
exception's ``.obj``/``.name`` is what raised it; the methods of generators, memoryviews, exceptions and hash
objects count as methods.

The seventh red team (2026-12-05) added: async code (coroutines, async generators and what their methods return
hash by address) and ``except*`` (a group's ``.exceptions`` hands back what was raised) are refused outright; an
annotation may read no name the code binds other than ``typing``'s (``y: d[h] = 0`` raises ``KeyError(h)``); the
builtins whose call makes an object hashed by address (``iter``, ``zip``, ``reversed``...) may not be read as values
in any program; ``...`` may stand only as a statement or in a comparison. Also used up, to refuse less ordinary
code: unpacking into names (``a, *b = map(int, s.split())``), ``bool(...)``, a subscript by an int or str literal
(``m[0]``; a slice of a memoryview is another one), and ``math.prod``, ``math.fsum`` and ``collections.Counter``
called through their module's name or a ``from`` import. The eighth (the same day) added: ``re.Scanner`` is refused
(it hands itself to its callbacks), and so is an annotation naming a safe module's Python function (a misused hint's
error shows it: ``Optional[typing.cast, int]``); ``match`` statements are ``introspection``'s to refuse. The ninth
added: ``from re import finditer`` (what it yields is followed only as ``re.finditer(...)``), typing's type variables
(``TypeVar``, ``TypeVarTuple``, ``ParamSpec``, ``Unpack``: their hash is their address, and so is what unpacking one
yields) and ``.default_factory`` are refused, and an annotation may read an attribute of a module only
(``typing.IO.read`` is a function); it also found ordinary code refused, allowed now: a lambda as ``re.sub``'s
replacement whose parameter is only read where it stands (``lambda m: m.group() * 2``), and
``collections.defaultdict(int)`` beside a set (the factory one of ``int``, ``float``, ``str``, ``bool``, ``list``,
``dict``, ``set``, ``tuple``, ``frozenset``; the tenth red team kept ``defaultdict(zip)``'s products, and a lambda
``*a`` as ``re.sub``'s replacement: only ``lambda m:`` counts).

Left open: NaN (its hash is its address since 3.10; ``float('nan')`` cannot be told from ``float(s)``), ``None``
reaching a set through a variable, and a set's string order under each run's hash seed (the separate checks fix
``PYTHONHASHSEED=0``; the literal run draws one).
"""
from __future__ import annotations

import ast
import builtins
import collections
import functools
import hashlib
import importlib
import types

from transforms.selfplay.preset import load_preset
from transforms.selfplay.source import bound_names, parent_map, parse_for_rules

REASON = "hashes_by_address"
SET_NAMES = frozenset({"set", "frozenset"})
# Dict views (their | & - ^ make sets) and the typing names of sets (a Set[int] parameter holds one).
_SET_VIEWS = frozenset({"keys", "items", "KeysView", "ItemsView", "Set", "FrozenSet", "AbstractSet", "MutableSet"})
# Builtin types and functions: each hashes by its address. Exceptions' names are read by ``except`` and
# ``raise``; a set made of them is refused like any other.
ADDRESS_HASHED_BUILTINS = frozenset(name for name, value in vars(builtins).items()
                                    if callable(value) and not name.startswith("_")) | {"Ellipsis", "NotImplemented"}
_CALLERS = frozenset({"map", "filter"})  # their first argument is called, not stored
_KEY_CALLERS = frozenset({"sorted", "min", "max"})  # they call their key= argument, never keep it
# Builtins whose result is an object hashed by its address: ``iter``, and every class that keeps object's hash
# (iterators such as zip and map, object, type, exceptions, property...); and memoryview, whose repr shows one.
ADDRESS_HASHED_RESULTS = frozenset({"iter", "memoryview"} | {
    name for name, value in vars(builtins).items()
    if isinstance(value, type) and value.__hash__ is object.__hash__ and not name.startswith("_")})
# Functions and methods of the safe modules whose result is hashed by its address (a match, an iterator of matches,
# a hash object, a class), besides the modules' classes that keep object's hash (``callable_attributes``).
_ADDRESS_HASHED_FUNCTIONS = frozenset({"match", "fullmatch", "search", "finditer", "scanner", "namedtuple", "values",
                                       "NamedTuple", "TypedDict", "NewType", "elements", "new", "file_digest",
                                       *hashlib.algorithms_guaranteed})
# Calls that make a class: its attributes (a namedtuple's field getters) are objects hashed by address too, under
# names the code chooses, so no use of one counts as using it up.
_CLASS_MAKERS = frozenset({"namedtuple", "NamedTuple", "TypedDict", "NewType"})
# Methods that return their receiver or a copy of it: reading one of an object hashed by address does not use it up.
_SELF_OR_COPY = frozenset({"copy", "with_traceback", "getter", "setter", "deleter", "cast", "toreadonly"})
# Builtins that use up the iterables they are handed (or wrap them in another iterator, itself checked) and store
# only their elements or a value computed from them.
_CONSUMERS = frozenset({"set", "frozenset", "list", "tuple", "dict", "sorted", "sum", "min", "max", "any", "all",
                        "bool", "next", "iter", "enumerate", "zip", "map", "filter", "reversed", "len"})
# Functions of the safe modules that do the same, called through the module's name (``math.prod(map(int, s))``).
_MODULE_CONSUMERS = frozenset({("math", "prod"), ("math", "fsum"), ("collections", "Counter")})
_CLASS_CHECKS = frozenset({"isinstance", "issubclass"})  # their second argument is compared with, not stored
_EXCEPTION_HOLDS = frozenset({"obj", "name"})  # an AttributeError's object, a NameError's name
_TRUTH_TESTERS = frozenset({"any", "all"})  # they read only their elements' truth
_RETURN_AN_ARGUMENT = frozenset({"next", "sum", "min", "max"})  # a default, a start, or one of several arguments
_ADDRESS_CONSTANTS = (type(None), type(...))
_TYPE_VARIABLES = frozenset({"TypeVar", "TypeVarTuple", "ParamSpec", "ParamSpecArgs", "ParamSpecKwargs", "Unpack"})
_BUILTIN_TYPE_NAMES = frozenset(name for name, value in vars(builtins).items()
                                if isinstance(value, type) and not name.startswith("_"))
_ASYNC_NODES = (ast.AsyncFunctionDef, ast.Await, ast.AsyncFor, ast.AsyncWith)

# Whose methods, read as values, are objects hashed by address: the builtin types, and the types of the objects the
# rule keeps track of (generators and coroutines, iterators, memoryview, property, exceptions, hash objects).
_BUILTIN_TYPES = (int, float, complex, bool, str, bytes, bytearray, list, tuple, dict, set, frozenset, range,
                  memoryview, property, slice, BaseException, type((lambda: (yield))()), type(iter(())),
                  type(hashlib.md5()))


@functools.lru_cache(maxsize=None)
def callable_attributes(safe_modules: tuple[str, ...]) -> tuple[frozenset[str], frozenset[str]]:
    """Attribute names, for the modules a self-play program may import: (1) the methods of builtin types and the
    functions and classes of those modules and their classes' methods, and the modules' other values that hash by
    address (``typing.T``): read as a value (``xs.append``, ``math.sqrt``), each is an object hashed by its address;
    (2) of those, the ones whose call returns an object hashed by its address (``re.match``, ``random.Random``,
    ``hashlib.sha256``)."""
    modules = [importlib.import_module(module) for module in safe_modules]
    classes = [value for module in modules for value in vars(module).values() if isinstance(value, type)]
    owners = (*_BUILTIN_TYPES, *modules, *classes)  # the modules' classes too: a Counter's most_common
    methods = frozenset(name for owner in owners for name in dir(owner)
                        if not name.startswith("_") and callable(getattr(owner, name, None))) | {
        name for module in modules for name, value in vars(module).items()  # typing.T, a TypeVar
        if not name.startswith("_") and getattr(type(value), "__hash__", None) is object.__hash__}
    address_results = _ADDRESS_HASHED_FUNCTIONS | {
        name for module in modules for name, value in vars(module).items()
        if isinstance(value, type) and getattr(value, "__hash__", None) is object.__hash__} | {
        name for module in modules if module.__name__ == "typing"  # overload(0), MappingView(0): annotations' tools
        for name, value in vars(module).items()
        if callable(value) and not name.startswith("_") and getattr(value, "__module__", None) == "typing"}
    return methods, frozenset(address_results)


@functools.lru_cache(maxsize=None)
def module_functions(safe_modules: tuple[str, ...]) -> frozenset[str]:
    """Names of the safe modules' functions written in Python (``typing.cast``, ``re.compile``): their default repr
    holds their address."""
    return frozenset(name for module in safe_modules for name, value in vars(importlib.import_module(module)).items()
                     if isinstance(value, types.FunctionType))


@functools.lru_cache(maxsize=None)
def module_sets(safe_modules: tuple[str, ...]) -> frozenset[str]:
    """Names of the safe modules' sets (``hashlib.algorithms_guaranteed``): their methods make sets too."""
    return frozenset(name for module in safe_modules for name, value in vars(importlib.import_module(module)).items()
                     if isinstance(value, (set, frozenset)))


def address_hash_route(code: str) -> str | None:
    """The first way ``code`` may let an address decide its result (a short description), or None: an object hashed
    by its address in a set, or shown by its default repr in text.
    Code that does not parse has none to find (the filters that run it report it); code nested too deeply to parse
    here cannot be checked, and is refused."""
    tree, refusal = parse_for_rules(code)
    if tree is None:
        return refusal
    nodes = list(ast.walk(tree))
    for node in nodes:
        if isinstance(node, ast.ClassDef):
            return f"class {node.name}, whose instances hash by address (line {node.lineno})"
        if isinstance(node, _ASYNC_NODES):  # coroutines, async generators and what their methods return
            return f"async code, whose objects hash by address (line {node.lineno})"
        if isinstance(node, ast.TryStar):  # an exception group's .exceptions hands back what was raised
            return f"except*, whose exception groups hold the exceptions raised (line {node.lineno})"
        if ((isinstance(node, ast.Attribute) and node.attr == "Scanner")
                or (isinstance(node, ast.alias) and node.name == "Scanner")):  # it hands itself to its callbacks
            return f"re.Scanner, which hands itself to its callbacks (line {getattr(node, 'lineno', '?')})"
        named = getattr(node, "attr", None) or getattr(node, "id", None) or (
            node.name if isinstance(node, ast.alias) else None)
        if named in _TYPE_VARIABLES:  # their hash is their address, and so is what they make (Unpack[Ts])
            return f"typing.{named}, whose objects hash by address (line {getattr(node, 'lineno', '?')})"
        if isinstance(node, ast.ImportFrom) and any(a.name in _ADDRESS_HASHED_ELEMENTS for a in node.names):
            return f"from {node.module} import finditer: what it yields is followed as re.finditer(...) only " \
                   f"(line {node.lineno})"
        if isinstance(node, ast.Attribute) and node.attr == "default_factory":  # defaultdict(int) keeps int there
            return f".default_factory read (line {node.lineno})"
    safe_modules = tuple(load_preset().filters.safe_imports)
    set_sources = _SET_VIEWS | module_sets(safe_modules)
    set_sources |= {alias.asname for node in nodes if isinstance(node, ast.ImportFrom) for alias in node.names
                    if alias.asname and alias.name in set_sources}  # from hashlib import algorithms_guaranteed as ag
    makes_set = any(isinstance(node, (ast.Set, ast.SetComp))
                    or (isinstance(node, ast.Name) and node.id in SET_NAMES | set_sources)
                    or (isinstance(node, ast.Attribute) and node.attr in set_sources) for node in nodes)
    # Every program is checked (a set or text can be made in ways no list of makers follows); a set adds the
    # builtins read as values, hashed by address though their reprs show none.
    beside = ("beside a set" if makes_set else "beside text made from values"
              if any(_makes_text(node) for node in nodes) else "where its address may show")
    parents = parent_map(tree)
    # in the code's order (a set of nodes would iterate by address, and the route named would vary)
    annotations = list(dict.fromkeys(inner for node in nodes for outer in _annotations(node)
                                     for inner in ast.walk(outer)))
    computing = next((node for node in annotations if not isinstance(node, _TYPE_HINT_NODES)), None)
    if computing is not None:  # Python evaluates a parameter's or a module variable's annotation when it runs
        return f"an annotation that computes {beside} (line {computing.lineno})"
    # and reads its names: d[h] looks like a hint, but raises KeyError(h) when d is the code's dict
    code_names = bound_names(node for node in nodes if not _imports_typing(node))
    reading = next((node for node in annotations if isinstance(node, ast.Name) and node.id in code_names), None)
    if reading is not None:
        return f"an annotation that reads {reading.id}, a name the code binds, {beside} (line {reading.lineno})"
    # an attribute of a module only (typing.List), never of a class (typing.IO.read, ParamSpec.args: a misused hint's
    # error shows them)
    code_binds = bound_names(nodes)
    # the judge's preamble (from typing import List...) binds what the code does not: List read as a value is typing's
    environment = [node for node in _environment_imports(load_preset().filters.judge_preamble)
                   if not bound_names((node,)) <= code_binds]
    imported_as = {alias.asname or alias.name: alias.name for node in nodes if isinstance(node, ast.Import)
                   for alias in node.names}  # the name an import binds -> the module it names
    imported_as |= {alias.asname or alias.name: alias.name for node in environment if isinstance(node, ast.Import)
                    for alias in node.names if (alias.asname or alias.name) not in code_binds}
    modules = {name.split(".")[0] for name in imported_as}
    deep = next((node for node in annotations if isinstance(node, ast.Attribute)
                 and not (isinstance(node.value, ast.Name) and node.value.id in modules)), None)
    if deep is not None:
        return f"an annotation that reads .{deep.attr} of what is not a module {beside} (line {deep.lineno})"
    # and a misused hint raises an error whose message shows what it names: Optional[typing.cast, int]
    safe_functions = module_functions(safe_modules)
    naming = next((node for node in annotations
                   if getattr(node, "id", getattr(node, "attr", None)) in safe_functions), None)
    if naming is not None:
        return f"an annotation that names a function, whose repr holds its address, {beside} (line {naming.lineno})"
    in_annotations = set(annotations)
    nodes = [node for node in nodes if node not in in_annotations]  # List[int]: a type hint, never evaluated into a set
    functions = {node.name for node in nodes if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))}
    # Calling one of these makes a generator (any yield inside counts, a nested function's too: conservative).
    generator_functions = {node.name for node in nodes if isinstance(node, ast.AsyncFunctionDef)  # a coroutine
                           or (isinstance(node, ast.FunctionDef)
                               and any(isinstance(inner, (ast.Yield, ast.YieldFrom)) for inner in ast.walk(node)))}
    methods, address_result_methods = callable_attributes(safe_modules)
    imported_values, imported_makers, class_makers = _from_imports(nodes, safe_modules, address_result_methods)
    for found, more in zip((imported_values, imported_makers, class_makers),
                           _from_imports(environment, safe_modules, address_result_methods)):
        found |= more - code_binds
    class_makers |= _CLASS_MAKERS
    functions |= imported_values
    address_results = ADDRESS_HASHED_RESULTS | generator_functions | imported_makers
    scope_of = _scopes(tree)
    locals_only = _bound_only_otherwise(tree, scope_of)
    loads: dict[str, list[ast.Name]] = {}
    for node in nodes:
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
            loads.setdefault(node.id, []).append(node)
        elif isinstance(node, ast.AugAssign) and isinstance(node.target, ast.Name):  # it += u reads it, and keeps
            loads.setdefault(node.target.id, []).append(node.target)  # whatever the operation makes of it

    # a name bound by two imports is neither's: `from collections import defaultdict as dd` under `if 0:` beside
    # `from collections import ChainMap as dd` (the twelfth red team)
    import_counts = collections.Counter(alias.asname or alias.name.split(".")[0] for node in nodes
                                        if isinstance(node, (ast.Import, ast.ImportFrom)) for alias in node.names)
    from_imported = {alias.asname or alias.name: (node.module, alias.name) for node in nodes
                     if isinstance(node, ast.ImportFrom) and not node.level for alias in node.names
                     if import_counts[alias.asname or alias.name] == 1}
    modules_named = {name: module for name, module in imported_as.items() if import_counts[name] <= 1}
    bound_otherwise = bound_names(n for n in nodes if not isinstance(n, (ast.Import, ast.ImportFrom)))
    defaultdicts = frozenset(name for name, origin in from_imported.items()
                             if origin == ("collections", "defaultdict") and name not in bound_otherwise)

    def method_of(node: ast.Name) -> bool:
        """``str.isdigit``, ``dict.fromkeys``: a builtin type the code does not rebind, read for a method, itself
        checked as one (never ``List.copy_with`` nor a rebound name's: their methods are not the rule's)."""
        parent = parents.get(node)
        return (node.id in _BUILTIN_TYPE_NAMES and node.id not in code_binds and isinstance(parent, ast.Attribute)
                and parent.value is node and parent.attr in methods)

    def subscripted_in_place(node: ast.Name) -> bool:
        """``Dict[str, int] is not None``: what the subscript makes is only compared or dropped, never called
        (``enumerate[0]('ab')`` makes what no call by name shows: the thirteenth red team)."""
        parent = parents.get(node)
        return (isinstance(parent, ast.Subscript) and parent.value is node
                and isinstance(parents.get(parent), (ast.Compare, ast.Expr)))

    def called(node: ast.AST) -> bool:
        return _called_where_it_stands(node, parents, defaultdicts)

    def called_by_name(function: ast.Lambda) -> bool:
        """``score = lambda w: ...`` and every read of ``score`` a call or a caller's (``key=score``): the function
        itself goes nowhere."""
        assign = parents.get(function)
        targets = (assign.targets if isinstance(assign, ast.Assign) else [assign.target]
                   if isinstance(assign, ast.AnnAssign) else [])
        return (getattr(assign, "value", None) is function and len(targets) == 1
                and isinstance(targets[0], ast.Name)
                and all(getattr(parents.get(load), "func", None) is load or called(load)
                        for load in loads.get(targets[0].id, ())))

    def module_consumer(call: ast.Call) -> bool:
        """``math.prod(...)`` through the module's name, or ``prod(...)`` from ``from math import prod``."""
        func = call.func
        if isinstance(func, ast.Name):
            return func.id not in bound_otherwise and from_imported.get(func.id) in _MODULE_CONSUMERS
        return (isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name)
                and func.value.id not in bound_otherwise
                and (modules_named.get(func.value.id), func.attr) in _MODULE_CONSUMERS)

    consuming = {node for node in nodes if isinstance(node, ast.Call) and module_consumer(node)}

    def used_up(node: ast.AST) -> bool:
        return _used_up_where_it_stands(node, parents, consuming)

    def reads_used_up(name: str) -> bool:
        """Every read of ``name``, in any scope, is used up where it stands."""
        return all(used_up(load) for load in loads.get(name, ()))

    def stays_put(node: ast.AST) -> bool:
        """Used up where it stands, or assigned to a plain name every read of which is."""
        if used_up(node):
            return True
        node = _whole(node, parents)  # m = re.match(a, s) or re.match(b, s): the name holds one of them
        parent = parents.get(node)
        if isinstance(parent, ast.NamedExpr):  # if (m := re.match(p, s)): the expression and the name alike
            return parent.value is node and used_up(parent) and reads_used_up(parent.target.id)
        return (isinstance(parent, ast.Assign) and parent.value is node and len(parent.targets) == 1
                and isinstance(parent.targets[0], ast.Name) and reads_used_up(parent.targets[0].id))

    def looped_over(iterable: ast.expr) -> bool:
        parent = parents.get(iterable)
        target_index = None
        if (isinstance(parent, ast.Call) and isinstance(parent.func, ast.Name) and parent.func.id == "enumerate"
                and parent.args == [iterable] and not parent.keywords):  # for i, m in enumerate(re.finditer(p, s))
            iterable, parent, target_index = parent, parents.get(parent), 1
        if not (isinstance(parent, (ast.comprehension, ast.For, ast.AsyncFor)) and parent.iter is iterable):
            return False
        target = parent.target
        if target_index is not None:
            if not (isinstance(target, ast.Tuple) and len(target.elts) == 2):
                return False
            target = target.elts[target_index]
        return isinstance(target, ast.Name) and reads_used_up(target.id)

    def each_used_up(call: ast.Call) -> bool:
        """``call``'s elements reach nothing but a loop's or comprehension's plain name, every read of which is
        used up where it stands (``[m.group() for m in re.finditer(p, s)]``), directly or through a plain name
        only ever looped over that way (``ms = re.finditer(p, s)``, then ``for m in ms``)."""
        parent = parents.get(call)
        if (isinstance(parent, ast.Assign) and parent.value is call and len(parent.targets) == 1
                and isinstance(parent.targets[0], ast.Name)):
            reads = loads.get(parent.targets[0].id, ())
            return bool(reads) and all(looped_over(read) for read in reads)
        return looped_over(call)

    def address_result(call: ast.AST) -> bool:
        func = call.func if isinstance(call, ast.Call) else call
        return ((isinstance(func, ast.Name) and func.id in address_results
                 and (scope_of[func], func.id) not in locals_only)
                or (isinstance(func, ast.Attribute) and func.attr in address_result_methods))

    # A builtin's name the code binds (`def f(list)`, `sum = 0`) is fine read as a value; the rule trusts the
    # builtin only where such a name is called, handed a role (map's function, key=, a factory, raised) or is set.
    for load in _shadowed_loads(tree, scope_of, parents, _TRUSTED, import_counts):
        parent = parents.get(load)
        if (getattr(parent, "func", None) is load
                or (called(load) and not isinstance(parent, ast.Compare))):
            return f"{load.id} rebound {beside}: the rule trusts the builtin (line {load.lineno})"
    for node in nodes:
        if isinstance(node, ast.Call) and _call_name(node) in class_makers:
            return f"{_call_name(node)}(...) {beside} (line {node.lineno}): it makes a class"
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.decorator_list:
            return f"a decorator {beside} (line {node.lineno}): it may keep the function it is handed"
        if isinstance(node, ast.ExceptHandler) and node.name and not all(
                (used_up(load) or _described(load, parents))  # e.obj, (e or 0).obj: what raised it
                and getattr(parents.get(_whole(load, parents)), "attr", None) not in _EXCEPTION_HOLDS
                for load in loads.get(node.name, ())):
            return f"the exception caught as {node.name} kept {beside} (line {node.lineno})"
        if (isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and node.id in modules
                and not (isinstance(parents.get(node), ast.Attribute) and parents[node].value is node)):
            return f"module {node.id} read as a value {beside} (line {node.lineno})"
        if isinstance(node, ast.Lambda) and any(isinstance(inner, (ast.Yield, ast.YieldFrom, ast.Await))
                                                for inner in ast.walk(node.body)):
            return f"a lambda that makes a generator {beside} (line {node.lineno})"
        if (isinstance(node, ast.Lambda) and not called(node) and not called_by_name(node)
                and not (_replacement(node, parents, modules_named) and _one_plain_parameter(node)
                         and reads_used_up(node.args.args[0].arg))):  # re.sub(p, lambda m: m[0] * 2, s)
            return f"a lambda {beside} (line {node.lineno})"
        if (isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and not method_of(node)
                and (node.id in functions or node.id in ADDRESS_HASHED_RESULTS
                     or (makes_set and node.id in ADDRESS_HASHED_BUILTINS))
                and (scope_of[node], node.id) not in locals_only
                and not called(node) and not subscripted_in_place(node)):
            return f"{node.id} read as a value {beside} (line {node.lineno})"
        if isinstance(node, ast.Constant) and type(node.value) in _ADDRESS_CONSTANTS and _set_element(node, parents):
            return f"{node.value!r} in a set (line {node.lineno})"
        if (isinstance(node, ast.Constant) and node.value is ... and not isinstance(parents.get(node), ast.Expr)
                and not _compared(node, parents)):  # a body's placeholder, or `x is ...`, stores nothing
            return f"... read as a value {beside} (line {node.lineno}): it hashes by its address"
        if isinstance(node, ast.GeneratorExp) and not stays_put(node):
            return f"a generator kept {beside} (line {node.lineno})"
        if isinstance(node, ast.Call) and address_result(node) and not stays_put(node):
            name = node.func.id if isinstance(node.func, ast.Name) else "." + node.func.attr
            return f"{name}(...) kept {beside} (line {node.lineno})"
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr in _ADDRESS_HASHED_ELEMENTS and not each_used_up(node)):
            return f"what .{node.func.attr}(...) yields kept {beside} (line {node.lineno})"
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "map"
                and node.args and address_result(node.args[0])):
            return f"map over a function whose results hash by address, {beside} (line {node.lineno})"
        if (isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load) and node.attr in methods
                and not called(node)):
            return f".{node.attr} read as a value {beside} (line {node.lineno})"
    return None


# What turns a value into text: an object shown by the default repr shows its address (``<function f at 0x...>``).
TEXT_MAKERS = frozenset({"str", "repr", "ascii", "format", "Text", "UserString"})
_TEXT_METHODS = frozenset({"format", "format_map", "substitute", "safe_substitute", "vformat", *TEXT_MAKERS})


@functools.lru_cache(maxsize=8)
def _environment_imports(preamble: str) -> tuple[ast.stmt, ...]:
    """The import statements of the judge's preamble, which binds names the code reads without binding them."""
    return tuple(node for node in ast.parse(preamble).body if isinstance(node, (ast.Import, ast.ImportFrom)))


def _makes_text(node: ast.AST) -> bool:
    return (isinstance(node, ast.FormattedValue)
            or (isinstance(node, ast.ExceptHandler) and node.name is not None)  # error messages hold reprs
            or (isinstance(node, ast.Name) and node.id in TEXT_MAKERS)
            or (isinstance(node, ast.Attribute) and node.attr in _TEXT_METHODS)
            or (isinstance(node, (ast.BinOp, ast.AugAssign)) and isinstance(node.op, ast.Mod)))  # "%s" % f, t %= f


_TESTS = (ast.If, ast.While, ast.IfExp, ast.Assert)


def _call_name(call: ast.Call) -> str | None:
    func = call.func
    return func.id if isinstance(func, ast.Name) else (func.attr if isinstance(func, ast.Attribute) else None)


def _from_imports(nodes, safe_modules: tuple[str, ...],
                  address_result_methods) -> tuple[set[str], set[str], set[str]]:
    """Names bound by ``from m import x``: those whose object is callable or hashed by address (read as a value,
    each is one), those whose call returns an object hashed by address, and those that make a class
    (``namedtuple as nt``). Unknown modules' names count as the first two."""
    values: set[str] = set()
    makers: set[str] = set()
    class_makers: set[str] = set()
    for node in nodes:
        if not isinstance(node, ast.ImportFrom):
            continue
        module = importlib.import_module(node.module) if node.module in safe_modules and not node.level else None
        for alias in node.names:
            bound = alias.asname or alias.name
            value = getattr(module, alias.name, None) if module is not None else None
            if module is None or callable(value) or getattr(type(value), "__hash__", None) is object.__hash__:
                values.add(bound)
            if module is None or alias.name in address_result_methods:
                makers.add(bound)
            if alias.name in _CLASS_MAKERS:
                class_makers.add(bound)
    return values, makers, class_makers


_DESCRIBERS = frozenset({"str", "repr", "type", "isinstance"})  # an exception's text or class, not the exception
# Builtins whose handling the rule relies on: code that binds one of these names (def map, str = ...) is refused.
_VALUE_FACTORIES = frozenset({"int", "float", "str", "bool", "list", "dict", "set", "tuple", "frozenset"})
_TRUSTED = (SET_NAMES | _CALLERS | _KEY_CALLERS | _CLASS_CHECKS | _CONSUMERS | _DESCRIBERS | TEXT_MAKERS
            | ADDRESS_HASHED_RESULTS | _VALUE_FACTORIES)


def _described(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    parent = parents.get(node)
    return (isinstance(parent, ast.Call) and isinstance(parent.func, ast.Name) and parent.func.id in _DESCRIBERS
            and parent.args[:1] == [node])


_ADDRESS_HASHED_ELEMENTS = frozenset({"finditer"})  # an iterator of matches: each hashes by its address


def _used_up_where_it_stands(node: ast.AST, parents: dict[ast.AST, ast.AST],
                             consuming: set[ast.Call] | frozenset = frozenset()) -> bool:
    """``node`` (an object hashed by its address) is used where it stands and never stored: iterated (a loop, a
    comprehension, ``*``, ``yield from``, unpacked into names, a consuming builtin, ``str.join`` or a ``consuming``
    call of a module's function), so that only its elements can reach a set; or read (``re.match(p, s).group()``,
    ``m[0]``), tested (``if re.match(p, s)``, ``not``, ``bool``, a comparison) or raised."""
    node = _whole(node, parents)
    parent = parents.get(node)
    if isinstance(parent, (ast.comprehension, ast.For, ast.AsyncFor)):
        return parent.iter is node or node in getattr(parent, "ifs", ())
    if _zip_chunks(node, parents):
        return True
    if isinstance(parent, (ast.GeneratorExp, ast.ListComp)) and parent.elt is node:  # any(re.match(p, w) for w in ws)
        tester = parents.get(parent)
        return (isinstance(tester, ast.Call) and isinstance(tester.func, ast.Name) and tester.func.id in _TRUTH_TESTERS
                and tester.args == [parent] and not tester.keywords)
    if isinstance(parent, (ast.Starred, ast.YieldFrom, ast.Compare, ast.Raise)):
        return True
    if isinstance(parent, ast.Attribute):
        return parent.value is node and parent.attr not in _SELF_OR_COPY
    if isinstance(parent, ast.Subscript):  # m[0], m['year']: a group; an iterator raises. Never a slice, which
        return parent.value is node and _constant_index(parent.slice)  # of a memoryview makes another
    if isinstance(parent, ast.Assign):  # a, *b = map(int, s.split()): unpacked, only the elements are bound
        return parent.value is node and all(isinstance(t, (ast.Tuple, ast.List)) for t in parent.targets)
    if parent in consuming:
        return node in parent.args
    if isinstance(parent, _TESTS):
        return parent.test is node
    if isinstance(parent, ast.UnaryOp):
        return isinstance(parent.op, ast.Not)
    if isinstance(parent, ast.Call) and node in parent.args:
        func = parent.func
        if isinstance(func, ast.Name) and func.id in _RETURN_AN_ARGUMENT:
            # next(it, default), sum(xs, start), min(a, b): only the iterable they walk is used up
            return parent.args[0] is node and (func.id not in ("min", "max") or len(parent.args) == 1)
        return ((isinstance(func, ast.Name) and func.id in _CONSUMERS)
                or (isinstance(func, ast.Attribute) and func.attr == "join"))
    return False


def _whole(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> ast.AST:
    """The expression whose value ``node``'s may be: ``m and m[0]``, ``a if c else b`` (an operand's, not a test's)."""
    parent = parents.get(node)
    while isinstance(parent, ast.BoolOp) or (isinstance(parent, ast.IfExp) and parent.test is not node):
        node, parent = parent, parents.get(parent)
    return node


def _zip_chunks(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    """``zip(*[iter(s)] * 2)``, the chunking idiom: the list only hands ``node`` to ``zip`` n times, and zip, a
    consumer, is followed on its own."""
    listed = parents.get(node)
    product = parents.get(listed)
    starred = parents.get(product)
    call = parents.get(starred)
    return (isinstance(listed, (ast.List, ast.Tuple)) and listed.elts == [node] and isinstance(product, ast.BinOp)
            and isinstance(product.op, ast.Mult) and listed in (product.left, product.right)
            and isinstance(starred, ast.Starred) and isinstance(call, ast.Call) and starred in call.args
            and isinstance(call.func, ast.Name) and call.func.id == "zip")


_FUNCTION_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)
_COMPREHENSIONS = (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)


def _scopes(tree: ast.Module) -> dict[ast.AST, ast.AST]:
    """Each node's scope: the module, or the function, lambda or comprehension whose names it sees first. What
    Python evaluates outside a scope's own namespace belongs to the enclosing one: decorators, defaults and
    annotations of a function, and the first iterable of a comprehension. Iterative: deeply nested code that
    parses must not overflow the stack here."""
    scope_of: dict[ast.AST, ast.AST] = {}
    stack: list[tuple[ast.AST, ast.AST]] = [(tree, tree)]
    while stack:
        node, scope = stack.pop()
        scope_of[node] = scope
        if isinstance(node, _FUNCTION_SCOPES):
            arguments = node.args
            outside = [*getattr(node, "decorator_list", ()), *arguments.defaults,
                       *(d for d in arguments.kw_defaults if d is not None)]
            if getattr(node, "returns", None) is not None:
                outside.append(node.returns)
            parameters = [*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs,
                          *(a for a in (arguments.vararg, arguments.kwarg) if a is not None)]
            body = node.body if isinstance(node.body, list) else [node.body]  # a lambda's body is one expression
            scope_of[arguments] = node
            stack += [(child, scope) for child in outside]
            stack += [(child, node) for child in (*parameters, *body)]
        elif isinstance(node, _COMPREHENSIONS):
            first = node.generators[0]
            scope_of[first] = node
            stack.append((first.iter, scope))
            stack += [(child, node) for child in ast.iter_child_nodes(first) if child is not first.iter]
            stack += [(child, node) for child in ast.iter_child_nodes(node) if child is not first]
        else:
            stack += [(child, scope) for child in ast.iter_child_nodes(node)]
    return scope_of


def _bound_only_otherwise(tree: ast.Module, scope_of: dict[ast.AST, ast.AST]) -> set[tuple[ast.AST, str]]:
    """(scope, name) pairs where the scope binds the name, and only otherwise than with ``def`` or ``import``, so
    that a read of it in that scope reads that binding. Names bound across scopes (``:=``, ``global``,
    ``nonlocal``, imports) never qualify, and none does beside a star import."""
    other: set[tuple[ast.AST, str]] = set()
    by_def: set[tuple[ast.AST, str]] = set()
    across: set[str] = set()
    for node in ast.walk(tree):
        scope = scope_of.get(node)
        if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            other.add((scope, node.id))
        elif isinstance(node, ast.arg):
            other.add((scope, node.arg))
        elif isinstance(node, ast.ExceptHandler) and node.name:
            other.add((scope, node.name))
        elif isinstance(node, (ast.MatchAs, ast.MatchStar)) and node.name:
            other.add((scope, node.name))
        elif isinstance(node, ast.MatchMapping) and node.rest:
            other.add((scope, node.rest))
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            by_def.add((scope, node.name))
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [(alias.asname or alias.name).split(".")[0] for alias in node.names]
            if "*" in names:
                return set()  # a star import may bind any name, a def'd one too
            across.update(names)
        elif isinstance(node, (ast.Global, ast.Nonlocal)):
            across.update(node.names)
        elif isinstance(node, ast.NamedExpr) and isinstance(node.target, ast.Name):
            across.add(node.target.id)
    # Not the module's: a module-level read before its assignment runs reads the builtin (LOAD_NAME), not an error.
    return {(scope, name) for scope, name in other - by_def if name not in across and scope is not tree}


def _shadowed_loads(tree: ast.Module, scope_of: dict[ast.AST, ast.AST], parents: dict[ast.AST, ast.AST],
                    names: frozenset[str], import_counts: collections.Counter) -> list[ast.Name]:
    """The reads of ``names`` that may read the code's own binding rather than the builtin: in a scope that binds
    the name or inside one. Every read counts where the module binds it, a ``global``, ``nonlocal`` or ``:=``
    names it (they bind across scopes), or a star import may bind it."""
    binders: dict[str, set[ast.AST]] = {}
    everywhere: set[str] = set()
    star = False
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and any(alias.name == "*" for alias in node.names):
            star = True
        bound = bound_names((node,)) & names
        if isinstance(node, ast.ImportFrom):  # from collections import UserString: the maker the rule names
            bound -= {alias.name for alias in node.names if alias.asname in (None, alias.name)
                      and not hasattr(builtins, alias.name) and import_counts[alias.name] == 1}
        if isinstance(node, (ast.Global, ast.Nonlocal)) or isinstance(parents.get(node), ast.NamedExpr):
            everywhere |= bound
        for name in bound:
            binders.setdefault(name, set()).add(scope_of[node])
    shadowed = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and node.id in names):
            continue
        scopes = binders.get(node.id, set())
        scope = scope_of[node]
        while scope is not tree and scope not in scopes:
            scope = scope_of[scope]
        if star or node.id in everywhere or scope in scopes:
            shadowed.append(node)
    return shadowed


# What a type hint is made of (List[int], Optional["T"], int | None); anything else in an annotation computes.
_TYPE_HINT_NODES = (ast.Name, ast.Attribute, ast.Subscript, ast.Constant, ast.Tuple, ast.List, ast.BinOp, ast.BitOr,
                    ast.Load)


def _annotations(node: ast.AST) -> list[ast.expr]:
    if isinstance(node, ast.arg):
        return [node.annotation] if node.annotation else []
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        return [node.returns] if node.returns else []
    return [node.annotation] if isinstance(node, ast.AnnAssign) else []


def _called_where_it_stands(node: ast.AST, parents: dict[ast.AST, ast.AST],
                            defaultdicts: frozenset[str] = frozenset()) -> bool:
    """``node`` (a function or type) is used where it is called or compared, never stored. ``defaultdicts``: the
    names ``from collections import defaultdict`` binds, and nothing else does."""
    parent = parents.get(node)
    if ((isinstance(parent, ast.Tuple) and isinstance(parents.get(parent), (ast.Call, ast.ExceptHandler, ast.Compare)))
            or (isinstance(parent, ast.List) and isinstance(parents.get(parent), ast.Compare))):
        node, parent = parent, parents[parent]  # isinstance(x, (int, str)), except (ValueError, KeyError), in [a, b]
    if isinstance(parent, (ast.ExceptHandler, ast.Raise)):
        return True  # caught or raised, not stored
    if isinstance(parent, ast.Call):
        name = parent.func.id if isinstance(parent.func, ast.Name) else None
        # collections.defaultdict(int): a factory whose products hash by value and whose repr shows no address
        factory = (((isinstance(parent.func, ast.Attribute) and parent.func.attr == "defaultdict")
                    or (isinstance(parent.func, ast.Name) and parent.func.id in defaultdicts))
                   and isinstance(node, ast.Name) and node.id in _VALUE_FACTORIES)
        return (parent.func is node or ((name in _CALLERS or factory) and parent.args[:1] == [node])
                or (name in _CLASS_CHECKS and parent.args[1:2] == [node]))
    if isinstance(parent, ast.keyword):  # sorted(xs, key=f), xs.sort(key=f); dict(key=f) would keep f
        call = parents.get(parent)
        func = getattr(call, "func", None)
        return parent.arg == "key" and ((isinstance(func, ast.Name) and func.id in _KEY_CALLERS)
                                        or (isinstance(func, ast.Attribute) and func.attr == "sort"))
    if isinstance(parent, (ast.Compare, ast.Expr)):  # compared, or evaluated and dropped
        return True
    if isinstance(parent, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return node in parent.decorator_list
    return False


def _replacement(node: ast.AST, parents: dict[ast.AST, ast.AST], imported_as: dict[str, str]) -> bool:
    """``node`` is the replacement function of ``re.sub``/``subn`` (second argument) or of a pattern's
    ``.sub``/``.subn`` (first), or their ``repl=``: called with each match, never stored."""
    parent = parents.get(node)
    if isinstance(parent, ast.keyword):
        return parent.arg == "repl" and _replacement_call(parents.get(parent)) is not None
    if _replacement_call(parent) is None:
        return False
    through_module = isinstance(parent.func.value, ast.Name) and imported_as.get(parent.func.value.id) == "re"
    return parent.args[1:2] == [node] if through_module else parent.args[:1] == [node]


def _one_plain_parameter(function: ast.Lambda) -> bool:
    """``lambda m: ...``: no ``*a``, ``**k``, ``m, /``, keyword-only parameter or default (each hides the match)."""
    a = function.args
    return (len(a.args) == 1 and not (a.posonlyargs or a.vararg or a.kwonlyargs or a.kwarg or a.defaults
                                      or a.kw_defaults))


def _replacement_call(call: ast.AST) -> ast.Call | None:
    if isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute) and call.func.attr in ("sub", "subn"):
        return call
    return None


def _constant_index(index: ast.AST) -> bool:
    """An int or str literal (``-1`` too): an index that cannot be a slice object."""
    if isinstance(index, ast.UnaryOp) and isinstance(index.op, ast.USub):
        index = index.operand
    return isinstance(index, ast.Constant) and type(index.value) in (int, str)


def _compared(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    return isinstance(parents.get(node), ast.Compare)


def _imports_typing(node: ast.AST) -> bool:
    """``import typing`` or ``from typing import ...``: the names they bind are type hints' own."""
    return ((isinstance(node, ast.ImportFrom) and node.module == "typing" and not node.level)
            or (isinstance(node, ast.Import) and all(alias.name == "typing" for alias in node.names)))


def _set_element(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    parent = parents.get(node)
    if isinstance(parent, ast.Set):
        return True
    if isinstance(parent, (ast.List, ast.Tuple)):
        call = parents.get(parent)
        return (isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id in SET_NAMES
                and call.args[:1] == [parent])
    return False
