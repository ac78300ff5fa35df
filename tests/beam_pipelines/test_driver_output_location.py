"""The drivers (paper, self-play loop) and the self-play merge refuse an empty --output or the file system's root,
as the jobs do: their markers, logs and shards would land in / (or in the current directory)."""
from __future__ import annotations

import argparse

import pytest

from beam_pipelines import self_play_merge
from beam_pipelines.steps import require_local_output


@pytest.mark.parametrize("output", ["", "  ", "/", "//", "/tmp/.."])
def test_a_driver_refuses_an_empty_or_root_output(output, capsys):
    parser = argparse.ArgumentParser(prog="driver")
    with pytest.raises(SystemExit) as stopped:
        require_local_output(parser, output)
    assert stopped.value.code == 2
    assert "--output" in capsys.readouterr().err


def test_a_driver_accepts_a_directory_of_its_own(tmp_path):
    require_local_output(argparse.ArgumentParser(prog="driver"), str(tmp_path / "run"))


@pytest.mark.parametrize("output", ["", "/"])
def test_the_self_play_merge_refuses_an_empty_or_root_output_before_reading_rounds(output, capsys):
    assert self_play_merge.main(["--round", "/nonexistent-round", "--output", output]) == 2
    err = capsys.readouterr().err
    assert "--output" in err and "nonexistent-round" not in err
