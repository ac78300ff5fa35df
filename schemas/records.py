"""One source of truth for every record kind that flows through the pipeline.

Records travel through Beam as plain ``dict`` objects (cheap to pickle, runner
agnostic). At the edges they are written as Parquet with the schemas below; the
schema version and record kind live in the Parquet key-value metadata so that a
reader can tell what it holds without guessing.
"""
from __future__ import annotations

import enum
import hashlib
import json
from typing import Any, Iterable, Mapping

import pyarrow as pa

SCHEMA_VERSION = "3"  # 2: PUZZLE records hold the solve stage's verified solutions; 3: reference_snippet
METADATA_VERSION_KEY = b"inverse_instruct.schema_version"
METADATA_KIND_KEY = b"inverse_instruct.record_kind"


class RecordKind(str, enum.Enum):
    SOURCE_PAIR = "source_pair"
    CODE_SNIPPET = "code_snippet"
    CANDIDATE_INSTRUCTION = "candidate_instruction"
    SCORED_PAIR = "scored_pair"
    TRAINING_EXAMPLE = "training_example"
    REJECTED_RECORD = "rejected_record"
    PUZZLE = "puzzle"


def content_id(*parts: Any) -> str:
    """A stable 16-byte hex id from the given content parts.

    Parts are joined with a separator that cannot appear in ``str`` of
    ``None``/ints and is unlikely in text; ``None`` is distinct from "".
    """
    h = hashlib.blake2b(digest_size=16)
    for part in parts:
        token = "\x00<none>" if part is None else str(part)
        data = token.encode("utf-8", "surrogatepass")
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()


# Provenance columns shared by every kind: where the record came from and which
# stage made it.
_PROVENANCE = [
    pa.field("source_uri", pa.string(), nullable=False),
    pa.field("source_row", pa.int64(), nullable=False),
    pa.field("stage", pa.string(), nullable=False),
]

_SAMPLING = [
    pa.field("temperature", pa.float64()),
    pa.field("top_p", pa.float64()),
    pa.field("repetition_penalty", pa.float64()),
    pa.field("max_tokens", pa.int64()),
    pa.field("seed", pa.int64()),
]

_CANDIDATE = [
    pa.field("id", pa.string(), nullable=False),
    pa.field("snippet_id", pa.string(), nullable=False),
    pa.field("candidate_index", pa.int64(), nullable=False),
    pa.field("prefix", pa.string()),
    pa.field("instruction", pa.string()),
    pa.field("code", pa.string()),
    pa.field("language", pa.string()),
    pa.field("fence_lang", pa.string()),  # the snippet's fence tag: the judge prompt re-fences the code with it
    pa.field("reference_snippet", pa.string()),  # the reference's raw slice (paper policy), for --prompt-code reference
    pa.field("source_id", pa.string()),
    pa.field("original_instruction", pa.string()),
    pa.field("model", pa.string()),
    pa.field("preset", pa.string()),
    pa.field("preset_hash", pa.string()),
    *_SAMPLING,
    *_PROVENANCE,
]

