"""Behaviour kept across refactors: the outputs of two fixed runs compare equal to recorded digests.

The extraction digest was recorded before the layout move (commit "Golden digests ... recorded before the layout
move"). So was the main job's, and the moved tree matched it; it was re-recorded once, when the transformers
engine began scoring one prompt per forward pass: with padded batches, whose make-up depends on Beam's
timing-based batching, a score could differ in its 6th decimal between runs. Both were re-recorded once more when
schema 3 added the nullable ``reference_snippet`` column (and with it the ids of the dead letters whose payload is a
snippet); with that column dropped, every row compared equal to the earlier outputs.

The digests (``tests/golden/*.json``) hash every Parquet output row by row and keep the manifest's stage counts;
``tests/golden/digest.py`` computes them with pyarrow alone. A change that alters these outputs on purpose must
re-record the digest in the same commit and say why.

The main job's outputs are the model's, so they depend on the arithmetic as well as on the code: the dtype that
``auto`` picks and the CPU's matmul kernels (bf16 on an AVX-512 BF16 CPU and float32 on an AVX2-only one give
different greedy texts). Its digest is kept per compute signature, ``main_transformers_greedy.<signature>.json``.
The bf16 one was recorded on an AVX-512 BF16 machine; the float32-avx2 one on an AVX2-only AMD EPYC on
2026-12-01, when ``auto`` began choosing float32 there (same code otherwise). A machine with another signature
skips, saying how to record its digest: ``python -m tests.golden.digest OUT`` on the output of MAIN_ARGS.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from beam_pipelines.inverse_instruct import run
from runners.engines import resolve_dtype
from runners.hardware import cpu_flags
from tests.conftest import REPO
from tests.golden.digest import output_digest

GOLDEN = REPO / "tests" / "golden"
# Relative, as recorded: source_uri is part of every record.
CODE_ALPACA = "../shared/data/code_alpaca_2k.json"
CORPUS_ARGS = [f"--input={CODE_ALPACA}", "--instruction-column=instruction", "--input-column=input",
               "--response-column=output"]
EXTRACTION_ARGS = CORPUS_ARGS + ["--stages=extract"]
MAIN_ARGS = CORPUS_ARGS + ["--stages=all", "--emit-original", "--engine=transformers", "--temperature=0",
                           "--limit=6", "--num-candidates=3", "--max-new-tokens=32"]


def compute_signature() -> str:
    """What a CPU model run's outputs depend on besides the code: the dtype ``auto`` resolves to, and the CPU's
    widest matmul instructions (the kernels, and so the rounding, differ between AVX2, AVX-512 and AMX)."""
    flags = cpu_flags()
    isa = next((f for f in ("amx_bf16", "avx512_bf16", "avx512f", "avx2") if f in flags), "other")
    return f"{resolve_dtype('auto', gpu=False)}-{isa}"


def _check(args: list[str], golden: str, tmp_path: Path, monkeypatch) -> None:
    if not (REPO / CODE_ALPACA).is_file():
        pytest.skip(f"real-data test: {CODE_ALPACA} is absent (only CI and dev machines have ../shared)")
    if not (GOLDEN / golden).is_file():
        pytest.skip(f"no digest recorded for this machine ({golden}): run the job, then "
                    "python -m tests.golden.digest OUT > tests/golden/" + golden)
    monkeypatch.chdir(REPO)
    run(args + [f"--output={tmp_path / 'out'}"])
    expected = json.loads((GOLDEN / golden).read_text())
    actual = output_digest(str(tmp_path / "out"))
    assert actual["stages"] == expected["stages"]
    assert actual["parquet"] == expected["parquet"]


def test_extraction_job_on_code_alpaca_matches_its_golden_digest(tmp_path, monkeypatch):
    _check(EXTRACTION_ARGS, "extract_code_alpaca_2k.json", tmp_path, monkeypatch)


@pytest.mark.engine
def test_small_greedy_main_job_on_transformers_matches_its_golden_digest(tmp_path, monkeypatch):
    _check(MAIN_ARGS, f"main_transformers_greedy.{compute_signature()}.json", tmp_path, monkeypatch)
