"""``inverse-instruct report DIR`` on a directory that is not a finished run, or whose files were damaged or
deleted: one line naming what is wrong, exit code 2, never a traceback and never a silent success."""
from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from beam_pipelines.report import main as report_main

PROG = "inverse-instruct report"
STAGES = {"read": {"records_in": 3, "records_out": 3, "rejected": {}, "rejected_total": 0, "fanout": 1,
                   "balanced": True}}


def _output(directory, name, rows):
    """A Parquet output as the writers lay it out (one shard and its shards.json), written here by hand."""
    directory.joinpath(name).mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows), directory / name / "part-00000-of-00001.parquet")
    (directory / name / "shards.json").write_text(json.dumps({"shards": [{"path": "part-00000-of-00001.parquet"}]}))


@pytest.fixture
def run_dir(tmp_path):
    """A main-job output with snippets, scored and selected, and a manifest listing them."""
    out = tmp_path / "run"
    _output(out, "snippets", [{"language": "python"}])
    _output(out, "scored", [{"id": "a", "score": 0.5, "instruction": "Add two numbers."}])
    _output(out, "selected", [{"id": "a", "score": 0.5, "instruction": "Add two numbers.", "code": "def f(): pass",
                               "language": "python", "snippet_id": "s"}])
    manifest = {"job": "inverse-instruct", "stages": STAGES, "stage_order": ["read"], "balanced": True,
                "outputs": {"snippets": "snippets/", "scored": "scored/", "selected": "selected/"}}
    (out / "manifest.json").write_text(json.dumps(manifest))
    return out


def _report(path, capsys):
    code = report_main([str(path)])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err


def test_an_intact_run_is_reported(run_dir, capsys):
    assert _report(run_dir, capsys) == (0, "")


def test_a_corrupt_parquet_file_is_named_and_the_rest_is_reported(run_dir, capsys):
    broken = run_dir / "selected" / "part-00000-of-00001.parquet"
    broken.write_bytes(b"PAR1 not really parquet")
    code, err = _report(run_dir, capsys)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith(f"{PROG}: ") and str(broken) in err, err
    page = (run_dir / "report.html").read_text()
    assert "Outputs left out of this report" in page and "Judge scores" in page  # scored/ is still shown


def test_deleted_outputs_are_named(run_dir, capsys):
    for name in ("scored", "selected"):
        for f in (run_dir / name).iterdir():
            f.unlink()
        (run_dir / name).rmdir()
    code, err = _report(run_dir, capsys)
    assert code == 2
    assert err.count("\n") == 1 and f"{run_dir}/scored/ is missing" in err and f"{run_dir}/selected/ is missing" in err


def test_a_missing_directory_or_a_file_is_said_as_such(tmp_path, capsys):
    assert _report(tmp_path / "nothing", capsys) == (2, f"{PROG}: {tmp_path / 'nothing'} does not exist\n")
    (tmp_path / "a-file").write_text("x")
    assert _report(tmp_path / "a-file", capsys) == (2, f"{PROG}: {tmp_path / 'a-file'} is not a directory\n")


@pytest.mark.parametrize("manifest", [
    {},
    {"stages": "x", "job": "generate"},
    {"job": "self-play"},
    {"stages": {"read": {"records_in": "3", "records_out": 3, "rejected": {}, "balanced": True}}},
    {"stages": {"read": []}},
    {"stages": STAGES, "stage_order": ["read", "extract"]},
    {"stages": STAGES, "selected_scores": [1, 2]},
])
def test_a_manifest_of_the_wrong_shape_is_one_line(manifest, tmp_path, capsys):
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    code, err = _report(tmp_path, capsys)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith(f"{PROG}: {tmp_path}/manifest.json"), err


@pytest.mark.parametrize("summary", [{}, {"model": "m"}, {"rows": "x"}])
def test_a_summary_without_results_is_not_a_success(summary, tmp_path, capsys):
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    code, err = _report(tmp_path, capsys)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith(f"{PROG}: {tmp_path}/summary.json"), err


def test_report_piped_into_head_still_renders_the_page(run_dir, monkeypatch):
    # `inverse-instruct report DIR | head`: the reader goes away, the first print raises BrokenPipeError; the page
    # was rendered only after the summary was printed, so it was never written.
    import builtins

    def closed_pipe(*args, **kwargs):
        if kwargs.get("file") is None:
            raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(builtins, "print", closed_pipe)
    with pytest.raises(BrokenPipeError):
        report_main([str(run_dir)])
    assert (run_dir / "report.html").is_file()
