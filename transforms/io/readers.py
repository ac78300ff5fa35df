"""Corpus reading, the pure part: formats, column checks, rows of JSON/JSONL files, source-tree files, and the
SOURCE_PAIR record. The Beam readers (``ReadSourcePairs``, ``ReadSourceTree``) are in ``transforms.io.beam``.

Every reader's result is a ``StageOutput`` (SOURCE_PAIR records and dead letters), and records carry provenance:
``source_uri`` and ``source_row`` (row number in a table file, 1-based start line of the definition in a source
file).

Parquet is read one row group at a time (streaming; row groups are the unit of parallelism after a
reshuffle). Beam's ``ReadFromParquet`` splits the same way but cannot tell which row a record came from,
and the row is part of every record's provenance, so the reader opens row groups itself with pyarrow.

A UTF-8 byte order mark at the start of a JSON or JSON Lines file is skipped (JSON forbids one, editors write one).
A file that cannot be read to its end (a truncated ``.gz``/``.bz2``/``.zst``, a Parquet row group whose data is
corrupt) raises ``CorpusConfigError``: the records past the cut are unknown, so no dead letter could stand for them.

Configuration errors (no file matches, a missing or mistyped column, a corrupt Parquet footer) raise
``CorpusConfigError`` naming the column and the file, at pipeline construction (every Parquet footer and every
JSON/JSONL file's first record are checked then) or at run time for what only a full read shows.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import sysconfig
import zlib
from typing import IO, Any, Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from schemas.records import content_id, lone_surrogate_at
from transforms.io import filesystems
from transforms.io.arrow_input import parquet_input
from transforms.io.source_tree import UndecodableSource, iter_definitions, language_for_path

READ_STAGE = "read"


class CorpusConfigError(ValueError):
    """The corpus cannot be read as configured (wrong path, column or format)."""


def short_text(text: Any, limit: int = 200) -> str:
    """``text`` for a message: a 5,000-digit number or a 10 MB item is cut to ``limit`` characters."""
    text = str(text)
    return text if len(text) <= limit else f"{text[:limit]}...<{len(text) - limit} more characters>"


@dataclasses.dataclass(frozen=True)
class ColumnMapping:
    """Which columns of a corpus hold the instruction and the response.

    ``input`` is an optional extra-context column (Code Alpaca's ``input``); when non-empty it is appended
    to the instruction after a blank line, as Code Alpaca's own prompt does (it is the instruction when that is
    null). An input that is not text or null, or bytes that are not UTF-8, makes its row a dead letter.
    """

    instruction: str | None = "instruction"
    response: str = "response"
    input: str | None = None

    def __post_init__(self):
        for flag, name in (("--instruction-column", self.instruction), ("--response-column", self.response),
                           ("--input-column", self.input)):
            if name is not None and not name.strip():
                raise CorpusConfigError(f"{flag} is empty ({name!r}); give the name of a column")

    @property
    def columns(self) -> list[str]:
        return [c for c in (self.instruction, self.input, self.response) if c]

    @property
    def required(self) -> list[str]:
        """The columns every record must have: the optional ``input`` may be missing from a record."""
        return [c for c in (self.instruction, self.response) if c]


def detect_format(path: str) -> str:
    name = path.lower()
    for suffix in (".gz", ".bz2", ".zst"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    if name.endswith(".parquet") or name.endswith(".pq"):
        return "parquet"
    if name.endswith(".jsonl") or name.endswith(".ndjson"):
        return "jsonl"
    if name.endswith(".json"):
        return "json"
    raise CorpusConfigError(
        f"cannot tell the format of {path!r} from its name: the formats read are Parquet (.parquet, .pq), JSON "
        f"Lines (.jsonl, .ndjson) and a JSON array (.json), each optionally .gz/.bz2/.zst (no CSV or plain text); "
        f"rename it or pass --input-format parquet, jsonl or json")


_TEXT_TYPES = (pa.string(), pa.large_string(), pa.string_view(), pa.binary(), pa.large_binary(), pa.binary_view(),
               pa.null())


def check_parquet_columns(schema: pa.Schema, mapping: ColumnMapping, path: str) -> None:
    for column in mapping.columns:
        if column not in schema.names:
            raise CorpusConfigError(
                f"column {column!r} is missing from {path} (it has: {', '.join(schema.names)}); "
                f"set --instruction-column/--response-column/--input-column"
            )
        field_type = schema.field(column).type
        if field_type not in _TEXT_TYPES and not pa.types.is_dictionary(field_type):
            raise CorpusConfigError(f"column {column!r} of {path} has type {field_type}, expected a string column")


def open_parquet(path: str) -> pq.ParquetFile:
    try:
        return pq.ParquetFile(parquet_input(path, filesystems.open_seekable))  # see transforms.io.arrow_input
    except (pa.ArrowInvalid, OSError) as err:
        raise CorpusConfigError(f"{path} is not a readable Parquet file: {err}") from err


def _holds_text(column_type: pa.DataType) -> bool:
    if pa.types.is_dictionary(column_type):
        column_type = column_type.value_type
    return (pa.types.is_string(column_type) or pa.types.is_large_string(column_type)
            or pa.types.is_string_view(column_type))


def parquet_rows(table: pa.Table) -> Iterator[tuple[dict[str, Any], tuple[str, str] | None]]:
    """``(raw, problem)`` for every row of a Parquet row group. A string cell that is not valid UTF-8 (Parquet
    does not check what writers put in a string column) makes its row a ``not_utf8`` dead letter, with the cells
    as bytes; the other rows of the row group are read as usual."""
    try:
        yield from ((raw, None) for raw in table.to_pylist())  # converted whole before the first row is yielded
        return
    except UnicodeDecodeError:
        pass
    texts = [name for name, column in zip(table.column_names, table.columns) if _holds_text(column.type)]
    values = {name: (column.cast(pa.large_binary()) if name in texts else column).to_pylist()
              for name, column in zip(table.column_names, table.columns)}
    for i in range(table.num_rows):
        raw = {name: values[name][i] for name in table.column_names}
        problem = None
        for name in texts:
            if raw[name] is None:
                continue
            try:
                raw[name] = raw[name].decode("utf-8")
            except UnicodeDecodeError as err:
                problem = problem or ("not_utf8", f"column {name!r} is not UTF-8: {err.reason} at byte {err.start}")
        yield raw, problem


def input_problem(raw: dict[str, Any], mapping: ColumnMapping) -> tuple[str, str] | None:
    """``(reason, detail)`` when the ``--input-column`` value of ``raw`` cannot be appended to the instruction:
    bytes that are not UTF-8 (``not_utf8``) or a value that is not text (``bad_record``: a number, an object, a
    list); without this the row would lose its input silently. Text, bytes of UTF-8 and null are fine."""
    if not mapping.input:
        return None
    value = raw.get(mapping.input)
    if isinstance(value, (bytes, bytearray)):
        try:
            bytes(value).decode("utf-8")
        except UnicodeDecodeError as err:
            return "not_utf8", f"input {mapping.input!r} bytes are not UTF-8: {err.reason} at byte {err.start}"
    elif value is not None and not isinstance(value, str):
        return "bad_record", f"input {mapping.input!r} is {type(value).__name__}, not text or null"
    return None


def _utf8_text(value: Any) -> Any:
    """Bytes of UTF-8 (a binary Parquet column) as text; anything else as it is."""
    if isinstance(value, (bytes, bytearray)):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            return value
    return value


def make_source_pair(
    raw: dict[str, Any], mapping: ColumnMapping, uri: str, row: int, language_hint: str | None = None
) -> dict[str, Any]:
    """A SOURCE_PAIR from a raw row. Values are passed through as they are (even None or bytes): judging
    them is the extraction stage's job, so that every bad value gets one reason code in one place. The input
    column is the exception: it is merged here, so the readers judge it first (``input_problem``); a non-empty
    input is appended to the instruction (both decoded from UTF-8 bytes if need be), or is the instruction when
    that is null."""
    instruction = raw.get(mapping.instruction) if mapping.instruction else None
    extra = _utf8_text(raw.get(mapping.input)) if mapping.input else None
    if isinstance(extra, str) and extra.strip():
        instruction = _utf8_text(instruction)
        if instruction is None:
            instruction = extra
        elif isinstance(instruction, str):
            instruction = f"{instruction}\n\n{extra}"
    response = raw.get(mapping.response)
    return {
        "id": content_id("source_pair", repr(instruction), repr(response)),
        "instruction": instruction,
        "response": response,
        "language_hint": language_hint,
        "source_uri": uri,
        "source_row": row,
        "stage": READ_STAGE,
    }


_BOM = b"\xef\xbb\xbf"  # UTF-8's byte order mark, which some tools (Excel, PowerShell, Notepad) put first


class _BomSkippingReader:
    """A binary file's ``read`` without one leading UTF-8 BOM (JSON forbids it, RFC 8259; UTF-8 files carry it)."""

    def __init__(self, handle: IO[bytes]):
        self._handle = handle
        self._pending: bytes | None = None  # the first bytes, read ahead to look for the BOM

    def _start(self) -> None:
        if self._pending is None:
            head = b""
            while len(head) < len(_BOM):
                chunk = self._handle.read(len(_BOM) - len(head))
                if not chunk:
                    break
                head += chunk
            self._pending = head[len(_BOM):] if head == _BOM else head

    def peek_significant(self) -> bytes | None:
        """The first byte that is not JSON whitespace (kept for ``read``), or None at the end of the file."""
        self._start()
        while not self._pending.lstrip(b" \t\r\n"):
            chunk = self._handle.read(1 << 16)
            if not chunk:
                return None
            self._pending += chunk
        return self._pending.lstrip(b" \t\r\n")[:1]

    def peek(self, size: int) -> bytes:
        """The first ``size`` bytes (fewer at the end of the file), kept for ``read``."""
        self._start()
        while len(self._pending) < size:
            chunk = self._handle.read(size - len(self._pending))
            if not chunk:
                break
            self._pending += chunk
        return self._pending[:size]

    def read(self, size: int = -1) -> bytes:
        self._start()
        size = -1 if size is None else size
        if not self._pending:
            return self._handle.read(size)
        if size < 0:
            data, self._pending = self._pending + self._handle.read(), b""
        else:
            data, self._pending = self._pending[:size], self._pending[size:]
        return data


