"""Disguised copies of HumanEval items, made independently of the code under test.

Nothing here imports ``transforms.decontam`` (not ``planting``, not the normalizer): every disguise is
written fresh with ``ast``, ``tokenize`` and plain text edits, so a test built on it measures what the
decontamination catches, not what its own normalizer was designed to erase.

Each disguise takes a HumanEval row (``prompt``, ``canonical_solution``, ``entry_point``) and returns a
record ``{"instruction": ..., "code": ...}``. The code disguises keep the program working: ``program_for_check``
gives the source and the callable to hand to HumanEval's ``check``, and the tests run them.

The renaming disguise renames every name the code binds locally (variables, loop and comprehension
targets, nested functions and their parameters, helpers' parameters), including locals that shadow a
builtin (`sum`, `max`, `str`), but keeps the entry point's name and parameters: they are the task's
interface. A copy that renames the interface too and is only a few tokens long (`return x + y`) carries
nothing that tells it from any other function.
"""
from __future__ import annotations

import ast
import builtins
import copy
import inspect
import io
import re
import tokenize
from typing import Callable

Record = dict[str, str]

_BUILTINS = frozenset(dir(builtins))


# ------------------------------------------------------------------------------------------- helpers


def full_program(row: dict) -> str:
    return row["prompt"] + row["canonical_solution"]


def strip_docstrings(source: str) -> str:
    """Every function/class/module docstring cut out (whole lines), other text untouched. A body left
    empty gets ``pass`` (HumanEval bodies never are, but helpers might)."""
    tree = ast.parse(source)
    cuts = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Module)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                cuts.append((body[0].lineno, body[0].end_lineno, len(body) == 1))
    lines = source.splitlines(keepends=True)
    for first, last, was_only in sorted(cuts, reverse=True):
        indent = re.match(r"[ \t]*", lines[first - 1]).group()
        lines[first - 1:last] = [indent + "pass\n"] if was_only else []
    return "".join(lines)


def reindent(source: str, width: int) -> str:
    """Indentation rewritten to ``width`` spaces per level, from the INDENT/DEDENT structure that
    ``tokenize`` reports; continuation lines inside brackets move with their statement; lines inside a
    multi-line string are left alone."""
    lines = source.splitlines(keepends=True)
    depth_of_line: dict[int, int] = {}  # first line of a logical line -> its depth
    inside_string: set[int] = set()
    depth = 0
    at_line_start = True
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.INDENT:
            depth += 1
        elif tok.type == tokenize.DEDENT:
            depth -= 1
        elif tok.type in (tokenize.NEWLINE, tokenize.NL):
            at_line_start = True
        elif tok.type not in (tokenize.COMMENT, tokenize.ENDMARKER):
            if at_line_start:
                depth_of_line[tok.start[0]] = depth
                at_line_start = False
            if tok.type == tokenize.STRING and tok.end[0] > tok.start[0]:
                inside_string.update(range(tok.start[0] + 1, tok.end[0] + 1))
    out = []
    current = 0
    for number, line in enumerate(lines, 1):
        if number in inside_string or not line.strip():
            out.append(line)
            continue
        if number in depth_of_line:
            current = depth_of_line[number]
            out.append(" " * (width * current) + line.lstrip(" \t"))
        else:  # a continuation line or a comment line: one level deeper than its statement
            out.append(" " * (width * current + (2 * width if not line.lstrip().startswith("#") else 0))
                       + line.lstrip(" \t"))
    return "".join(out)


_EXAMPLE_LINE = re.compile(r"^\s*(>>>|[Ff]or [Ee]xample|[Ee]xamples?\b|[Ee]\.g\.|[Nn]ote:)"
                           r"|\w+\(.*\)\s*(==|=>|➞|->|should)")


