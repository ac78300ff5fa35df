"""An output that cannot be written (a full disk, a file where a directory goes) ends the job with one line naming
the file and exit code 2, not a bug's traceback; an error of the code producing the bytes is not relabelled."""
from __future__ import annotations

import errno
import json

import fsspec.implementations.local as fsspec_local
import pytest

from beam_pipelines.inverse_instruct import JOB
from beam_pipelines.inverse_instruct import main as main_job
from beam_pipelines.launch import pipeline_options
from transforms.io.filesystems import OutputWriteError, atomic_write
from transforms.io.spill import SpillWriter


class _FullDisk:
    """A file on a disk with no space left: every write fails as the OS fails it."""

    def write(self, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    def close(self):
        pass


def test_a_full_disk_names_the_file_and_leaves_no_partial_file(tmp_path, monkeypatch):
    monkeypatch.setattr(fsspec_local.LocalFileSystem, "open", lambda self, path, mode="rb", **kw: _FullDisk())
    target = tmp_path / "part-0.parquet"
    with pytest.raises(OutputWriteError, match=r"cannot write .*part-0\.parquet: OSError: .*No space left"):
        atomic_write(str(target), lambda f: f.write(b"x" * 10))
    assert list(tmp_path.iterdir()) == []


def test_an_error_of_the_body_itself_is_not_called_a_write_error(tmp_path):
    def failing_body(_):
        raise OSError("spill file truncated")  # a failed read while producing the bytes

    with pytest.raises(OSError, match="spill file truncated") as caught:
        atomic_write(str(tmp_path / "out.bin"), failing_body)
    assert not isinstance(caught.value, OutputWriteError)
    assert list(tmp_path.iterdir()) == []


def test_a_spill_directory_that_cannot_be_written_names_its_file(tmp_path):
    (tmp_path / "spill").write_text("a file where the spill directory goes")
    writer = SpillWriter(str(tmp_path / "spill"))
    with pytest.raises(OutputWriteError, match="cannot write .*spill"):
        writer.append({"id": "a"})


def test_the_job_reports_an_unwritable_output_in_one_line_with_exit_code_2(tmp_path, capsys):
    corpus = tmp_path / "pairs.jsonl"
    corpus.write_text(json.dumps({"instruction": "Add.", "output": "def add(a, b):\n    return a + b"}) + "\n")
    out = tmp_path / "out"
    argv = [f"--input={corpus}", "--response-column=output", "--stages=extract", f"--output={out}", "--quiet"]
    pipeline_options(argv, JOB)  # the run.json of an earlier try of this run: the directory is this run's
    (out / "snippets").write_text("a file where the snippets/ directory goes")
    code = main_job(argv)
    err = capsys.readouterr().err
    assert code == 2
    assert "error: cannot write" in err and "snippets" in err and "Traceback" not in err
    assert not (out / "manifest.json").exists()