_FIELDS: dict[RecordKind, list[pa.Field]] = {
    RecordKind.SOURCE_PAIR: [
        pa.field("id", pa.string(), nullable=False),
        pa.field("instruction", pa.string()),
        pa.field("response", pa.string()),
        pa.field("language_hint", pa.string()),  # set by readers that know the language (source trees)
        *_PROVENANCE,
    ],
    RecordKind.CODE_SNIPPET: [
        # content id of (language, normalized code); without dedup, also of the source row (as_occurrence)
        pa.field("id", pa.string(), nullable=False),
        pa.field("source_id", pa.string(), nullable=False),
        pa.field("code", pa.string(), nullable=False),
        pa.field("language", pa.string(), nullable=False),
        pa.field("fence_lang", pa.string()),  # tag as written in the fence ("" when none)
        pa.field("reference_snippet", pa.string()),  # paper policy: exactly what the reference put into {code}
        pa.field("original_instruction", pa.string()),
        pa.field("extraction_policy", pa.string(), nullable=False),
        pa.field("n_lines", pa.int64(), nullable=False),
        pa.field("n_chars", pa.int64(), nullable=False),
        *_PROVENANCE,
    ],
    RecordKind.CANDIDATE_INSTRUCTION: list(_CANDIDATE),
    RecordKind.SCORED_PAIR: [
        *_CANDIDATE,
        pa.field("score", pa.float64()),
        pa.field("logprob_yes", pa.float64()),
        pa.field("logprob_no", pa.float64()),
        pa.field("scoring_mode", pa.string()),
        pa.field("raw_logprobs", pa.string()),  # JSON, for audit
        pa.field("all_scores", pa.list_(pa.float64())),  # every candidate's score, by index (selected pairs)
        pa.field("all_candidate_indices", pa.list_(pa.int64())),
        pa.field("rank", pa.int64()),  # 0 for the winner; > 0 only with --top-k > 1
    ],
    RecordKind.TRAINING_EXAMPLE: [
        pa.field("id", pa.string(), nullable=False),
        pa.field(
            "messages",
            pa.list_(pa.struct([pa.field("role", pa.string()), pa.field("content", pa.string())])),
        ),
        pa.field("instruction", pa.string(), nullable=False),
        pa.field("response", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),  # "generated" | "original"
        pa.field("language", pa.string()),
        pa.field("snippet_id", pa.string()),
        pa.field("provenance", pa.string()),  # JSON of the upstream record's provenance
        *_PROVENANCE,
    ],
    RecordKind.PUZZLE: [  # a self-play puzzle that passed the filters, and what solving it found (transforms/selfplay)
        pa.field("id", pa.string(), nullable=False),  # content id of f's text
        pa.field("name", pa.string(), nullable=False),
        pa.field("sat", pa.string(), nullable=False),  # the puzzle, ``def f(...)``, as generated and cut
        pa.field("answer_type", pa.string()),  # f's answer annotation ("int", "List[str]", ...)
        pa.field("trivial_tested", pa.bool_()),  # whether the trivial-answer test ran (the reference's draw)
        pa.field("sol", pa.string()),  # the shortest verified ``def g(...)``; None when no attempt verified
        pa.field("solutions", pa.list_(pa.string())),  # up to max_sols_per_puzzle distinct verified g, shortest first
        pa.field("attempts", pa.int64()),
        pa.field("verified_attempts", pa.int64()),
        pa.field("origin", pa.string(), nullable=False),  # "generated" | "p3-test" | ...
        pa.field("preset", pa.string()),
        pa.field("prompt_index", pa.int64()),
        pa.field("sample_index", pa.int64()),
        pa.field("examples", pa.list_(pa.string())),  # names of the generation prompt's examples
        pa.field("model", pa.string()),
        pa.field("seed", pa.int64()),
        *_PROVENANCE,
    ],
    RecordKind.REJECTED_RECORD: [
        pa.field("id", pa.string(), nullable=False),
        pa.field("record_kind", pa.string(), nullable=False),  # kind of the rejected payload
        pa.field("reason", pa.string(), nullable=False),
        pa.field("detail", pa.string()),
        pa.field("payload", pa.string()),  # JSON of the rejected record (long strings truncated)
        *_PROVENANCE,
    ],
}


def schema_for(kind: RecordKind | str) -> pa.Schema:
    kind = RecordKind(kind)
    return pa.schema(
        _FIELDS[kind],
        metadata={METADATA_VERSION_KEY: SCHEMA_VERSION.encode(), METADATA_KIND_KEY: kind.value.encode()},
    )


SCHEMAS: dict[RecordKind, pa.Schema] = {kind: schema_for(kind) for kind in RecordKind}


