"""Records as compact bytes while they wait in a shuffle (a GroupByKey or a Flatten). Pure.

A runner holds every element of a shuffle until the shuffle is complete; the in-process DirectRunner holds
them in memory, decoded. A CODE_SNIPPET of 1 KB of code is ~2.6 KB as a Python dict; packed (pickled, then
zstd level 1) it is ~0.45 KB, for ~10 us to pack and ~7 us to unpack. Stages that shuffle whole records (exact
dedup, the Parquet writer) carry them packed and unpack them once, where they are used.
"""
from __future__ import annotations

import pickle
import threading
from typing import Any

import zstandard

_LEVEL = 1  # the fastest level: ~2x on code, the point is memory, not archival size
_local = threading.local()  # zstd contexts are not thread safe


def _contexts() -> tuple[zstandard.ZstdCompressor, zstandard.ZstdDecompressor]:
    contexts = getattr(_local, "contexts", None)
    if contexts is None:
        contexts = _local.contexts = (zstandard.ZstdCompressor(level=_LEVEL), zstandard.ZstdDecompressor())
    return contexts


def pack(record: Any) -> bytes:
    """``record`` (any picklable value) as compressed bytes; :func:`unpack` gives it back."""
    return _contexts()[0].compress(pickle.dumps(record, protocol=pickle.HIGHEST_PROTOCOL))


def unpack(packed: bytes) -> Any:
    return pickle.loads(_contexts()[1].decompress(packed))
