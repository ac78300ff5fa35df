"""Records parked in files while a small handle crosses a shuffle in their place. Pure (no Beam).

An in-process runner (the DirectRunner, a Portable embed job) holds every element of a GroupByKey in memory
until the whole shuffle is done, decoded and re-encoded in several buffers: about 4 KB of RSS per packed
1 KB record in the extraction job, which made its peak memory grow with the corpus. A stage that must group
whole records by a key (exact dedup, the Parquet writer) can instead append each record, pickled, to its
bundle's spill file and shuffle a 28-byte handle; the grouped side reads the records back by handle, one group at
a time. Spilled records are not compressed as packed ones are (``transforms.io.packed``): they wait on disk, and
zstd cost four times the pickling (10.5 against 2 us per 1 KB snippet).

A handle is only readable once the bundle that wrote it has finished (``SpillWriter.close`` in
``finish_bundle``); readers always sit behind a GroupByKey, which waits for every producing bundle. A bundle
that fails leaves a file no committed handle points to; the whole spill directory is removed at the end.

The directory must be visible to every worker that reads the handles: a local path serves local runners (the
DirectRunner in any mode, a Portable LOOPBACK job); distributed runners shuffle on disk already and do not
spill (see ``transforms.io.options.resolve_spill_dir``).
"""
from __future__ import annotations

import os
import pickle
import posixpath
import re
import shutil
import socket
import struct
import uuid
from typing import IO, Any

from transforms.io.output_errors import writing
from transforms.io.packed import pack, unpack

_HANDLE = struct.Struct(">16sQI")  # file token, offset, length
HANDLE_BYTES = _HANDLE.size  # 28


def _is_local(path: str) -> bool:
    return "://" not in path or path.startswith("file://")


def _local(path: str) -> str:
    return path[len("file://"):] if path.startswith("file://") else path


def spill_file(directory: str, token: bytes) -> str:
    return posixpath.join(directory.rstrip("/"), token.hex() + ".spill")


def new_spill_dir(parent: str, name: str) -> str:
    """A fresh, unique directory name under ``parent`` (created on first write)."""
    return posixpath.join(parent.rstrip("/"), f"{name}-{uuid.uuid4().hex[:12]}")


JOB_SPILL_NAME = "inverse-instruct-spill"
# A directory's owner, as named in it: host before pid (a hostname may hold "-", a pid never does, so the last
# number is the pid). Progress directories name their owner the same way (``transforms.stats.progress``).
OWNER_PATTERN = r"(?P<host>[A-Za-z0-9._-]+)-(?P<pid>\d+)"
_JOB_SPILL_DIR = re.compile(re.escape(JOB_SPILL_NAME) + "-" + OWNER_PATTERN + r"-[0-9a-f]{12}")


