"""A directory where ``atomic_write`` must put a file is an OutputWriteError, and no temp file is left in it."""
from __future__ import annotations

import pytest

from transforms.io.filesystems import atomic_write
from transforms.io.output_errors import OutputWriteError


def test_a_directory_in_place_of_the_file_is_an_output_write_error_and_leaves_nothing(tmp_path):
    in_the_way = tmp_path / "run.json"
    in_the_way.mkdir()
    (in_the_way / "keep.txt").write_text("mine")
    with pytest.raises(OutputWriteError, match="run.json") as err:
        atomic_write(str(in_the_way), lambda f: f.write(b"{}\n"))
    assert "\n" not in str(err.value)
    assert sorted(p.name for p in in_the_way.iterdir()) == ["keep.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.json"]