def entry_docstring(prompt: str, entry_point: str) -> str:
    """The first string literal after ``def entry_point`` (HumanEval/115 has an import before it, so it
    is no docstring to ``ast``), its quotes and common indentation removed."""
    after_def = False
    for tok in tokenize.generate_tokens(io.StringIO(prompt).readline):
        if tok.type == tokenize.NAME and tok.string == entry_point and after_def is None:
            after_def = True
        elif tok.type == tokenize.NAME and tok.string == "def":
            after_def = None
        elif tok.type == tokenize.STRING and after_def:
            return inspect.cleandoc(ast.literal_eval(tok.string))
    return ""


def docstring_prose(prompt: str, entry_point: str) -> str:
    """The entry point's docstring up to its first example line, on one line with single spaces."""
    doc = entry_docstring(prompt, entry_point)
    kept = []
    for line in doc.splitlines():
        if _EXAMPLE_LINE.search(line):
            break
        kept.append(line)
    return " ".join(" ".join(kept).split())


# --------------------------------------------------------------------------------------- renaming


def _bound_names(fn: ast.FunctionDef, keep_params: bool) -> set[str]:
    """Names the function binds in its own body (nested scopes included)."""
    names: set[str] = set()
    if not keep_params:
        names.update(a.arg for a in fn.args.posonlyargs + fn.args.args + fn.args.kwonlyargs)
        names.update(a.arg for a in (fn.args.vararg, fn.args.kwarg) if a is not None)
    for stmt in fn.body:
        for node in ast.walk(stmt):
            if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
                names.add(node.id)
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                names.add(node.name)
                names.update(a.arg for a in node.args.posonlyargs + node.args.args + node.args.kwonlyargs)
            elif isinstance(node, ast.Lambda):
                names.update(a.arg for a in node.args.args)
            elif isinstance(node, ast.ExceptHandler) and node.name:
                names.add(node.name)
            elif isinstance(node, (ast.Global, ast.Nonlocal)):
                names.difference_update(node.names)
    if keep_params:  # a parameter the body reassigns is still the interface
        names.difference_update(a.arg for a in fn.args.posonlyargs + fn.args.args + fn.args.kwonlyargs)
    return names


class _Renamer(ast.NodeTransformer):
    def __init__(self, mapping: dict[str, str]) -> None:
        self.mapping = mapping

    def visit_Name(self, node: ast.Name) -> ast.Name:
        node.id = self.mapping.get(node.id, node.id)
        return node

    def visit_arg(self, node: ast.arg) -> ast.arg:
        node.arg = self.mapping.get(node.arg, node.arg)
        return node

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.FunctionDef:
        node.name = self.mapping.get(node.name, node.name)
        self.generic_visit(node)
        return node


_WORDS = ["acc", "cur", "item", "buf", "val", "idx", "tmp", "out", "seen", "part", "step", "mark"]


def rename_locals(tree: ast.Module, entry_point: str) -> ast.Module:
    """Rename, per top-level function, every name it binds; the entry point keeps its parameters.
    Names that shadow builtins are renamed too."""
    tree = copy.deepcopy(tree)
    counter = 0
    for fn in tree.body:
        if not isinstance(fn, ast.FunctionDef):
            continue
        mapping = {}
        for name in sorted(_bound_names(fn, keep_params=fn.name == entry_point)):
            mapping[name] = f"{_WORDS[counter % len(_WORDS)]}_{counter}"
            counter += 1
        renamer = _Renamer(mapping)
        for arg in fn.args.posonlyargs + fn.args.args + fn.args.kwonlyargs:
            renamer.visit(arg)
        fn.body = [renamer.visit(stmt) for stmt in fn.body]
    return tree


# ------------------------------------------------------------------------------------- reordering

_PURE_CALLS = frozenset({"len", "int", "str", "float", "list", "set", "dict", "tuple", "sorted", "abs", "sum",
                         "min", "max", "range", "ord", "chr", "bool", "reversed", "enumerate", "zip"})


