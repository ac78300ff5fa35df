"""Clean code for false-positive checks: every module- and class-level function of the Python stdlib
(tests excluded), as records (docstring as the instruction, the function as the code), the way
``tests/test_decontam_planted.py`` builds its clean set."""
from __future__ import annotations

import ast
import os
import sysconfig

SKIPPED_DIRS = {"site-packages", "test", "tests", "idlelib", "lib2to3"}


def stdlib_functions() -> list[dict[str, str]]:
    root = sysconfig.get_paths()["stdlib"]
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIPPED_DIRS)
        for name in sorted(filenames):
            if not name.endswith(".py"):
                continue
            try:
                with open(os.path.join(dirpath, name), encoding="utf-8") as f:
                    source = f.read()
                tree = ast.parse(source)
            except (SyntaxError, UnicodeDecodeError, ValueError):
                continue
            lines = source.splitlines(keepends=True)
            for node in tree.body:
                for fn in node.body if isinstance(node, ast.ClassDef) else [node]:
                    if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                        out.append({"id": f"{name}:{fn.name}", "instruction": ast.get_docstring(fn) or "",
                                    "code": "".join(lines[fn.lineno - 1:fn.end_lineno])})
    return out
