"""Path access through Beam's filesystems, falling back to fsspec for schemes Beam does not know.

Beam's ``FileSystems`` covers local paths, ``gs://``, ``s3://`` and ``hdfs://`` (with the matching extras);
fsspec covers the rest (``memory://``, ``http(s)://``, ``abfs://``...). Every reader and writer in the
project goes through these two functions so that a new scheme works everywhere at once.
"""
from __future__ import annotations

import contextlib
import io
import logging
import posixpath
import uuid
from typing import IO, Callable, Iterator

from apache_beam.io.filesystems import FileSystems


def _beam_handles(path: str) -> bool:
    try:
        FileSystems.get_filesystem(path)
        return True
    except ValueError:
        return False


def match(pattern: str) -> list[str]:
    """Expand a path or glob to a sorted list of file paths (no directories)."""
    if _beam_handles(pattern):
        results = FileSystems.match([pattern])[0].metadata_list
        return sorted(m.path for m in results)
    import fsspec

    fs, _, paths = fsspec.get_fs_token_paths(pattern)
    protocol = fs.protocol[0] if isinstance(fs.protocol, (tuple, list)) else fs.protocol
    return sorted(fs.unstrip_protocol(p) if protocol not in ("file", "local") else p for p in paths if fs.isfile(p))


@contextlib.contextmanager
def open_binary(path: str) -> Iterator[IO[bytes]]:
    """Open ``path`` for binary reading, decompressing ``.gz``/``.bz2`` by extension."""
    if _beam_handles(path):
        # Beam infers compression from the extension by default.
        with FileSystems.open(path) as handle:
            yield handle
        return
    import fsspec

    with fsspec.open(path, "rb", compression="infer") as handle:
        yield handle


def open_seekable(path: str) -> IO[bytes]:
    """A seekable binary handle (Parquet needs random access); the caller closes it."""
    if _beam_handles(path):
        from apache_beam.io.filesystem import CompressionTypes

        return FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)
    import fsspec

    return fsspec.open(path, "rb").open()


def read_text(path: str) -> str:
    with open_binary(path) as handle:
        return io.TextIOWrapper(handle, encoding="utf-8").read()


LOG = logging.getLogger(__name__)


def atomic_write(path: str, write_body: Callable[[IO[bytes]], None]) -> None:
    """Write ``path`` (any fsspec URL) via ``write_body(file)`` to a hidden temp sibling, then rename it: a file
    only ever appears under its final name complete (local: ``os.replace``; an object store's upload is atomic
    per object). Readers that skip names starting with ``.`` never see a partial file."""
    import fsspec

    fs, local = fsspec.core.url_to_fs(path)
    parent = posixpath.dirname(local)
    if parent:
        fs.makedirs(parent, exist_ok=True)
    head, tail = posixpath.split(local)
    tmp = posixpath.join(head, f".{tail}.tmp-{uuid.uuid4().hex}")
    try:
        with fs.open(tmp, "wb") as raw:
            write_body(raw)
        fs.mv(tmp, local)
    except BaseException:
        try:
            if fs.exists(tmp):
                fs.rm(tmp)
        except Exception:  # cleanup is best effort; the original error matters
            LOG.warning("could not remove temp file %s", tmp)
        raise