def _reads_writes(stmt: ast.stmt) -> tuple[set[str], set[str]] | None:
    """(names read, names written) of a simple assignment whose only calls are pure builtins; None for
    anything else (a statement we will not move)."""
    if not isinstance(stmt, (ast.Assign, ast.AugAssign)):
        return None
    reads, writes = set(), set()
    for node in ast.walk(stmt):
        if isinstance(node, ast.Call) and not (isinstance(node.func, ast.Name) and node.func.id in _PURE_CALLS):
            return None
        if isinstance(node, (ast.Attribute, ast.Subscript)) and isinstance(node.ctx, ast.Store):
            return None  # mutates an object someone else may read
        if isinstance(node, ast.Name):
            (writes if isinstance(node.ctx, ast.Store) else reads).add(node.id)
    if isinstance(stmt, ast.AugAssign):
        reads.update(writes)
    return reads, writes


def _reorder_body(body: list[ast.stmt]) -> int:
    swaps = 0
    i = 0
    while i + 1 < len(body):
        a, b = _reads_writes(body[i]), _reads_writes(body[i + 1])
        if a and b and not (a[1] & (b[0] | b[1])) and not (b[1] & a[0]):
            body[i], body[i + 1] = body[i + 1], body[i]
            swaps += 1
            i += 2
        else:
            i += 1
    return swaps


def reorder_independent(tree: ast.Module) -> tuple[ast.Module, int]:
    """Swap adjacent independent assignments in every statement list; (tree, number of swaps)."""
    tree = copy.deepcopy(tree)
    swaps = 0
    for node in ast.walk(tree):
        for field in ("body", "orelse", "finalbody"):
            stmts = getattr(node, field, None)
            if isinstance(stmts, list) and stmts and isinstance(stmts[0], ast.stmt):
                swaps += _reorder_body(stmts)
    return tree, swaps


# ------------------------------------------------------------------------------------- type hints


class _DropHints(ast.NodeTransformer):
    def visit_arg(self, node: ast.arg) -> ast.arg:
        node.annotation = None
        return node

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.FunctionDef:
        node.returns = None
        self.generic_visit(node)
        return node

    def visit_AnnAssign(self, node: ast.AnnAssign):
        if node.value is None:
            return None
        return ast.copy_location(ast.Assign(targets=[node.target], value=node.value), node)

    def visit_ImportFrom(self, node: ast.ImportFrom):
        return None if node.module == "typing" else node


# ---------------------------------------------------------------------------------------- comments

_COMMENTS = ["# first things first", "# TODO: double-check this later", "# this is the main part",
             "# careful with the edge cases here", "# works for the examples I tried", "# keep going"]


def add_comments(source: str) -> str:
    """A comment line above every other statement line and a trailing comment on the rest (never inside
    a multi-line string or bracket)."""
    statement_lines = set()
    open_lines = set()
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.NEWLINE:
            statement_lines.add(tok.start[0])
        if tok.end[0] > tok.start[0]:
            open_lines.update(range(tok.start[0], tok.end[0]))
    out = []
    for number, line in enumerate(source.splitlines(), 1):
        if number in statement_lines and number not in open_lines and line.strip():
            indent = line[:len(line) - len(line.lstrip())]
            comment = _COMMENTS[number % len(_COMMENTS)]
            if number % 2:
                out.append(f"{indent}{comment}")
                out.append(line)
            else:
                out.append(f"{line}  {comment}")
        else:
            out.append(line)
    return "\n".join(out) + "\n"


# ------------------------------------------------------------------------------------ class method


class _SelfCalls(ast.NodeTransformer):
    def __init__(self, name: str) -> None:
        self.name = name

    def visit_Call(self, node: ast.Call) -> ast.Call:
        self.generic_visit(node)
        if isinstance(node.func, ast.Name) and node.func.id == self.name:
            node.func = ast.Attribute(value=ast.Name("self", ast.Load()), attr=self.name, ctx=ast.Load())
        return node


