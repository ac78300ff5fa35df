"""Spilled shuffles (``transforms.io.spill``): records wait in files while 28-byte handles cross the shuffle. The
writer and the exact dedup produce what they produce without spilling, really spill, and leave no file behind."""
from __future__ import annotations

import json
import os
import posixpath
import random

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.util import assert_that, equal_to

from schemas.records import RecordKind, rejected
from tests.transforms.dedup.test_exact_dedup import snippet as dedup_snippet
from tests.transforms.io.test_packed_shuffles import digests, snippet
from transforms.dedup.beam import DedupSnippets
from transforms.io import spill as spill_module
from transforms.io.beam import WriteParquetShards
from transforms.io.options import resolve_spill_dir
from transforms.io.parquet import write_shards
from transforms.io.spill import HANDLE_BYTES, SpillReader, SpillWriter, remove_spill_dir


@pytest.fixture
def appends(monkeypatch):
    """Counts records spilled in this process (the in-memory DirectRunner runs the DoFns here)."""
    calls = []
    original = SpillWriter.append

    def counting(self, record):
        calls.append(record["id"])
        return original(self, record)

    monkeypatch.setattr(spill_module.SpillWriter, "append", counting)
    return calls


def test_handles_read_back_every_record_in_any_order(tmp_path):
    records = [snippet(i) for i in range(300)] + [{"id": "odd", "raw": b"\x00\xff", "text": "\u4e2d\ud83d\ude00"}]
    writers = [SpillWriter(str(tmp_path)), SpillWriter(str(tmp_path))]
    handles = [writers[i % 2].append(record) for i, record in enumerate(records)]
    for writer in writers:
        writer.close()
    assert len(os.listdir(tmp_path)) == 2 and {len(h) for h in handles} == {HANDLE_BYTES}
    order = list(range(len(records)))
    random.Random(4).shuffle(order)
    reader = SpillReader(str(tmp_path))
    assert [reader.read(handles[i]) for i in order] == [records[i] for i in order]
    reader.close()
    remove_spill_dir(str(tmp_path))
    assert not tmp_path.exists()


def test_a_truncated_spill_file_is_an_error_not_a_wrong_record(tmp_path):
    writer = SpillWriter(str(tmp_path))
    handle = writer.append(snippet(3))
    writer.close()
    (path,) = tmp_path.iterdir()
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(OSError, match="truncated"):
        SpillReader(str(tmp_path)).read(handle)


def test_spilling_writer_writes_the_files_of_the_in_memory_writer(tmp_path, appends):
    snippets = [snippet(i) for i in range(300)]
    dead = [rejected(s, record_kind=RecordKind.CODE_SNIPPET, reason="duplicate", stage="dedup", detail="d")
            for s in snippets[:40]]
    dead += [rejected({"raw": f"line {i}"}, record_kind=RecordKind.SOURCE_PAIR, reason="bad_record",
                      stage="read", detail="x") for i in range(25)]
    spill_parent = tmp_path / "spill"
    with beam.Pipeline(runner="DirectRunner") as p:
        parts = (p | "A" >> beam.Create(dead[:40]), p | "B" >> beam.Create(dead[40:]))
        _ = parts | "Dead" >> WriteParquetShards(str(tmp_path / "beam-dead"), RecordKind.REJECTED_RECORD,
                                                 seed=None, shard_records=16, spill_dir=str(spill_parent))
        _ = (p | "Snippets" >> beam.Create(snippets)
             | "Write" >> WriteParquetShards(str(tmp_path / "beam"), RecordKind.CODE_SNIPPET, seed=11,
                                             shard_mb=40_000 / 2**20, spill_dir=str(spill_parent)))
    write_shards(dead, str(tmp_path / "mem-dead"), RecordKind.REJECTED_RECORD, seed=None, shard_records=16)
    write_shards(snippets, str(tmp_path / "mem"), RecordKind.CODE_SNIPPET, seed=11, shard_mb=40_000 / 2**20)
    assert len(digests(tmp_path / "beam-dead")) == 5 and len(digests(tmp_path / "beam")) > 3
    assert digests(tmp_path / "beam-dead") == digests(tmp_path / "mem-dead")
    assert digests(tmp_path / "beam") == digests(tmp_path / "mem")
    assert sorted(appends) == sorted(r["id"] for r in dead + snippets)  # every record went through a file
    assert list(spill_parent.iterdir()) == []  # each writer removed its own files once its index was written


@pytest.mark.parametrize("spilled", [False, True])
def test_dedup_keeps_the_same_survivors_when_it_spills(tmp_path, appends, spilled):
    codes = [f"def f{i}():\n    return {i}" for i in range(20)]
    records = [dedup_snippet(code, f"file{copy}.jsonl", 10 * copy + i)
               for i, code in enumerate(codes) for copy in range(1 + i % 3)]
    random.Random(2).shuffle(records)
    survivors = [min((r for r in records if r["code"] == code), key=lambda r: (r["source_uri"], r["source_row"]))
                 for code in codes]
    assert len(records) - len(survivors) >= 15
    with beam.Pipeline(runner="DirectRunner") as p:
        out = p | beam.Create(records) | DedupSnippets(str(tmp_path) if spilled else None)
        assert_that(out.main, equal_to(survivors), label="survivors")
        assert_that(out.rejected | beam.Map(lambda r: r["reason"]),
                    equal_to(["duplicate"] * (len(records) - len(survivors))), label="dead")
    assert len(appends) == (len(records) if spilled else 0)