@contextlib.contextmanager
def _read_to_the_end(path: str, rows_read: list[int]) -> Iterator[None]:
    """A file that cannot be read to its end (a truncated or corrupt ``.gz``/``.bz2``/``.zst``, an I/O error)
    stops the job with ``CorpusConfigError``: its remaining records are unknown, so no count could balance."""
    try:
        yield
    except (EOFError, OSError, zlib.error) as err:  # what filesystems.open_binary's decompressors raise
        raise CorpusConfigError(f"{path} cannot be read to its end (after {rows_read[0]} lines or items): "
                                f"{type(err).__name__}: {err}") from err


def _physical_lines(handle: IO[bytes]) -> Iterator[bytes]:
    """The file's lines, ended by ``\\n``, ``\\r\\n`` or a lone ``\\r`` (classic Mac OS files): read by ``\\n``
    alone, a file of CR-only line endings is one line, all of its records one dead letter. JSON text holds no raw
    CR inside a string, so a lone one is whitespace between tokens or a line end; a line that parses whole keeps
    its CRs as whitespace."""
    # readline, not iteration: Beam's decompressing handle (a .jsonl.deflate file) is not iterable
    for line in iter(handle.readline, b""):
        body = line.rstrip(b"\r\n")
        if b"\r" not in body or _parses(body):
            yield line
        else:
            yield from body.split(b"\r")