def as_method(tree: ast.Module, entry_point: str, class_name: str = "Solution") -> ast.Module:
    """The entry point moved into ``class Solution`` as a method (``self`` first; its recursive calls go
    through ``self``); everything else stays at module level."""
    tree = copy.deepcopy(tree)
    body = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == entry_point:
            node.args.args.insert(0, ast.arg("self"))
            node = _SelfCalls(entry_point).visit(node)
            body.append(ast.ClassDef(name=class_name, bases=[], keywords=[], body=[node], decorator_list=[]))
        else:
            body.append(node)
    tree.body = body
    return ast.fix_missing_locations(tree)


# --------------------------------------------------------------------------------------- disguises

_CHAT = [
    "hey so my prof gave us this one for homework and I'm kinda lost: {}. could you do it in python? thx!!",
    "Quick question (interview prep). The task: {} -- what would a clean solution look like? Please explain.",
    "I need help with the following. {} I tried a couple of things but none worked, any ideas?",
]


def stripped_two_space(row: dict) -> Record:
    code = reindent(strip_docstrings(full_program(row)), 2)
    return {"instruction": "Can you check my code?", "code": code}


def short_docstring_chat(row: dict, variant: int = 0) -> Record:
    prose = docstring_prose(row["prompt"], row["entry_point"])
    return {"instruction": _CHAT[variant % len(_CHAT)].format(prose.rstrip(".")), "code": ""}


def renamed_reordered(row: dict) -> Record:
    tree = ast.parse(strip_docstrings(full_program(row)))
    tree, _ = reorder_independent(rename_locals(tree, row["entry_point"]))
    return {"instruction": "Here is my solution.", "code": ast.unparse(tree) + "\n"}


def no_type_hints(row: dict) -> Record:
    tree = _DropHints().visit(ast.parse(strip_docstrings(full_program(row))))
    return {"instruction": "Write the function.", "code": ast.unparse(ast.fix_missing_locations(tree)) + "\n"}


def comments_added(row: dict) -> Record:
    return {"instruction": "Explain this code.", "code": add_comments(strip_docstrings(full_program(row)))}


def class_method(row: dict) -> Record:
    tree = as_method(ast.parse(strip_docstrings(full_program(row))), row["entry_point"])
    return {"instruction": "Refactor into a class.", "code": ast.unparse(tree) + "\n"}


DISGUISES: dict[str, Callable[[dict], Record]] = {
    "stripped_two_space": stripped_two_space,
    "short_docstring_chat": short_docstring_chat,
    "renamed_reordered": renamed_reordered,
    "no_type_hints": no_type_hints,
    "comments_added": comments_added,
    "class_method": class_method,
}
CODE_DISGUISES = tuple(k for k in DISGUISES if k != "short_docstring_chat")


def program_for_check(name: str, record: Record, entry_point: str) -> tuple[str, str]:
    """(source to exec, expression of the callable to hand to HumanEval's ``check``) for a code disguise."""
    if name == "class_method":  # some tests name the function itself, not only ``candidate``
        return record["code"] + f"\n{entry_point} = Solution().{entry_point}\n", entry_point
    return record["code"], entry_point


def disguise_all(rows: list[dict]) -> dict[str, list[tuple[str, Record]]]:
    """{disguise: [(task_id, record)]} for every row."""
    out: dict[str, list[tuple[str, Record]]] = {name: [] for name in DISGUISES}
    for i, row in enumerate(rows):
        for name, make in DISGUISES.items():
            record = make(row, i) if name == "short_docstring_chat" else make(row)
            out[name].append((row["task_id"], record))
    return out


def describe_change(original: str, disguised: str) -> float:
    """Fraction of the original's lines that survive verbatim in the disguise (lower = more disguised)."""
    lines = [line.strip() for line in original.splitlines() if line.strip()]
    kept = {line.strip() for line in disguised.splitlines()}
    return sum(line in kept for line in lines) / max(1, len(lines))


__all__ = ["DISGUISES", "CODE_DISGUISES", "disguise_all", "program_for_check", "docstring_prose",
           "strip_docstrings", "reindent", "rename_locals", "reorder_independent", "add_comments", "as_method",
           "describe_change"]