def test_auto_spills_locally_only_on_local_runners(tmp_path):
    import tempfile

    def resolved(*flags):
        return resolve_spill_dir(PipelineOptions(list(flags)))

    assert resolved().startswith(tempfile.gettempdir() + "/inverse-instruct-spill-")
    assert resolved("--runner=DirectRunner", "--direct_running_mode=multi_processing").startswith(
        tempfile.gettempdir())
    assert resolved("--runner=PortableRunner", "--job_endpoint=embed", "--environment_type=LOOPBACK") is not None
    assert resolved("--runner=DataflowRunner") is None
    assert resolved("--runner=FlinkRunner", "--environment_type=DOCKER") is None
    assert resolved("--spill-dir=none") is None
    assert resolved(f"--spill-dir={tmp_path}").startswith(f"{tmp_path}/inverse-instruct-spill-")
    assert resolved() != resolved()  # a fresh directory per job


@pytest.mark.heavy
def test_extraction_job_spills_and_cleans_up(tmp_path, appends):
    from beam_pipelines.inverse_instruct import run

    corpus = tmp_path / "corpus.jsonl"
    rows = [{"instruction": f"task {i}", "response": f"```python\ndef f{i % 40}(x):\n    return x + {i % 40}\n```"}
            for i in range(120)] + [{"instruction": "prose", "response": "No code here, only words."}]
    corpus.write_text("".join(json.dumps(row) + "\n" for row in rows))
    outputs = {}
    for name in ("spilled", "inline"):
        # Spilled on the portable path (its LOOPBACK workers are threads of this process, so `appends` counts).
        flags = ([f"--spill-dir={tmp_path / 'spill'}", "--runner=PortableRunner", "--job_endpoint=embed",
                  "--environment_type=LOOPBACK"] if name == "spilled" else ["--spill-dir=none"])
        before = len(appends)
        manifest = run([f"--input={corpus}", f"--output={tmp_path / name}", "--stages=extract", *flags, "--quiet"])
        assert manifest["stages"]["dedup"]["rejected"] == {"duplicate": 80}
        outputs[name] = len(appends) - before
    # Spilled: each extracted snippet once in the dedup and once in the snippets writer; every dead letter once.
    assert outputs == {"spilled": 120 + 40 + 80 + 1, "inline": 0}
    for sub in ("snippets", "rejected"):
        assert digests(tmp_path / "spilled" / sub) == digests(tmp_path / "inline" / sub)
        assert digests(tmp_path / "spilled" / sub)
    assert list((tmp_path / "spill").iterdir()) == []


def _dead_pid() -> int:
    import subprocess
    import sys

    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True, check=True)
    return int(finished.stdout)  # that process has exited


def _spill_dirs(tmp_path, *names):
    for name in names:
        (tmp_path / name / "write-x").mkdir(parents=True)
        (tmp_path / name / "write-x" / "a.spill").write_bytes(b"x" * 100)
    return [tmp_path / name for name in names]


def test_a_new_job_removes_the_spill_directories_of_killed_jobs(tmp_path):
    host = spill_module.host_tag()
    orphan, running, unrelated = _spill_dirs(
        tmp_path, f"inverse-instruct-spill-{host}-{_dead_pid()}-0123456789ab",
        f"inverse-instruct-spill-{host}-{os.getpid()}-0123456789ab", "inverse-instruct-spill-notapid")
    fresh = resolve_spill_dir(PipelineOptions([f"--spill-dir={tmp_path}"]))
    assert fresh.startswith(f"{tmp_path}/inverse-instruct-spill-{host}-{os.getpid()}-")
    assert not orphan.exists() and running.exists() and unrelated.exists()


def test_spill_directories_of_other_hosts_and_old_names_are_left_alone(tmp_path):
    """On a shared filesystem a pid says nothing about another host's job: its directory may be in use."""
    dead = _dead_pid()
    other_host, old_format = _spill_dirs(
        tmp_path, f"inverse-instruct-spill-other-host-7-{dead}-0123456789ab",
        f"inverse-instruct-spill-{dead}-0123456789ab")
    assert spill_module.remove_orphaned_spill_dirs(str(tmp_path)) == []
    assert other_host.exists() and old_format.exists()


def test_host_tag_is_safe_in_a_directory_name(monkeypatch):
    monkeypatch.setattr(spill_module.socket, "gethostname", lambda: "node 3/rack:a-1.example")
    assert spill_module.host_tag() == "node_3_rack_a-1.example"
    name = posixpath.basename(spill_module.new_job_spill_dir("/spill"))
    assert spill_module._JOB_SPILL_DIR.fullmatch(name).group("host", "pid") == ("node_3_rack_a-1.example",
                                                                              str(os.getpid()))
