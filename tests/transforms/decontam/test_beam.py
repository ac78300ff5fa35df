"""Decontaminate as a Beam transform (DirectRunner, in-process and multi-process) and DecontamOptions."""
from __future__ import annotations

import gzip
import json

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.util import assert_that, equal_to

from tests.transforms.decontam import disguises
from transforms.decontam import benchmarks as B
from transforms.decontam.beam import Decontaminate
from transforms.decontam.methods import DecontamConfig
from transforms.decontam.options import BenchmarkOptions, benchmark_specs, decontam_config
from transforms.dedup.options import neardedup_config


@pytest.fixture(scope="session")
def records():
    with gzip.open(B.humaneval_path(), "rt") as f:
        row = [json.loads(line) for line in f][10]
    assert row["task_id"] == "HumanEval/10"
    # Disguised independently of transforms.decontam, so detection does not hold by construction.
    contaminated = [
        {"id": "verbatim", "instruction": "Finish it.", "code": disguises.full_program(row)},
        {"id": "renamed", **disguises.renamed_reordered(row)},
        {"id": "docstring", **disguises.short_docstring_chat(row)},
    ]
    clean = [{"id": f"clean{i}", "instruction": f"Sum the first {i} squares.",
              "code": f"def f(n):\n    return sum(k * k for k in range({i}))\n"} for i in range(20)]
    return contaminated, clean


def run(records, methods, options=None):
    contaminated, clean = records
    with beam.Pipeline(runner="DirectRunner", options=options) as p:
        result = (p | beam.Create(contaminated + clean)
                  | Decontaminate(benchmarks=["humaneval"], methods=methods, columns=("instruction", "code"),
                                  stage="decontam_test", record_kind="source_pair", batch_size=8))
        assert_that(result.main | beam.Map(lambda r: r["id"]), equal_to([r["id"] for r in clean]), label="Kept")
        assert_that(
            result.rejected | beam.Map(lambda r: (json.loads(r["payload"])["id"], r["reason"], r["stage"],
                                                  json.loads(r["detail"])["task_id"],
                                                  bool(json.loads(r["detail"])["evidence"][0]["span"]))),
            equal_to([(r["id"], "contaminated", "decontam_test", "HumanEval/10", True) for r in contaminated]),
            label="Rejected")


def test_ngram_rejects_disguised_copies_with_evidence(records):
    run(records, ["ngram"])


def test_multiprocess_runner_pickles_the_index(records):
    run(records, ["substring", "ngram"],
        PipelineOptions(direct_running_mode="multi_processing", direct_num_workers=2))


def test_options_parse_into_configs():
    opts = PipelineOptions([
        "--decontam-methods", "substring,ngram", "--benchmark", "humaneval", "--benchmark", "mine=/data/x.jsonl",
        "--benchmark-fields", "mine:prompt=q,solution=a", "--ngram-n", "12", "--ngram-threshold", "0.6",
        "--no-neardedup", "--minhash-threshold", "0.8",
    ])
    config = decontam_config(opts)
    assert config == DecontamConfig(methods=("substring", "ngram"), ngram_n=12, ngram_threshold=0.6)
    specs = benchmark_specs(opts)
    assert ([s.name for s in specs] == ["humaneval", "mine"]
            and dict(specs[1].fields) == {"prompt": "q", "solution": "a"})
    assert neardedup_config(opts) is None
    dedup = neardedup_config(PipelineOptions(["--minhash-threshold", "0.8", "--minhash-num-perm", "128"]))
    assert (dedup.threshold, dedup.num_perm, dedup.ngram) == (0.8, 128, 5)
    assert opts.view_as(BenchmarkOptions).benchmark == ["humaneval", "mine=/data/x.jsonl"]
    with pytest.raises(ValueError, match="unknown decontamination methods"):
        decontam_config(PipelineOptions(["--decontam-methods", "fuzzy"]))
