"""Random-access inputs for ``pyarrow.parquet``: Arrow's own file for a local path, a Python handle only for others.

Arrow reads a Python file object through callbacks, on its IO threads too (footer and column reads go through
``ReadAsync``), and such a thread can drop the last reference to a buffer the file returned after the read has
returned. If that happens while the interpreter exits, the thread needs the GIL, CPython ends it with
``pthread_exit``, and the process aborts ("terminate called without an active exception", exit 134, after a job
that did all its work; apache/arrow#39162, #50482). A ``pa.OSFile`` holds no Python object, so nothing of it needs
the GIL. Remote files keep the caller's Python handle (and ``use_threads=False`` on every read, which keeps column
decoding off Arrow's threads). No Beam import: ``training`` uses it too.
"""
from __future__ import annotations

from typing import IO, Any, Callable

import pyarrow as pa


def open_with_fsspec(url: str) -> IO[bytes]:
    import fsspec

    return fsspec.open(url, "rb").open()


def local_path(url: str) -> str | None:
    """The local file ``url`` names (a plain path or ``file://``), or None for any other scheme."""
    if url.startswith("file://"):
        return url[len("file://"):]
    return None if "://" in url else url


def parquet_input(url: str, open_remote: Callable[[str], IO[bytes]] = open_with_fsspec) -> Any:
    """A random-access input for ``pq.ParquetFile``: ``pa.OSFile`` for a local file, else ``open_remote(url)``
    (fsspec unless the caller has its own, ``transforms.io.filesystems.open_seekable``). The caller closes it (both
    are context managers)."""
    local = local_path(url)
    return pa.OSFile(local, "r") if local is not None else open_remote(url)
