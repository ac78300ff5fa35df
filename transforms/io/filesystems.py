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

from transforms.io.output_errors import OutputWriteError, writing  # noqa: F401 (OutputWriteError: re-exported)

# Schemes whose file system package an extra of setup.py installs (others name their package alone).
SCHEME_EXTRAS = {"gs": "gcp", "gcs": "gcp"}


class FilesystemUnavailable(ValueError):
    """A path whose scheme needs a file system package that is not installed here (``gs://`` without gcsfs): a
    mistake in the environment, reported in one line naming the package and how to install it."""

    @classmethod
    def of(cls, path: str, err: BaseException, what: str | None = None) -> FilesystemUnavailable:
        """For ``path`` (or a bare ``scheme://`` when the path is unknown) and fsspec's ImportError ``err``."""
        from fsspec.registry import known_implementations

        scheme = path.split("://", 1)[0]
        path = "" if path == f"{scheme}://" else f"{path}: "
        package = known_implementations.get(scheme, {}).get("class", "").split(".")[0]
        extra = SCHEME_EXTRAS.get(scheme)
        install = f"pip install -e '.[{extra}]'" if extra else f"pip install {package}" if package else None
        needs = f"the {package} package, which is not installed here" if package else "a package not installed here"
        return cls(f"{what + ' ' if what else ''}{path}{scheme}:// needs {needs} ({err})"
                   + (f"; install it with {install}" if install else ""))


def missing_package_message(err: BaseException) -> str | None:
    """One line naming the missing package and how to install it, when ``err`` is fsspec's ImportError for a
    scheme whose package is not installed ("Please install gcsfs to access Google Storage", raised by code that
    asks fsspec directly) or Beam's for its Google Cloud parts ("... please install apache_beam[gcp]"); else
    None."""
    if not isinstance(err, ImportError):
        return None
    text = str(err)
    if "apache_beam[gcp]" in text:
        return f"{text}: pip install -e '.[gcp]'"
    from fsspec.registry import known_implementations

    scheme = min((name for name, spec in known_implementations.items() if spec.get("err") == text),
                 key=len, default=None)  # gs rather than gcs
    return None if scheme is None else str(FilesystemUnavailable.of(f"{scheme}://", err))


def check_filesystem(path: str, what: str | None = None) -> None:
    """``FilesystemUnavailable`` when ``path``'s scheme needs a file system package that is not installed (fsspec
    opens every output and the cache, whichever of Beam's file systems is installed); an unknown scheme is left to
    the code that opens the path."""
    if "://" not in path:
        return
    import fsspec

    try:
        fsspec.get_filesystem_class(path.split("://", 1)[0])
    except ImportError as err:
        raise FilesystemUnavailable.of(path, err, what) from err
    except ValueError:  # a scheme fsspec does not know
        return


@contextlib.contextmanager
def _filesystem_of(path: str) -> Iterator[None]:
    """Around fsspec's resolution of ``path``'s file system (nothing else): a missing package is a
    ``FilesystemUnavailable``."""
    try:
        yield
    except ImportError as err:
        raise FilesystemUnavailable.of(path, err) from err


def _beam_handles(path: str) -> bool:
    try:
        filesystem = FileSystems.get_filesystem(path)
    except ValueError:
        return False
    return _beam_filesystem_usable(filesystem)


def _beam_filesystem_usable(filesystem) -> bool:
    """False for Beam's GCS file system without the Google Cloud client: Beam 2.78 registers it anyway and it fails
    on first use, so such paths go to fsspec (gcsfs, or the one-line error naming the package to install)."""
    if filesystem.scheme() != "gs":
        return True
    try:
        from apache_beam.io.gcp import gcsio
    except ImportError:
        return False
    return bool(getattr(gcsio, "GCS_INSTALLED", True))


def match(pattern: str) -> list[str]:
    """Expand a path or glob to a sorted list of file paths (no directories)."""
    if _beam_handles(pattern):
        results = FileSystems.match([pattern])[0].metadata_list
        return sorted(m.path for m in results)
    import fsspec

    with _filesystem_of(pattern):
        fs, _, paths = fsspec.get_fs_token_paths(pattern)
    protocol = fs.protocol[0] if isinstance(fs.protocol, (tuple, list)) else fs.protocol
    return sorted(fs.unstrip_protocol(p) if protocol not in ("file", "local") else p for p in paths if fs.isfile(p))


_STRICT_CODECS = {".gz": "gzip", ".bz2": "bz2", ".zst": "zstd", ".zstd": "zstd"}


def _codec(path: str) -> str | None:
    name = path.lower()
    return next((codec for suffix, codec in _STRICT_CODECS.items() if name.endswith(suffix)), None)