def _parses(line: bytes) -> bool:
    try:
        json.loads(line)
        return True
    except (ValueError, RecursionError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        return False


def _parse_record(data: bytes, syntax_errors_raise: bool = False) -> tuple[Any, tuple[str, str] | None]:
    """``(value, None)`` for one JSON Lines line or JSON array item, or ``(a preview, (reason, detail))`` when its
    content cannot be a record: not UTF-8, an integer past Python's 4,300-digit limit, nesting too deep, or (for a
    line) not JSON. ``syntax_errors_raise``: a JSON syntax error raises ``JSONDecodeError`` instead."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        return data[:200].decode("utf-8", "backslashreplace"), ("not_utf8", str(err))
    try:
        return json.loads(text), None
    except json.JSONDecodeError as err:
        if syntax_errors_raise:
            raise
        return text[:200], ("bad_record", f"invalid JSON: {err}")
    except ValueError as err:  # an integer of more digits than Python converts (sys.int_info)
        return text[:200], ("bad_record", f"a number too long to read: {short_text(err)}")
    except RecursionError:
        return text[:200], ("bad_record", "JSON nested too deeply to parse")


def _iter_jsonl(path: str) -> Iterator[tuple[int, Any, tuple[str, str] | None]]:
    read = [0]
    with _read_to_the_end(path, read), filesystems.open_binary(path) as handle:
        for row, line in enumerate(_physical_lines(handle)):
            read[0] = row + 1
            if row == 0 and line.startswith(_BOM):
                line = line[len(_BOM):]
            if row == 0:
                _refuse_compressed_bytes(path, line)
            if not line.strip():
                continue
            value, problem = _parse_record(line)
            yield row, value, problem


_MAGIC = {b"\x1f\x8b": ".gz", b"BZh": ".bz2", b"\x28\xb5\x2f\xfd": ".zst"}
_PARQUET_MAGIC = b"PAR1"


def _refuse_compressed_bytes(path: str, head: bytes) -> None:
    """A compressed or Parquet file named as plain text would be read as a few lines of non-UTF-8 garbage, dead
    letters that do not count its records: say what it is instead."""
    if head.startswith(_PARQUET_MAGIC):
        raise CorpusConfigError(f"{path} is a Parquet file (it starts with PAR1) but is not named so: rename it to "
                                f"end in .parquet or pass --input-format parquet")
    for magic, suffix in _MAGIC.items():
        if head.startswith(magic) and not (suffix == ".bz2" and head[3:4] not in b"123456789"):
            raise CorpusConfigError(f"{path} starts like a {suffix} file but is not named so: rename it to end in "
                                    f"{suffix} (it is decompressed by its name)")


_STRUCTURE = re.compile(rb'[\[\]{}",]')  # what the item splitter looks at; UTF-8 puts no ASCII byte in a character
_STRING_REST = re.compile(rb'[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)  # a string's rest, past its opening quote
_CHUNK = 1 << 16
_CLOSER = {b"[": b"]", b"{": b"}"}


def _array_items(reader: Any, path: str) -> Iterator[bytes]:
    """The bytes of each item of the JSON array ``reader`` holds (its first significant byte is ``[``), streamed:
    a lexical scan (strings, brackets, the commas between items) finds where each item ends, so the item can be
    parsed by ``json`` (as a JSON Lines line is) and one item that ``json`` refuses for its content (an integer
    too long, nesting too deep) is one dead letter. What breaks the array's own structure (unbalanced brackets, an
    unterminated string, a missing item, data after the array) raises ``CorpusConfigError``."""
    buf, eof = b"", False
    base = 0  # the file offset of buf[0] (after the BOM)

    def more(keep: int) -> int:
        """Drop ``buf[:keep]``, read at least as much as is kept (the cost stays linear in an item's size) and
        return how far the offsets moved; 0 at the end of the file."""
        nonlocal buf, eof, base
        if eof:
            return 0
        chunk = reader.read(max(_CHUNK, len(buf) - keep))
        if not chunk:
            eof = True
            return 0
        buf, base = buf[keep:] + chunk, base + keep
        return keep

    def refuse(what: str, at: int) -> CorpusConfigError:
        return CorpusConfigError(f"{path} is not a valid JSON array: {what} (at byte {base + at})")

    def skip_space(pos: int) -> int:
        while True:
            while pos < len(buf) and buf[pos] in b" \t\r\n":
                pos += 1
            if pos < len(buf) or eof:
                return pos
            pos -= more(pos)

    pos = skip_space(0)
    pos += 1  # the "["
    pos = skip_space(pos)
    if buf[pos:pos + 1] == b"]":
        pos += 1
    else:
        while True:  # one item
            start, stack = pos, []
            while True:
                match = _STRUCTURE.search(buf, pos)
                if match is None:
                    if eof:
                        raise refuse("the file ends inside an item", len(buf))
                    scanned = len(buf)  # no structural byte up to here: the scan resumes past it
                    shift = more(start)
                    start, pos = start - shift, scanned - shift
                    continue
                token, at = match.group(), match.start()
                if token == b'"':
                    rest = _STRING_REST.match(buf, at + 1)
                    if rest is None:
                        if eof:
                            raise refuse("the file ends inside a string", at)
                        shift = more(start)
                        start, pos = start - shift, at - shift
                        continue
                    pos = rest.end()
                elif token in b"[{":
                    stack.append(token)
                    pos = at + 1
                elif stack and token in b"]}":
                    if _CLOSER[stack.pop()] != token:
                        raise refuse(f"{token.decode()!r} closes a bracket it does not match", at)
                    pos = at + 1
                elif token == b"}":
                    raise refuse("'}' with no '{' open", at)
                elif token == b"," and stack:
                    pos = at + 1
                else:  # the "," or "]" that ends the item
                    item = buf[start:at].strip(b" \t\r\n")
                    if not item:
                        raise refuse(f"no item before {token.decode()!r}", at)
                    yield item
                    pos = at + 1
                    break
            if token == b"]":
                break
            pos = skip_space(pos)
    pos = skip_space(pos)
    if pos < len(buf):
        after = buf[pos:pos + 40].decode("utf-8", "backslashreplace")
        raise refuse(f"data after the array: {after!r}", pos)


def _iter_json_array(path: str) -> Iterator[tuple[int, Any, tuple[str, str] | None]]:
    """The items of a JSON array, streamed: ``_array_items`` finds each item's bytes and ``json`` parses them, as
    the JSON Lines reader parses a line, so both formats keep the same values: a lone surrogate escape, an integer
    past 64 bits, ``NaN``/``Infinity`` (which Python's ``json.dump`` writes by default). (ijson, used before, refused
    ``NaN`` and any integer of more than 4,300 digits, and its C backend mangles surrogates.) An item that is not
    UTF-8, nested too deeply for ``json`` or holding an integer past Python's 4,300-digit limit is one dead letter;
    an item that is not JSON at all refuses the file, as a JSON array cannot be trusted past a syntax error.
    About as fast as ijson's Python backend (~11 MB/s here, an indented array of 150,000 records)."""
    read = [0]
    with _read_to_the_end(path, read), filesystems.open_binary(path) as handle:
        reader = _BomSkippingReader(handle)
        first = reader.peek_significant()
        if first not in (None, b"[", b"{"):
            _refuse_compressed_bytes(path, reader.peek(8))
        if first is None:
            raise CorpusConfigError(f"{path} is not a valid JSON array: the file is empty (an empty array is [])")
        if first != b"[":
            kind = {b"{": "an object"}.get(first, f"{first.decode('latin-1')!r}")
            raise CorpusConfigError(
                f"{path} is JSON whose top level is {kind}, not an array of records; a file of one object per "
                f"line is JSON Lines (name it .jsonl or pass --input-format jsonl)")
        for row, item in enumerate(_array_items(reader, path)):
            read[0] = row + 1
            try:
                value, problem = _parse_record(item, syntax_errors_raise=True)
            except json.JSONDecodeError as err:  # a JSON array cannot be trusted past a syntax error
                raise CorpusConfigError(f"{path} is not a valid JSON array: item {row}: {err.msg} at character "
                                        f"{err.pos} of {short_text(err.doc, 80)!r}") from err
            yield row, value, problem


def iter_json_rows(path: str, fmt: str, mapping: ColumnMapping) -> Iterator[tuple[int, Any, tuple[str, str] | None]]:
    """``(row, raw, problem)`` for every record of a JSON array or JSON Lines file; ``problem`` is
    ``(reason, detail)`` for a record that cannot be a source pair (one bad line is one dead letter)."""
    fmt = fmt if fmt != "auto" else detect_format(path)
    rows = _iter_json_array(path) if fmt == "json" else _iter_jsonl(path)
    for row, raw, problem in rows:
        if problem is None and not isinstance(raw, dict):
            problem = ("bad_record", f"a {type(raw).__name__}, not a JSON object")
        if problem is None and mapping.response not in raw:
            problem = ("bad_record", f"no {mapping.response!r} field")
        if problem is None:
            problem = _unencodable(raw, mapping) or input_problem(raw, mapping)
        yield row, raw, problem


def _unencodable(raw: dict[str, Any], mapping: ColumnMapping) -> tuple[str, str] | None:
    for column in mapping.columns:
        value = raw.get(column)
        offset = lone_surrogate_at(value) if isinstance(value, str) else None
        if offset is not None:
            return ("not_utf8", f"field {column!r} holds a lone surrogate at offset {offset}")
    return None


def _first_json_record(path: str, fmt: str) -> tuple[Any, bool]:
    """The file's first good record (None when it has none) and whether it holds any record at all (a bad line is
    one: it becomes a dead letter)."""
    rows = _iter_json_array(path) if fmt == "json" else _iter_jsonl(path)
    seen = False
    for _, raw, problem in rows:
        seen = True
        if problem is None:
            return raw, True
    return None, seen


def validate_files(files: list[str], mapping: ColumnMapping, fmt: str) -> None:
    """Fail at construction, with a message naming the file and column, when a file shows a configuration error:
    every Parquet file's schema (its footer) and every JSON/JSONL file's first good record are checked (a later
    file of other columns would otherwise be read as a dead letter per row), 16 files at a time (a bucket of
    thousands of files is checked in seconds); the error is the first file's in name order. ``--input-column`` is
    optional: a record without it is read without an input."""
    from concurrent.futures import ThreadPoolExecutor

    if len(files) == 1:
        holds = [_validate_file(files[0], mapping, fmt)]
    else:
        with ThreadPoolExecutor(max_workers=16) as pool:
            holds = list(pool.map(lambda path: _validate_file(path, mapping, fmt), files))
    if files and not any(holds):  # a run over nothing, exit 0, is a mistake in what was given (an empty export)
        which = files[0] if len(files) == 1 else f"all {len(files)} files (the first: {files[0]})"
        raise CorpusConfigError(f"the corpus holds no record: {which} {'is' if len(files) == 1 else 'are'} empty")


def _validate_file(path: str, mapping: ColumnMapping, fmt: str) -> bool:
    """Check the file (``validate_files``); whether it holds any record."""
    path_format = detect_format(path) if fmt == "auto" else fmt
    if path_format == "parquet":
        parquet = open_parquet(path)
        check_parquet_columns(parquet.schema_arrow, mapping, path)
        return parquet.metadata.num_rows > 0
    record, holds = _first_json_record(path, path_format)
    if isinstance(record, dict):
        for column in mapping.required:
            if column not in record:
                raise CorpusConfigError(
                    f"column {column!r} is missing from the first record of {path} "
                    f"(it has: {', '.join(record)}); set --instruction-column/--response-column/--input-column"
                )
    return holds


validate_first_file = validate_files  # its name before every file was checked


# ---------------------------------------------------------------------------------------------------------
# Source trees: one record per top-level function, class or method.


def default_source_root() -> str:
    """The running interpreter's standard library: real code every machine has."""
    return sysconfig.get_paths()["stdlib"]


_VENDORED_DIRS = {"site-packages", "dist-packages", "__pycache__", ".git", "node_modules", ".venv", "venv"}
# test suites: a corpus of the code users write, not of its tests (test_* methods, fixtures)
_TEST_DIRS = {"test", "tests", "testing", "idle_test", "__tests__"}
_SKIP_DIRS = _VENDORED_DIRS | _TEST_DIRS
TEST_RULE = "under test/, tests/, testing/ or __tests__/, or named test_*, *_test, *.spec or conftest"


def is_test_file(name: str) -> bool:
    base = name.rsplit("/", 1)[-1]
    stem = base.rsplit(".", 1)[0]
    return stem.startswith("test_") or stem.endswith(("_test", "_tests", ".test", ".spec")) or stem == "conftest"


@dataclasses.dataclass
class SourceListing:
    """The source files of a tree (``files``) and how many of a known language were left out, and why."""

    files: list[str]
    tests: int = 0  # test suites (``TEST_RULE``)
    not_regular: list[str] = dataclasses.field(default_factory=list)  # dangling links, FIFOs, sockets, devices


def _is_regular(path: str) -> bool:
    """A regular file (or a link to one): a dangling link cannot be opened, a FIFO would block its reader."""
    return os.path.isfile(path)


def source_tree_listing(root: str) -> SourceListing:
    """Source files of a known language under ``root``; test suites, vendored packages and what is not a regular
    file left out and counted."""
    listing = SourceListing([])
    if os.path.isdir(root):
        for directory, subdirs, names in os.walk(root):
            for skipped in (d for d in subdirs if d in _TEST_DIRS):  # vendored trees are not walked: node_modules
                listing.tests += sum(1 for _, _, inner in os.walk(os.path.join(directory, skipped))
                                     for n in inner if language_for_path(n))
            subdirs[:] = sorted(d for d in subdirs if d not in _SKIP_DIRS)
            for name in names:
                if not language_for_path(name):
                    continue
                path = os.path.join(directory, name)
                if is_test_file(name):
                    listing.tests += 1
                elif not _is_regular(path):
                    listing.not_regular.append(path)
                else:
                    listing.files.append(path)
        listing.files.sort()
        return listing
    import fsspec

    fs, _, (base,) = fsspec.get_fs_token_paths(root)
    for p in fs.find(base):
        if not language_for_path(p):
            continue
        parts = set(p.split("/"))
        if parts & _VENDORED_DIRS:
            continue
        if is_test_file(p) or parts & _TEST_DIRS:
            listing.tests += 1
        else:
            listing.files.append(fs.unstrip_protocol(p))
    listing.files.sort()
    return listing


def list_source_files(root: str) -> list[str]:
    """Source files of a known language under ``root``, test suites, vendored packages and what is not a regular
    file (a dangling link, a FIFO) left out (``source_tree_listing`` counts them)."""
    return source_tree_listing(root).files


def source_file_pairs(path: str, data: bytes) -> list[dict[str, Any]]:
    """One SOURCE_PAIR per top-level definition of a source file (``UndecodableSource`` if it is not text).

    Unvalidated: a definition that does not parse is judged (and dead-lettered) by extraction."""
    language = language_for_path(path)
    return [{
        "id": content_id("source_pair", repr(None), repr(definition.code)),
        "instruction": None,
        "response": definition.code,
        "language_hint": language,
        "source_uri": path,
        "source_row": definition.start_line,
        "stage": READ_STAGE,
    } for definition in iter_definitions(data, language, validate=False)]


def corpus_pairs(files: list[str], mapping: ColumnMapping, fmt: str) -> Iterator[dict[str, Any]]:
    """The readable SOURCE_PAIRs of ``--input``'s files in file order, read lazily (what ``ReadSourcePairs`` reads,
    without its dead letters): a caller that needs only the first few records reads only those."""
    for path in files:
        file_format = fmt if fmt != "auto" else detect_format(path)
        if file_format != "parquet":
            for row, raw, problem in iter_json_rows(path, file_format, mapping):
                if problem is None:
                    yield make_source_pair(raw, mapping, path, row)
            continue
        offset = 0
        for batch in open_parquet(path).iter_batches(batch_size=1024, columns=mapping.columns, use_threads=False):
            for i, (raw, problem) in enumerate(parquet_rows(pa.Table.from_batches([batch]))):
                if (problem or input_problem(raw, mapping)) is None:
                    yield make_source_pair(raw, mapping, path, offset + i)
            offset += batch.num_rows


def source_tree_pairs(files: list[str]) -> Iterator[dict[str, Any]]:
    """The SOURCE_PAIRs of a source tree's files in file order, read lazily; a file that cannot be read or is not
    text is skipped (``ReadSourceTree`` dead-letters it)."""
    for path in files:
        try:
            with filesystems.open_binary(path) as handle:
                data = handle.read()
            yield from source_file_pairs(path, data)
        except (OSError, UndecodableSource):
            continue
