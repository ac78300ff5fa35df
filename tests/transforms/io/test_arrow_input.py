"""transforms.io.arrow_input: local Parquet is read through Arrow's own file, anything else through the caller's."""
from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from transforms.io.arrow_input import local_path, parquet_input


@pytest.mark.parametrize("url, local", [
    ("/data/a.parquet", "/data/a.parquet"),
    ("relative/a.parquet", "relative/a.parquet"),
    ("file:///data/a.parquet", "/data/a.parquet"),
    ("gs://bucket/a.parquet", None),
    ("memory://a.parquet", None),
])
def test_local_path(url, local):
    assert local_path(url) == local


def test_a_local_file_is_arrows_own_and_a_remote_one_the_callers(tmp_path):
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"n": [1, 2, 3]}), path)
    remote_calls = []

    def open_remote(url):
        remote_calls.append(url)
        return open(path, "rb")

    for url in (str(path), f"file://{path}"):
        with parquet_input(url, open_remote) as handle:
            assert isinstance(handle, pa.OSFile)
            assert pq.ParquetFile(handle).read(use_threads=False).column("n").to_pylist() == [1, 2, 3]
    assert remote_calls == []
    with parquet_input("memory://t.parquet", open_remote) as handle:
        assert not isinstance(handle, pa.NativeFile)
        assert pq.ParquetFile(handle).metadata.num_rows == 3
    assert remote_calls == ["memory://t.parquet"]


def test_a_missing_local_file_is_an_os_error(tmp_path):
    with pytest.raises(OSError):
        parquet_input(str(tmp_path / "missing.parquet"), open_remote=lambda url: None)


def test_a_remote_file_opens_with_fsspec_by_default():
    import fsspec

    with fsspec.open("memory://arrow-input/t.parquet", "wb") as out:
        pq.write_table(pa.table({"n": [4, 5]}), out)
    with parquet_input("memory://arrow-input/t.parquet") as handle:
        assert not isinstance(handle, pa.NativeFile)
        assert pq.ParquetFile(handle).read(use_threads=False).column("n").to_pylist() == [4, 5]
