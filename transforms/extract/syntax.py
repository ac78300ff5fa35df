"""Syntax checks: CPython's compiler for Python, tree-sitter (no ERROR/MISSING node) for every other language.

Python is checked by CPython alone: it is the language's reference parser, and the compiler also rejects what
no grammar sees (``return`` outside a function). A tree-sitter parse after it cost as much again (~80 us on a
1 KB snippet) and, on 6,932 snippets (every top-level definition of the standard library and the Code Alpaca 2k
answers), never rejected code that CPython compiled.

Tree-sitter parsers are cached per thread (they are not thread safe). A grammar may list MISSING tokens it
inserts for valid code (Kotlin's optional semicolon); those are tolerated.
"""
from __future__ import annotations

import ast
import re
import threading
import types
import warnings

from tree_sitter_language_pack import get_parser

from transforms.extract.languages import LANGUAGES

_thread_state = threading.local()  # tree-sitter parsers are not thread safe: one set per thread


def thread_parser(grammar: str):
    """A tree-sitter parser for ``grammar``, cached per thread."""
    parsers = getattr(_thread_state, "parsers", None)
    if parsers is None:
        parsers = _thread_state.parsers = {}
    parser = parsers.get(grammar)
    if parser is None:
        parser = parsers[grammar] = get_parser(grammar)
    return parser


_MISSING_NODE = re.compile(r"\(MISSING (\"(?:[^\"\\]|\\.)*\"|[^\s)]+)")


def only_tolerated_errors(root, tolerated: frozenset[str]) -> bool:
    # Hidden MISSING nodes (e.g. `_automatic_semicolon`) are not reachable as children; the
    # S-expression shows them. Only built on the (rare) error path.
    sexp = str(root)
    if "(ERROR" in sexp or "(UNEXPECTED" in sexp:
        return False
    missing = _MISSING_NODE.findall(sexp)
    return bool(missing) and all(name in tolerated for name in missing)


def _first_error(root) -> str:
    stack = [root]
    while stack:
        node = stack.pop()
        if node.is_error or node.is_missing:
            row, column = node.start_point
            what = "MISSING " + node.type if node.is_missing else "ERROR"
            return f"{what} at line {row + 1}, column {column + 1}"
        if node.has_error:
            stack.extend(reversed(node.children))
    return "error node"


def tree_sitter_error(code: str, language: str) -> str | None:
    """None when ``code`` parses without ERROR/MISSING nodes in one of the language's grammars,
    else a short description of the first error."""
    spec = LANGUAGES[language]
    if spec.parse_prefix and not (spec.prefix_unless and spec.prefix_unless.search(code)):
        code = spec.parse_prefix + code
    data = (code + "\n").encode("utf-8")  # some grammars (Go) need the final newline a file would have
    first = None
    for grammar in spec.grammars:
        root = thread_parser(grammar).parse(data).root_node
        if not root.has_error:
            return None
        if spec.tolerated_missing and only_tolerated_errors(root, spec.tolerated_missing):
            return None
        if first is None:
            first = f"tree-sitter {grammar}: {_first_error(root)}"
    return first


# Compile-time warnings (invalid escapes, `is` with a literal...) are not errors. They are silenced by
# a filter on this pseudo file name rather than `warnings.catch_warnings()`, which is not thread safe.
SNIPPET_FILENAME = "<inverse_instruct_snippet>"
warnings.filterwarnings("ignore", module=re.escape(SNIPPET_FILENAME) + r"\Z")
_COMPILE_ERRORS = (SyntaxError, ValueError, RecursionError, MemoryError, OverflowError, TypeError)
_WARNINGS_LOCK = threading.Lock()


def compile_quietly(source, flags: int = 0):
    try:
        return compile(source, SNIPPET_FILENAME, "exec", flags, dont_inherit=True)
    except SyntaxError:
        if not any(action == "error" for action, *_ in warnings.filters):
            raise
    # A filter that turns warnings into errors (`python -W error`, pytest's filterwarnings) outranks
    # ours: retry with warnings ignored. Rare path; catch_warnings is not thread safe, hence the lock.
    with _WARNINGS_LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return compile(source, SNIPPET_FILENAME, "exec", flags, dont_inherit=True)


def compile_error_text(exc: BaseException) -> str:
    line = getattr(exc, "lineno", None)
    where = f" (line {line})" if line else ""
    return f"python compile: {type(exc).__name__}: {getattr(exc, 'msg', exc)}{where}"


def python_compile(code: str) -> tuple[types.CodeType | None, str | None]:
    """CPython's verdict on ``code`` as a module, from one compile: (code object, None) or (None, error)."""
    try:
        return compile_quietly(code), None
    except _COMPILE_ERRORS as exc:
        return None, compile_error_text(exc)


def python_compile_error(code: str) -> str | None:
    """CPython's verdict on ``code`` as a module, or None when it compiles."""
    return python_compile(code)[1]


_PYTHON_CODE_NODES = tuple(
    getattr(ast, name)
    for name in (
        "FunctionDef", "AsyncFunctionDef", "ClassDef", "Import", "ImportFrom", "Assign", "AugAssign",
        "AnnAssign", "For", "AsyncFor", "While", "If", "With", "AsyncWith", "Try", "TryStar", "Match",
        "Return", "Raise", "Assert", "Delete", "Global", "Nonlocal", "Call", "Lambda", "ListComp",
        "SetComp", "DictComp", "GeneratorExp",
    )
    if hasattr(ast, name)
)


def python_is_code(tree: ast.AST) -> bool:
    """False for a module that is only bare names/literals/operators: an answer, not code.

    An annotation without a value (``Max: 20`` is program output) is not evidence either."""
    return any(
        isinstance(node, _PYTHON_CODE_NODES) and not (isinstance(node, ast.AnnAssign) and node.value is None)
        for node in ast.walk(tree)
    )


def python_code_is_code(code: str, compiled: types.CodeType) -> bool:
    """``python_is_code`` of ``code``, which compiled to ``compiled``, without building its AST when it can.

    A nested code object is a function, class, lambda or comprehension of the module, all of which are code;
    without one (one-liners such as ``print(x)``, or ``42``) the AST decides."""
    if any(isinstance(const, types.CodeType) for const in compiled.co_consts):
        return True
    return python_is_code(compile_quietly(code, ast.PyCF_ONLY_AST))


def syntax_error(code: str, language: str) -> str | None:
    """None when ``code`` is valid ``language`` (CPython for Python, tree-sitter for the others), else why not."""
    if language == "python":
        return python_compile_error(code)
    return tree_sitter_error(code, language)