def conform(record: Mapping[str, Any], kind: RecordKind | str) -> dict[str, Any]:
    """Project ``record`` onto the schema's columns (missing optional columns become None).

    Raises ``ValueError`` naming the column when a non-nullable column is missing.
    """
    schema = SCHEMAS[RecordKind(kind)]
    out = {}
    for field in schema:
        value = record.get(field.name)
        if value is None and not field.nullable:
            raise ValueError(f"{RecordKind(kind).value} record lacks required column {field.name!r}")
        out[field.name] = value
    return out


def to_table(records: Iterable[Mapping[str, Any]], kind: RecordKind | str) -> pa.Table:
    schema = SCHEMAS[RecordKind(kind)]
    rows = [conform(r, kind) for r in records]
    return pa.Table.from_pylist(rows, schema=schema)


PAYLOAD_STRING_LIMIT = 4096
PAYLOAD_DEPTH_LIMIT = 100  # levels of nesting a dead-letter payload keeps (payload_json)


def lone_surrogate_at(text: str) -> int | None:
    """The offset of the first lone UTF-16 surrogate in ``text`` (a JSON "\\ud83d" escape decodes to one), which
    UTF-8, and so Parquet, cannot store; None when there is none."""
    if text.isascii():
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return exc.start
    return None


def utf8_storable(text: str) -> str:
    """``text`` with any lone surrogate written as its ``\\udXXX`` escape."""
    return text if lone_surrogate_at(text) is None else text.encode("utf-8", "backslashreplace").decode("utf-8")


def payload_json(record: Mapping[str, Any] | Any) -> str:
    """JSON for a dead-letter payload; long strings are truncated so a 10 MB record stays small."""

    def shrink(v: Any, depth: int = 0) -> Any:
        # Every string, key and repr() made UTF-8-storable: a dead letter must always be writable to Parquet.
        # Depth-bounded: a record nested thousands deep (a JSON item) is itself a dead letter, and both this
        # recursion and json.dumps's would overflow the stack on it; past the bound a container is a summary.
        if isinstance(v, (Mapping, list, tuple)) and depth >= PAYLOAD_DEPTH_LIMIT:
            return f"<{type(v).__name__} of {len(v)} nested deeper than {PAYLOAD_DEPTH_LIMIT} levels, cut>"
        if isinstance(v, str):
            if len(v) > PAYLOAD_STRING_LIMIT:
                v = v[:PAYLOAD_STRING_LIMIT] + f"...<truncated {len(v) - PAYLOAD_STRING_LIMIT} chars>"
            return utf8_storable(v)
        if isinstance(v, bytes):
            return shrink(v.decode("utf-8", "backslashreplace"), depth)
        if isinstance(v, Mapping):
            return {utf8_storable(str(k)): shrink(x, depth + 1) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [shrink(x, depth + 1) for x in v]
        return v

    return json.dumps(shrink(record), ensure_ascii=False, default=lambda o: utf8_storable(repr(o)), sort_keys=True)


def rejected(
    record: Mapping[str, Any] | Any,
    *,
    record_kind: RecordKind | str,
    reason: str,
    stage: str,
    detail: str = "",
    source_uri: str | None = None,
    source_row: int | None = None,
) -> dict[str, Any]:
    """Build a dead-letter record. Provenance defaults to the payload's own."""
    src = record if isinstance(record, Mapping) else {}
    uri = source_uri if source_uri is not None else str(src.get("source_uri") or "")
    if source_row is None:  # -1 only when the payload has no row: row 0 is a row
        source_row = src.get("source_row")
    row = -1 if source_row is None else int(source_row)
    payload = payload_json(record)
    return {
        "id": content_id("rejected", stage, reason, uri, row, src.get("id"), payload),
        "record_kind": RecordKind(record_kind).value,
        "reason": reason,
        "detail": detail,
        "payload": payload,
        "source_uri": uri,
        "source_row": row,
        "stage": stage,
    }