class _StrictZstdReader(io.RawIOBase):
    """Decompressed zstd frames, one after another. zstandard's own stream reader ends quietly where a truncated
    file stops; this one raises ``EOFError`` there, and ``OSError`` on corrupt data, as Python's gzip and bz2
    readers do."""

    def __init__(self, raw: IO[bytes]):
        import zstandard

        self._raw = raw
        self._new_frame = zstandard.ZstdDecompressor().decompressobj
        self._frame = None
        self._out = b""
        self._at = 0
        self._unused = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while self._at >= len(self._out):
            data = self._unused or self._raw.read(1 << 16)
            self._unused = b""
            if not data:
                if self._frame is not None and not self._frame.eof:
                    raise EOFError("compressed file ended before the end-of-stream marker was reached")
                return 0
            if self._frame is None or self._frame.eof:
                self._frame = self._new_frame()
            try:
                self._out, self._at = self._frame.decompress(data), 0
            except Exception as err:  # zstandard.ZstdError: corrupt data, an OSError as gzip and bz2 raise
                raise OSError(f"corrupt zstd data: {err}") from err
            if self._frame.eof:
                self._unused = self._frame.unused_data
        n = min(len(buffer), len(self._out) - self._at)
        buffer[:n] = self._out[self._at:self._at + n]
        self._at += n
        return n


def _decompressing(raw: IO[bytes], codec: str) -> IO[bytes]:
    if codec == "gzip":
        import gzip

        return gzip.GzipFile(fileobj=raw, mode="rb")
    if codec == "bz2":
        import bz2

        return bz2.BZ2File(raw, mode="rb")
    return io.BufferedReader(_StrictZstdReader(raw), buffer_size=1 << 20)


@contextlib.contextmanager
def open_binary(path: str) -> Iterator[IO[bytes]]:
    """Open ``path`` for binary reading, decompressing ``.gz``/``.bz2``/``.zst`` by extension.

    Those three are decompressed by readers that raise ``EOFError`` (or ``OSError``) on a truncated or corrupt
    file: Beam's decompressing reader and zstandard's stream reader take a cut-off stream for its end, so a
    half-copied corpus would be read short without a word. Other extensions Beam knows (``.deflate``...) it
    decompresses itself."""
    codec = _codec(path)
    if _beam_handles(path):
        from apache_beam.io.filesystem import CompressionTypes

        if codec is None:  # Beam infers any other compression from the extension
            with FileSystems.open(path) as handle:
                yield handle
            return
        with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as raw:
            with _decompressing(raw, codec) as handle:
                yield handle
        return
    import fsspec

    with _filesystem_of(path):
        opened = fsspec.open(path, "rb", compression="infer" if codec is None else None)
    if codec is None:
        with opened as handle:
            yield handle
        return
    with opened as raw, _decompressing(raw, codec) as handle:
        yield handle


def open_seekable(path: str) -> IO[bytes]:
    """A seekable binary handle (Parquet needs random access); the caller closes it."""
    if _beam_handles(path):
        from apache_beam.io.filesystem import CompressionTypes

        return FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)
    import fsspec

    with _filesystem_of(path):
        opened = fsspec.open(path, "rb")
    return opened.open()


def read_text(path: str) -> str:
    with open_binary(path) as handle:
        return io.TextIOWrapper(handle, encoding="utf-8").read()


LOG = logging.getLogger(__name__)


class _WriteErrorsNamed(io.RawIOBase):
    """A writable sink whose ``OSError`` (ENOSPC, EIO...) is an ``OutputWriteError`` naming the file."""

    def __init__(self, raw: IO[bytes], path: str):
        super().__init__()
        self._raw, self._path, self._written = raw, path, 0

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        size = memoryview(data).nbytes
        with writing(self._path):
            self._raw.write(data)
        self._written += size
        return size

    def tell(self) -> int:
        return self._written


def atomic_write(path: str, write_body: Callable[[IO[bytes]], None]) -> None:
    """Write ``path`` (any fsspec URL) via ``write_body(file)`` to a hidden temp sibling, then rename it: a file
    only ever appears under its final name complete (local: ``os.replace``; an object store's upload is atomic
    per object). Readers that skip names starting with ``.`` never see a partial file. A directory at ``path`` is
    an ``OutputWriteError``."""
    import fsspec

    with _filesystem_of(path):
        fs, local = fsspec.core.url_to_fs(path)
    parent = posixpath.dirname(local)
    head, tail = posixpath.split(local)
    tmp = posixpath.join(head, f".{tail}.tmp-{uuid.uuid4().hex}")
    try:
        with writing(path):
            if fs.isdir(local):  # the rename would move the file into it, and the write would seem to succeed
                raise IsADirectoryError("a directory is in its place (remove or rename it)")
            if parent:
                fs.makedirs(parent, exist_ok=True)
            raw = fs.open(tmp, "wb")
        try:
            # Only the sink's own errors are about writing; write_body's (a bug, a failed read) pass unchanged.
            write_body(_WriteErrorsNamed(raw, path))
        except BaseException:
            with contextlib.suppress(Exception):
                raw.close()
            raise
        with writing(path):
            raw.close()
            fs.mv(tmp, local)
    except BaseException:
        try:
            if fs.exists(tmp):
                fs.rm(tmp)
        except Exception:  # cleanup is best effort; the original error matters
            LOG.warning("could not remove temp file %s", tmp)
        raise