def host_tag() -> str:
    """This host's name as it appears in spill directory names (only characters safe in a path)."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", socket.gethostname())[:64] or "unknown-host"


def new_job_spill_dir(parent: str) -> str:
    """A job's spill directory under ``parent``, named for the launching host and process so that a later job
    on the same host can tell the directory of a killed job (``remove_orphaned_spill_dirs``)."""
    return new_spill_dir(parent, f"{JOB_SPILL_NAME}-{host_tag()}-{os.getpid()}")


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def owner_gone(owner: re.Match) -> bool:
    """Whether the owner an ``OWNER_PATTERN`` match names is a process of this host that has ended. Another host's
    pid means nothing here, and a reused pid keeps its directory: the safe direction."""
    return owner.group("host") == host_tag() and not _process_alive(int(owner.group("pid")))


def remove_orphaned_spill_dirs(parent: str) -> list[str]:
    """Remove the job spill directories under a local ``parent`` whose launching process is gone (a killed job
    never reached its clean-up); returns their paths. Only this host's directories are judged: a pid means
    nothing on another host sharing the filesystem, and directories named without a host (older releases) are
    left alone too. A reused pid keeps its directory: the safe direction."""
    if not _is_local(parent) or not os.path.isdir(_local(parent)):
        return []
    removed = []
    for entry in os.scandir(_local(parent)):
        match = _JOB_SPILL_DIR.fullmatch(entry.name)
        if match and entry.is_dir(follow_symlinks=False) and owner_gone(match):
            shutil.rmtree(entry.path, ignore_errors=True)
            removed.append(entry.path)
    return removed


class SpillWriter:
    """Appends pickled records to one new file under ``directory``; ``append`` returns the record's handle."""

    def __init__(self, directory: str):
        self._token = uuid.uuid4().bytes
        self._path = spill_file(directory, self._token)
        self._offset = 0
        self._file: IO[bytes] | None = None

    def append(self, record: Any) -> bytes:
        data = pickle.dumps(record, protocol=pickle.HIGHEST_PROTOCOL)
        with writing(self._path):
            if self._file is None:
                self._file = _open_for_append(self._path)
            self._file.write(data)
        handle = _HANDLE.pack(self._token, self._offset, len(data))
        self._offset += len(data)
        return handle

    def close(self) -> None:
        if self._file is not None:
            file, self._file = self._file, None
            with writing(self._path):
                file.close()


def _open_for_append(path: str) -> IO[bytes]:
    if _is_local(path):
        local = _local(path)
        os.makedirs(os.path.dirname(local), exist_ok=True)
        return open(local, "wb")
    import fsspec

    return fsspec.open(path, "wb", auto_mkdir=True).open()


class SpillReader:
    """Reads records back by handle; keeps the files it has opened open until ``close``."""

    def __init__(self, directory: str):
        self._directory = directory
        self._local = _is_local(directory)
        self._files: dict[bytes, Any] = {}

    def _file(self, token: bytes):
        handle = self._files.get(token)
        if handle is None:
            path = spill_file(self._directory, token)
            if self._local:
                handle = os.open(_local(path), os.O_RDONLY)
            else:
                import fsspec

                handle = fsspec.open(path, "rb").open()
            self._files[token] = handle
        return handle

    def read(self, handle: bytes) -> Any:
        token, offset, length = _HANDLE.unpack(handle)
        source = self._file(token)
        if self._local:
            data = os.pread(source, length, offset)
        else:
            source.seek(offset)
            data = source.read(length)
        if len(data) != length:
            raise OSError(f"spill file {spill_file(self._directory, token)} is truncated at offset {offset}")
        return pickle.loads(data)

    def close(self) -> None:
        for source in self._files.values():
            if self._local:
                os.close(source)
            else:
                source.close()
        self._files.clear()


def remove_spill_dir(directory: str) -> None:
    """Delete a spill directory and everything in it (best effort: a missing directory is fine)."""
    if _is_local(directory):
        shutil.rmtree(_local(directory), ignore_errors=True)
        return
    import fsspec

    fs, path = fsspec.core.url_to_fs(directory)
    if fs.exists(path):
        fs.rm(path, recursive=True)


class RecordStash:
    """What a record crosses a shuffle as: its spill handle under ``directory``, or with no directory the packed
    record (``transforms.io.packed``). One per bundle; ``close`` makes the bundle's handles readable."""

    def __init__(self, directory: str | None):
        self._writer = SpillWriter(directory) if directory else None

    def put(self, record: Any) -> bytes:
        return self._writer.append(record) if self._writer else pack(record)

    def close(self) -> None:
        if self._writer:
            self._writer.close()


class RecordFetch:
    """The record back from what ``RecordStash.put`` gave, on the other side of the shuffle."""

    def __init__(self, directory: str | None):
        self._reader = SpillReader(directory) if directory else None

    def get(self, value: bytes) -> Any:
        return self._reader.read(value) if self._reader else unpack(value)

    def close(self) -> None:
        if self._reader:
            self._reader.close()
