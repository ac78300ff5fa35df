"""A dead letter whose payload is nested thousands deep (a JSON array's item, 2026-12-03 probe) is written, cut."""
from __future__ import annotations

import json

import pytest

from schemas import records
from schemas.records import rejected


@pytest.mark.parametrize("kind", [list, dict, tuple])
def test_a_payload_nested_thousands_deep_is_cut_not_a_recursion_error(kind):
    value = "leaf"
    for _ in range(5000):
        value = {"k": value} if kind is dict else kind([value])
    shallow = {"a": [1, {"b": [b"\xff", "x" * 10]}], "c": ("t",)}  # kept whole beside it
    dead = rejected({"raw": value, "shallow": shallow}, record_kind="source_pair", reason="bad_record", stage="read",
                    detail="a list, not a JSON object", source_uri="u", source_row=1)
    payload = json.loads(dead["payload"])
    assert payload["shallow"] == {"a": [1, {"b": ["\\xff", "x" * 10]}], "c": ["t"]}
    depth, node = 0, payload["raw"]
    while isinstance(node, (list, dict)):
        node, depth = (node["k"] if isinstance(node, dict) else node[0]), depth + 1
    assert depth == records.PAYLOAD_DEPTH_LIMIT - 1 and node.startswith("<") and "nested deeper than" in node

