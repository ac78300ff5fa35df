"""Training examples, the pure part of the last stage: selected pairs (and, with ``--emit-original``, the cleaned
original pairs) -> training shards.

A training example is a ``RecordKind.TRAINING_EXAMPLE`` dict:
- ``instruction``: the selected instruction (generated) or the corpus instruction (original);
- ``response``: for a generated pair, the snippet fenced with its language tag
  (``transforms.instruct.prompts.fenced_code``, the same form the summarize prompt showed the model).
  For an original pair it depends on
  ``--original-response``: ``source`` (default) is the corpus's own full response, joined from the source pairs by
  ``source_id`` - the recipe's stage 2 trains on the original corpus, explanations included; ``code`` is the
  cleaned snippet, fenced (when the source pairs are not at hand, or to train on code-only answers);
- ``messages``: ``[{"role": "user", ...}, {"role": "assistant", ...}]`` (TRL / chat format; the system line is
  added by the training prompt format, so the shards stay format-neutral);
- ``source``: ``generated`` | ``original``; ``provenance``: JSON of the upstream record's lineage.

Each set is written by ``transforms.io.beam.WriteParquetShards`` (from ``WriteTrainingShards``) to its own directory
(``<output>/training/generated``, ``<output>/training/original``) with its own ``shards.json``, because the
recipe trains on them as separate stages. Row order is shuffled deterministically by ``hash(id, shard_seed)``.
"""
from __future__ import annotations

import json
from typing import Any, Mapping

from schemas.records import RecordKind, content_id
from transforms.instruct.prompts import fenced_code

SHARDS_STAGE = "shards"
GENERATED = "generated"
ORIGINAL = "original"
ORIGINAL_RESPONSE_MODES = ("source", "code")
EMIT_ORIGINAL_MODES = ("none", "kept", "all")
DEFAULT_SHARD_MB = 256.0


class ExampleRejected(ValueError):
    """A record that cannot become a training example; ``reason`` names why (dead-letter reason)."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


# --------------------------------------------------------------------------- pure logic


def _text(record: Mapping[str, Any], key: str, reason: str) -> str:
    value = record.get(key)
    if value is not None and not isinstance(value, str):  # not "empty": a list or a number is there, and wrong
        raise ExampleRejected("not_text", f"{key} is {type(value).__name__}, not text")
    if not isinstance(value, str) or not value.strip():
        raise ExampleRejected(reason, f"{key} is empty")
    nul = value.find("\x00")
    if nul >= 0:  # extraction dead-letters such a response (bad_record); an original pair must not train on it
        raise ExampleRejected("nul_character", f"{key} holds a NUL character at offset {nul}")
    return value


def training_example(
    *,
    source: str,
    instruction: str,
    response: str,
    language: str | None,
    snippet_id: str | None,
    provenance: Mapping[str, Any],
    source_uri: str,
    source_row: int,
) -> dict[str, Any]:
    instruction = instruction.strip()
    return {
        "id": content_id("training_example", source, instruction, response),
        "messages": [
            {"role": "user", "content": instruction},
            {"role": "assistant", "content": response},
        ],
        "instruction": instruction,
        "response": response,
        "source": source,
        "language": language,
        "snippet_id": snippet_id,
        "provenance": json.dumps(dict(provenance), sort_keys=True, ensure_ascii=False),
        "source_uri": source_uri,
        "source_row": source_row,
        "stage": SHARDS_STAGE,
    }


def generated_example(pair: Mapping[str, Any]) -> dict[str, Any]:
    """A selected ``SCORED_PAIR`` -> training example; the response is the snippet fenced with its language."""
    instruction = _text(pair, "instruction", "empty_instruction")
    code = _text(pair, "code", "empty_code")
    language = pair.get("language") or ""
    provenance = {
        "upstream_kind": RecordKind.SCORED_PAIR.value,
        "upstream_id": pair.get("id"),
        "upstream_stage": pair.get("stage"),
        "candidate_index": pair.get("candidate_index"),
        "score": pair.get("score"),
        "scoring_mode": pair.get("scoring_mode"),
        "model": pair.get("model"),
        "preset": pair.get("preset"),
        "preset_hash": pair.get("preset_hash"),
        "seed": pair.get("seed"),
    }
    return training_example(
        source=GENERATED,
        instruction=instruction,
        response=fenced_code(code, language),
        language=language or None,
        snippet_id=pair.get("snippet_id"),
        provenance=provenance,
        source_uri=str(pair.get("source_uri") or ""),
        source_row=int(pair["source_row"]) if pair.get("source_row") is not None else -1,
    )


def original_example(
    snippet: Mapping[str, Any], *, mode: str = "source", source_response: str | None = None
) -> dict[str, Any]:
    """A cleaned ``CODE_SNIPPET`` (with ``original_instruction``) -> training example.

    ``mode="source"`` answers with ``source_response`` (the corpus's full response, joined by ``source_id``);
    ``mode="code"`` answers with the cleaned snippet, fenced.
    """
    if mode not in ORIGINAL_RESPONSE_MODES:
        raise ValueError(f"original response mode must be one of {ORIGINAL_RESPONSE_MODES}, got {mode!r}")
    instruction = _text(snippet, "original_instruction", "empty_original_instruction")
    if mode == "source":
        if source_response is None:
            raise ExampleRejected("source_pair_missing", f"no source pair with id {snippet.get('source_id')!r}")
        response = _text({"response": source_response}, "response", "empty_response")
    else:
        code = _text(snippet, "code", "empty_code")
        response = fenced_code(code, snippet.get("fence_lang") or snippet.get("language") or "")
    provenance = {
        "upstream_kind": RecordKind.CODE_SNIPPET.value,
        "upstream_id": snippet.get("id"),
        "upstream_stage": snippet.get("stage"),
        "source_id": snippet.get("source_id"),
        "extraction_policy": snippet.get("extraction_policy"),
        "original_response": mode,
    }
    return training_example(
        source=ORIGINAL,
        instruction=instruction,
        response=response,
        language=snippet.get("language") or None,
        snippet_id=snippet.get("id"),
        provenance=provenance,
        source_uri=str(snippet.get("source_uri") or ""),
        source_row=int(snippet["source_row"]) if snippet.get("source_row") is not None else -1,
    )


def source_pair_example(pair: Mapping[str, Any]) -> dict[str, Any]:
    """A SOURCE_PAIR of the corpus -> training example, as the paper's stage 2 trains on the whole original corpus:
    its own instruction and full response, whether or not a snippet was extracted from it."""
    instruction = _text(pair, "instruction", "empty_original_instruction")
    response = _text(pair, "response", "empty_response")
    provenance = {"upstream_kind": RecordKind.SOURCE_PAIR.value, "upstream_id": pair.get("id"),
                  "upstream_stage": pair.get("stage"), "original_response": "source"}
    return training_example(
        source=ORIGINAL, instruction=instruction, response=response, language=pair.get("language_hint") or None,
        snippet_id=None, provenance=provenance, source_uri=str(pair.get("source_uri") or ""),
        source_row=int(pair["source_row"]) if pair.get("source_row") is not None else -1)


def pick_duplicate(examples: list[Mapping[str, Any]]) -> tuple[Mapping[str, Any], list[Mapping[str, Any]]]:
    """Examples sharing an id (same source, instruction and response): keep one, deterministically."""
    ordered = sorted(examples, key=lambda e: (e["source_uri"], e["source_row"], e["snippet_id"] or "", e["provenance"]))
    return ordered[0], ordered[1:]
