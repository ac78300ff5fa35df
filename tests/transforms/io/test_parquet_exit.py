"""Reading Parquet through a Python file object must not abort the process at exit.

``pq.read_table(python_file)`` scans a dataset whose async tasks can release the file on an Arrow thread after the
call returns; when that happens during interpreter shutdown, the thread needs the GIL, CPython ends it with
``pthread_exit`` and libstdc++ aborts: "terminate called without an active exception", exit 134, after a job
that did all its work (seen in about 1 of 8 extraction jobs: the report reads shard rows last). Column decoding on
Arrow's thread pool (``use_threads=True``, the default) drops the file's buffers there the same way (seen under
load), and so do Arrow's async reads of a Python file (its IO threads). The project reads Parquet with
``pq.ParquetFile`` and ``use_threads=False``, from Arrow's own file for local paths (``transforms.io.arrow_input``)."""
from __future__ import annotations

import ast
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq

from tests.conftest import REPO

PACKAGES = ("beam_pipelines", "transforms", "runners", "training", "schemas")

_READ_THEN_EXIT = """
import sys
from transforms.io.parquet import read_shard_rows
from transforms.decontam.benchmarks import read_rows
path = sys.argv[1]
for _ in range(2):
    assert len(read_shard_rows(path, ["n"])) == 20000
    assert len(list(read_rows("file://" + path))) == 20000
"""


PARQUET_FILE_MAKERS = {"ParquetFile", "open_parquet"}
READS = {"read", "iter_batches", "read_row_group", "read_row_groups"}
PYTHON_HANDLES = {"open", "open_seekable"}  # fs.open, fsspec.open, builtins.open: Python file objects


def _name(func: ast.AST) -> str | None:
    return func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)


def unsafe_parquet_reads(tree: ast.AST) -> list[int]:
    """Lines that call ``read_table``, read a ParquetFile (made in the call or bound to a name from one) without
    ``use_threads=False``, or make one straight from a Python handle (``open(...)``, ``fs.open``, ``open_seekable``)
    rather than through ``parquet_input``."""
    files = {target.id for node in ast.walk(tree) if isinstance(node, ast.Assign)
             and isinstance(node.value, ast.Call) and _name(node.value.func) in PARQUET_FILE_MAKERS
             for target in node.targets if isinstance(target, ast.Name)}
    lines = []
    for node in ast.walk(tree):  # with fs.open(...) as f: ... pq.ParquetFile(f) ...
        if isinstance(node, ast.With):
            handles = {item.optional_vars.id for item in node.items if isinstance(item.optional_vars, ast.Name)
                       and isinstance(item.context_expr, ast.Call) and _name(item.context_expr.func) in PYTHON_HANDLES}
            lines += [inner.lineno for statement in node.body for inner in ast.walk(statement)
                      if isinstance(inner, ast.Call) and _name(inner.func) == "ParquetFile" and inner.args
                      and isinstance(inner.args[0], ast.Name) and inner.args[0].id in handles]
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        if _name(node.func) == "read_table":
            lines.append(node.lineno)
        elif _name(node.func) == "ParquetFile" and node.args and isinstance(node.args[0], ast.Call) and _name(
                node.args[0].func) in PYTHON_HANDLES:
            lines.append(node.lineno)
        elif isinstance(node.func, ast.Attribute) and node.func.attr in READS:
            receiver = node.func.value
            is_file = (isinstance(receiver, ast.Call) and _name(receiver.func) in PARQUET_FILE_MAKERS) or (
                isinstance(receiver, ast.Name) and receiver.id in files)
            single = any(k.arg == "use_threads" and isinstance(k.value, ast.Constant) and k.value.value is False
                         for k in node.keywords)
            if is_file and not single:
                lines.append(node.lineno)
    return lines


def test_the_check_finds_each_unsafe_read():
    unsafe = """
import pyarrow.parquet as pq
t = pq.read_table(f)
pq.ParquetFile(f).read(columns=["a"])
parquet = pq.ParquetFile(f)
parquet.read()
open_parquet(p).iter_batches(batch_size=4)
open_parquet(p).read_row_group(0, use_threads=True)
rows = pq.ParquetFile(fs.open(local, "rb")).metadata.num_rows
pq.ParquetFile(open_seekable(path))
with fs.open(path, "rb") as f:
    pq.ParquetFile(f).metadata.num_rows
"""
    safe = """
parquet = pq.ParquetFile(f)
parquet.read(use_threads=False)
open_parquet(p).iter_batches(batch_size=4, use_threads=False)
pq.ParquetFile(f).metadata.num_rows
pq.ParquetFile(parquet_input(path, open_seekable))
with parquet_input(url, open_seekable) as f:
    pq.ParquetFile(f).read(use_threads=False)
handle.read(1 << 20)
"""
    assert sorted(unsafe_parquet_reads(ast.parse(unsafe))) == [3, 4, 6, 7, 8, 9, 10, 12]
    assert unsafe_parquet_reads(ast.parse(safe)) == []


def test_project_code_reads_parquet_on_the_calling_thread():
    sources = [path for package in PACKAGES for path in (REPO / package).rglob("*.py")]
    assert len(sources) > 50
    found = [f"{path.relative_to(REPO)}:{line}" for path in sources
             for line in unsafe_parquet_reads(ast.parse(path.read_text(encoding="utf-8")))]
    assert found == []


def test_reading_shard_rows_then_exiting_does_not_abort(tmp_path):
    path = tmp_path / "rows.parquet"
    pq.write_table(pa.table({"n": list(range(20000)), "text": ["x" * 40] * 20000}), path, row_group_size=2000)
    # With read_table, 2 of 3 such processes aborted here (each reads 4 times); 6 runs all pass with odds ~1e-3
    for run in range(6):
        done = subprocess.run([sys.executable, "-c", _READ_THEN_EXIT, str(path)], cwd=REPO, capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0 and "terminate called" not in done.stderr, (run, done.returncode,
                                                                                 done.stderr[-2000:])
