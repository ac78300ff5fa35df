"""The extraction job end to end: books balance, outputs read back against the declared schemas, and the
same output comes out of the multi-process runner."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from beam_pipelines.inverse_instruct import run
from schemas.records import METADATA_KIND_KEY, SCHEMAS, RecordKind
from transforms.io.parquet import read_index, verify_shards

REPO = Path(__file__).resolve().parents[3]

PAIRS = [
    {"instruction": "Add two numbers", "response": "```python\ndef add(a, b):\n    return a + b\n```\nUse it well."},
    {"instruction": "Same code again", "response": "```py\ndef add(a, b):\n    return a + b\n```"},
    {"instruction": "Java hello",
     "response": "public class Hello {\n    public static void main(String[] args) {\n"
                 "        System.out.println(\"hi\");\n    }\n}"},
    {"instruction": "Broken", "response": "```python\ndef broken(:\n    pass\n```"},
    {"instruction": "Prose", "response": "You should consider using a dictionary for this task."},
    {"instruction": "Empty", "response": ""},
    {"instruction": "None", "response": None},
    {"instruction": "Go", "response": "```go\npackage main\n\nfunc main() {\n\tprintln(\"x\")\n}\n```"},
    {"instruction": "NUL", "response": "```python\nx = 1\x00\n```"},
    {"instruction": "Huge", "response": "```python\n" + "x = 1\n" * 2_000_000 + "```"},
]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("corpus") / "pairs.jsonl"
    with path.open("w") as f:
        for pair in PAIRS:
            f.write(json.dumps(pair) + "\n")
        f.write("{broken json\n")
    return path


def _read_dir(directory: Path, kind: RecordKind) -> list[dict]:
    verify_shards(str(directory))
    rows = []
    for shard in read_index(str(directory))["shards"]:
        table = pq.read_table(directory / Path(shard["path"]).name)
        assert table.schema.metadata[METADATA_KIND_KEY] == kind.value.encode()
        assert table.schema.equals(SCHEMAS[kind], check_metadata=False)
        rows.extend(table.to_pylist())
    return rows


def _run(corpus: Path, out: Path, *extra: str) -> dict:
    return run([f"--input={corpus}", f"--output={out}", "--stages=extract", *extra])


def test_books_balance_and_outputs_match_schemas(corpus, tmp_path):
    manifest = _run(corpus, tmp_path)
    stages = manifest["stages"]
    assert manifest["balanced"]
    assert stages["read"]["records_in"] == len(PAIRS) + 1
    assert stages["read"]["rejected"] == {"bad_record": 1}
    assert stages["extract"]["records_in"] == len(PAIRS)
    snippets = _read_dir(tmp_path / "snippets", RecordKind.CODE_SNIPPET)
    rejected = _read_dir(tmp_path / "rejected", RecordKind.REJECTED_RECORD)
    # in = out + rejected, record by record: every input row ends in exactly one place.
    places = sorted([(s["source_row"]) for s in snippets] + [r["source_row"] for r in rejected])
    assert places == list(range(len(PAIRS) + 1))
    assert {s["language"] for s in snippets} == {"python", "java", "go"}
    reasons = {r["source_row"]: (r["stage"], r["reason"]) for r in rejected}
    assert reasons[1] == ("dedup", "duplicate")  # the later copy of the same code
    assert reasons[3] == ("extract", "syntax_error")
    assert reasons[4][1] == "no_code"
    assert reasons[5][1] == "no_code"
    assert reasons[6][1] == "bad_record"
    assert reasons[9][1] == "too_long"
    assert reasons[10] == ("read", "bad_record")
    assert stages["dedup"]["rejected"] == {"duplicate": 1}
    assert json.loads((tmp_path / "manifest.json").read_text())["balanced"]


def test_output_reads_back_with_datasets(corpus, tmp_path):
    import datasets
    _run(corpus, tmp_path)
    files = sorted(str(p) for p in (tmp_path / "snippets").glob("*.parquet"))
    loaded = datasets.load_dataset("parquet", data_files=files, split="train")
    assert set(loaded.column_names) == set(SCHEMAS[RecordKind.CODE_SNIPPET].names)
    assert len(loaded) == 3


def test_multi_processing_runner_gives_identical_output(corpus, tmp_path):
    _run(corpus, tmp_path / "inproc")
    _run(corpus, tmp_path / "multi", "--direct_running_mode=multi_processing", "--direct_num_workers=2")
    for name in ("snippets", "rejected"):
        a = read_index(str(tmp_path / "inproc" / name))
        b = read_index(str(tmp_path / "multi" / name))
        assert a["total_rows"] == b["total_rows"] > 0, name  # two empty outputs would be identical too
        assert [s["sha256"] for s in a["shards"]] == [s["sha256"] for s in b["shards"]], name


def test_help_lists_every_option():
    result = subprocess.run(
        [sys.executable, "-m", "beam_pipelines.inverse_instruct", "--help"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    for flag in ("--input", "--instruction-column", "--response-column", "--extraction-policy", "--stages",
                 "--limit", "--runner", "--output"):
        assert flag in result.stdout, flag
