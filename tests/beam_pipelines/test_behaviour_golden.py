"""Behaviour kept across refactors: the outputs of two fixed runs compare equal to recorded digests.

The extraction digest was recorded before the layout move (commit "Golden digests ... recorded before the layout
move"). So was the main job's, and the moved tree matched it; it was re-recorded once, when the transformers
engine began scoring one prompt per forward pass: with padded batches, whose make-up depends on Beam's
timing-based batching, a score could differ in its 6th decimal between runs. Both were re-recorded once more when
schema 3 added the nullable ``reference_snippet`` column (and with it the ids of the dead letters whose payload is a
snippet); with that column dropped, every row compared equal to the earlier outputs.
The extraction digest was re-recorded when a dead letter of row 0 began to keep row 0 (it said -1): the
dead letter of code_alpaca_2k's row 0 (``no_code``) is the only row that changed.
The main digests gained the stage ``decontam_original`` (6 in, 6 out) when the original examples began to be
decontaminated as written; every Parquet output stayed the same (checked with the fake engine: the originals do
not depend on the model).

The digests (``tests/golden/*.json``) hash every Parquet output row by row and keep the manifest's stage counts;
``tests/golden/digest.py`` computes them with pyarrow alone. A change that alters these outputs on purpose must
re-record the digest in the same commit and say why.

The main job's outputs are the model's, so they depend on the arithmetic as well as on the code: the dtype that
``auto`` picks and the CPU's matmul kernels (bf16 on an AVX-512 BF16 CPU and float32 on an AVX2-only one give
different greedy texts). Its digest is kept per compute signature, ``main_transformers_greedy.<signature>.json``.
The bf16 one was recorded on an AVX-512 BF16 machine; the float32-avx2 one on an AVX2-only AMD EPYC on
2026-12-01, when ``auto`` began choosing float32 there (same code otherwise); the bfloat16-amx_bf16 one on an
Intel Xeon with AMX on 2026-12-03 (two runs gave the same digest; against the AVX-512 BF16 one, the outputs that do
not depend on the model, ``snippets`` and ``training/original``, are equal and the model's differ, as the kernels
do). A machine with another signature
skips, saying how to record its digest: ``python -m tests.golden.digest OUT`` on the output of
MAIN_ARGS.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from beam_pipelines.inverse_instruct import run
from tests.conftest import REPO
from tests.golden.digest import output_digest
from tests.runners.test_dtype import kernel_says_fast_bf16

GOLDEN = REPO / "tests" / "golden"
# Relative, as recorded: source_uri is part of every record.
CODE_ALPACA = "../shared/data/code_alpaca_2k.json"
CORPUS_ARGS = [f"--input={CODE_ALPACA}", "--instruction-column=instruction", "--input-column=input",
               "--response-column=output"]
EXTRACTION_ARGS = CORPUS_ARGS + ["--stages=extract"]
MAIN_ARGS = CORPUS_ARGS + ["--stages=all", "--emit-original", "--engine=transformers", "--temperature=0",
                           "--limit=6", "--num-candidates=3", "--max-new-tokens=32"]


def kernel_cpu_flags() -> set[str]:
    """The flags in /proc/cpuinfo, read here rather than by runners.hardware (the code under test)."""
    text = Path("/proc/cpuinfo").read_text()
    return {word for line in text.splitlines() if line.startswith("flags") for word in line.split(":", 1)[1].split()}


def compute_signature() -> str:
    """What a CPU model run's outputs depend on besides the code: the dtype ``auto`` should resolve to, and the
    CPU's widest matmul instructions (the kernels, and so the rounding, differ between AVX2, AVX-512 and AMX).
    Both come from the kernel's flags, not from runners: a regression in ``auto`` still picks this machine's
    digest, and fails against it."""
    flags = kernel_cpu_flags()
    isa = next((f for f in ("amx_bf16", "avx512_bf16", "avx512f", "avx2") if f in flags), "other")
    return f"{'bfloat16' if kernel_says_fast_bf16() else 'float32'}-{isa}"


def _check(args: list[str], golden: str, tmp_path: Path, monkeypatch, shared_data: Path) -> None:
    if not (shared_data / "code_alpaca_2k.json").is_file():
        pytest.skip(f"real-data test: {shared_data / 'code_alpaca_2k.json'} is absent")
    if not (GOLDEN / golden).is_file():
        # A skip even under CI: a CI host of another kind has no digest yet (a wrong dtype choice does not land
        # here: the signature comes from /proc/cpuinfo, so it picks this machine's digest and fails against it).
        pytest.skip(f"no digest recorded for this machine ({golden}): run the job, then "
                "python -m tests.golden.digest OUT > tests/golden/" + golden)
    # A working directory whose ../shared is SHARED, so that CODE_ALPACA reads as recorded wherever SHARED is.
    (tmp_path / "shared").symlink_to(shared_data.parent.resolve())
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    run(args + [f"--output={tmp_path / 'out'}"])
    expected = json.loads((GOLDEN / golden).read_text())
    actual = output_digest(str(tmp_path / "out"))
    assert actual["stages"] == expected["stages"]
    assert actual["parquet"] == expected["parquet"]


def test_extraction_job_on_code_alpaca_matches_its_golden_digest(tmp_path, monkeypatch, shared_data):
    _check(EXTRACTION_ARGS, "extract_code_alpaca_2k.json", tmp_path, monkeypatch, shared_data)


@pytest.mark.engine
def test_small_greedy_main_job_on_transformers_matches_its_golden_digest(tmp_path, monkeypatch, shared_data):
    _check(MAIN_ARGS, f"main_transformers_greedy.{compute_signature()}.json", tmp_path, monkeypatch, shared_data)
