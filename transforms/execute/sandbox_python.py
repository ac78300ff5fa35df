"""Which Python the sandbox runs: the project's own base interpreter, so that a verdict reached inside holds for
the interpreter that trains and evaluates on it.

The sandbox runs as host uid 65534, which cannot reach an interpreter installed under a private home (pyenv under
``/root``, mode 700). Then the interpreter's installation is mirrored once per machine into a directory that
uid can read (``MIRROR_ROOT``): the executable, its shared libraries and the standard library (not
``site-packages``, which ``-s -S`` never reads, nor the ``test`` package), hard-linked where the file system
allows, copied otherwise. The sandbox binds the mirror read-only at the installation's own path, so
``sys.prefix``, the shared library's run path and every file are the ones outside.

The mirror's name is a digest of what it mirrors (version, paths, sizes and modification times of the
executable and shared libraries), so a changed interpreter gets a new mirror; it is built in a scratch
directory and renamed into place, so concurrent workers never see half of one; and it is used only while root
owns it and nobody else can write to it.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import stat
import sys
import tempfile
from pathlib import Path

MIRROR_ROOT = Path("/var/cache/inverse-instruct/sandbox-python")
SKIPPED_STDLIB_DIRS = ("site-packages", "test")  # never read under -s -S / not the library code runs on


class MirrorUnavailable(RuntimeError):
    """The interpreter cannot be mirrored here (read-only cache, unusual layout); the caller falls back."""


@dataclasses.dataclass(frozen=True)
class Installation:
    """A Python installation as the sandbox needs it: the executable lies under ``prefix``."""
    executable: str
    prefix: str
    version: str  # "3.11"

    @property
    def stdlib(self) -> Path:
        return Path(self.prefix) / "lib" / f"python{self.version}"

    def shared_libraries(self) -> list[Path]:
        lib = Path(self.prefix) / "lib"
        return sorted(p for p in lib.glob("libpython*.so*") if p.is_file())


def current_installation() -> Installation:
    executable = os.path.realpath(getattr(sys, "_base_executable", None) or sys.executable)
    return Installation(executable, os.path.realpath(sys.base_prefix),
                        f"{sys.version_info.major}.{sys.version_info.minor}")


def mirror_key(installation: Installation) -> str:
    """A digest naming the mirror: it changes when the executable or a shared library is replaced."""
    digest = hashlib.sha256(f"{sys.version}\0{installation.executable}\0{installation.prefix}".encode())
    for path in [Path(installation.executable), *installation.shared_libraries(), installation.stdlib / "os.py"]:
        st = path.stat()
        digest.update(f"\0{path}\0{st.st_size}\0{st.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


def usable(path: Path) -> bool:
    """Whether a mirror at ``path`` may be run: it and every directory above it are owned by root and writable by
    nobody else (a sticky ancestor such as /tmp is fine: others cannot rename our directory away), and uid 65534
    can reach it."""
    for d in [path, *path.parents]:
        st = d.lstat()
        if stat.S_ISLNK(st.st_mode) or not st.st_mode & stat.S_IXOTH:
            return False
        if d != path and st.st_mode & stat.S_ISVTX:
            continue
        if st.st_uid != 0 or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            return False
    return True


def _make_reachable_dirs(path: Path) -> None:
    missing = [d for d in [path, *path.parents] if not d.exists()]
    for d in reversed(missing):
        d.mkdir(exist_ok=True)
        os.chmod(d, 0o755)


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def _populate(installation: Installation, scratch: Path) -> None:
    prefix = Path(installation.prefix)
    executable = Path(installation.executable)
    relative = executable.relative_to(prefix)
    (scratch / relative.parent).mkdir(parents=True, exist_ok=True)
    _link_or_copy(executable, scratch / relative)
    (scratch / "lib").mkdir(exist_ok=True)
    for library in installation.shared_libraries():
        _link_or_copy(library, scratch / "lib" / library.name)
    stdlib = installation.stdlib
    for root, dirs, files in os.walk(stdlib):
        here = Path(root)
        if here == stdlib:
            dirs[:] = [d for d in dirs if d not in SKIPPED_STDLIB_DIRS]
        target_dir = scratch / here.relative_to(prefix)
        target_dir.mkdir(parents=True, exist_ok=True)
        for name in [d for d in dirs if (here / d).is_symlink()]:
            os.symlink(os.readlink(here / name), target_dir / name)
        for name in files:
            source = here / name
            if source.is_symlink():
                os.symlink(os.readlink(source), target_dir / name)
            elif source.is_file():
                _link_or_copy(source, target_dir / name)
    for d in [scratch, *(p for p in scratch.rglob("*") if p.is_dir() and not p.is_symlink())]:
        os.chmod(d, 0o755)


def mirror(installation: Installation, root: Path | None = None) -> Path:
    """The mirror of ``installation`` under ``root`` (``MIRROR_ROOT``), built if missing. Raises
    ``MirrorUnavailable``."""
    root = MIRROR_ROOT if root is None else root
    if not installation.executable.startswith(installation.prefix.rstrip("/") + "/"):
        raise MirrorUnavailable(f"{installation.executable} does not lie under its prefix {installation.prefix}")
    if not (installation.stdlib / "os.py").is_file():
        raise MirrorUnavailable(f"no standard library at {installation.stdlib}")
    try:
        target = root / mirror_key(installation)
        if not target.exists():
            _make_reachable_dirs(root)
            if not usable(root):
                raise MirrorUnavailable(f"{root} is not reachable by uid 65534, or not owned by root, or writable "
                                        "by others")
            scratch = Path(tempfile.mkdtemp(prefix=".building-", dir=root))
            try:
                _populate(installation, scratch)
                os.rename(scratch, target)
            except OSError:
                if not target.exists():
                    raise
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
    except OSError as e:
        raise MirrorUnavailable(f"cannot mirror {installation.prefix} into {root}: {e}") from e
    if not usable(target):
        raise MirrorUnavailable(f"{target} is not reachable by uid 65534, or not owned by root, or writable by "
                                "others; not used")
    return target
