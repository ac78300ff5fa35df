"""The sandbox runs this process's own interpreter (a read-only mirror of it where uid 65534 cannot reach the
installation), and the mirror holds what the interpreter needs and nothing a sandbox could use or change."""
from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

from tests.transforms.execute.test_hostile import no_sandbox_process_remains, value_of  # noqa: F401 - autouse fixture
from transforms.execute import isolation, sandbox_python

pytestmark = pytest.mark.skipif(not isolation.bwrap_available(), reason="bubblewrap is not usable here")


@pytest.fixture
def reachable_tmp():
    """A root-owned directory uid 65534 can reach (pytest's tmp_path lies under a mode-700 directory)."""
    path = Path(tempfile.mkdtemp(prefix="sandbox-python-test-", dir="/tmp"))
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_the_sandbox_runs_this_processes_interpreter():
    inside = value_of("import sys\ndef probe():\n    return [sys.version, sys.prefix, sys.flags.no_site]\n")
    assert inside == [sys.version, os.path.realpath(sys.base_prefix), 1]


def test_code_inside_cannot_write_to_the_interpreter():
    target = os.path.realpath(os.path.join(os.path.realpath(sys.base_prefix), "lib",
                                           f"python{sys.version_info.major}.{sys.version_info.minor}", "os.py"))
    result = value_of("def probe(path):\n    try:\n        open(path, 'a').close()\n    except OSError as e:\n"
                      "        return type(e).__name__\n    return 'written'\n", args=(target,))
    assert result in ("PermissionError", "OSError")


def _fake_installation(root: Path) -> sandbox_python.Installation:
    prefix = root / "prefix"
    for relative, text in {"bin/python3.11": "#!exe", "lib/libpython3.11.so.1.0": "lib", "lib/libpython3.so": "l3",
                           "lib/python3.11/os.py": "# os", "lib/python3.11/json/__init__.py": "# json",
                           "lib/python3.11/lib-dynload/_ssl.so": "so",
                           "lib/python3.11/site-packages/secret.py": "TOKEN = 1",
                           "lib/python3.11/test/test_os.py": "# big", "lib/other.txt": "not python"}.items():
        path = prefix / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    os.chmod(prefix / "bin/python3.11", 0o755)
    (prefix / "lib/python3.11/encodings_link").symlink_to("json")
    return sandbox_python.Installation(str(prefix / "bin/python3.11"), str(prefix), "3.11")


def test_a_mirror_holds_the_executable_the_shared_libraries_and_the_standard_library_only(reachable_tmp):
    installation = _fake_installation(reachable_tmp)
    mirror = sandbox_python.mirror(installation, reachable_tmp / "mirrors")
    files = sorted(str(p.relative_to(mirror)) for p in mirror.rglob("*") if p.is_file() or p.is_symlink())
    assert files == ["bin/python3.11", "lib/libpython3.11.so.1.0", "lib/libpython3.so",
                     "lib/python3.11/encodings_link", "lib/python3.11/json/__init__.py",
                     "lib/python3.11/lib-dynload/_ssl.so", "lib/python3.11/os.py"]
    assert (mirror / "lib/python3.11/os.py").read_text() == "# os"
    assert os.readlink(mirror / "lib/python3.11/encodings_link") == "json"
    assert os.access(mirror / "bin/python3.11", os.X_OK)
    assert sandbox_python.usable(mirror)
    # built once: a second call finds the same directory and leaves it alone; no scratch directory remains
    before = os.stat(mirror).st_ino
    assert sandbox_python.mirror(installation, reachable_tmp / "mirrors") == mirror
    assert os.stat(mirror).st_ino == before
    assert [p.name for p in (reachable_tmp / "mirrors").iterdir()] == [mirror.name]


def test_a_replaced_interpreter_gets_a_new_mirror(reachable_tmp):
    installation = _fake_installation(reachable_tmp)
    first = sandbox_python.mirror(installation, reachable_tmp / "mirrors")
    library = Path(installation.prefix) / "lib/libpython3.11.so.1.0"
    library.unlink()
    library.write_text("a rebuilt library")
    second = sandbox_python.mirror(installation, reachable_tmp / "mirrors")
    assert second != first
    assert (second / "lib/libpython3.11.so.1.0").read_text() == "a rebuilt library"


def test_a_mirror_others_can_write_to_is_not_used(reachable_tmp):
    installation = _fake_installation(reachable_tmp)
    mirror = sandbox_python.mirror(installation, reachable_tmp / "mirrors")
    os.chmod(mirror, 0o777)
    with pytest.raises(sandbox_python.MirrorUnavailable, match="writable by others"):
        sandbox_python.mirror(installation, reachable_tmp / "mirrors")
    os.chmod(mirror, 0o755)
    os.chown(mirror, 65534, 65534)
    with pytest.raises(sandbox_python.MirrorUnavailable):
        sandbox_python.mirror(installation, reachable_tmp / "mirrors")


def test_an_installation_without_a_standard_library_is_refused(reachable_tmp):
    installation = _fake_installation(reachable_tmp)
    os.unlink(Path(installation.prefix) / "lib/python3.11/os.py")
    with pytest.raises(sandbox_python.MirrorUnavailable, match="no standard library"):
        sandbox_python.mirror(installation, reachable_tmp / "mirrors")


@pytest.mark.skipif(os.geteuid() != 0 or isolation._reachable_by_others(sys.base_prefix),
                    reason="the mirror is used only when root runs an interpreter others cannot reach")
def test_without_a_mirror_the_system_python_runs_with_a_warning(monkeypatch, caplog):
    private = Path(tempfile.mkdtemp(prefix="sandbox-python-private-", dir="/tmp"))  # mode 700: unreachable
    monkeypatch.setattr(sandbox_python, "MIRROR_ROOT", private / "mirrors")
    isolation.interpreter.cache_clear()
    try:
        with caplog.at_level(logging.WARNING, logger=isolation.log.name):
            python, binds = isolation.interpreter()
        assert python == f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}" and binds == ()
        assert "not this process's interpreter" in caplog.text
        assert f"{private / 'mirrors'} is not reachable" in caplog.text
        assert not (private / "mirrors").exists() or not any((private / "mirrors").iterdir())  # nothing built
    finally:
        isolation.interpreter.cache_clear()
        shutil.rmtree(private, ignore_errors=True)
