"""What a failed write of an output says: the file it was writing, as an ``OutputWriteError``. Pure (no Beam)."""
from __future__ import annotations

import contextlib
from typing import Iterator


class OutputWriteError(OSError):
    """An output cannot be written: a full disk, a read-only or unreachable place, a file where a directory must be.
    Not a bug of the job: launchers report it in one line (``beam_pipelines.launch.user_error_classes``)."""


@contextlib.contextmanager
def writing(path: str) -> Iterator[None]:
    """Around the writing of ``path``: an ``OSError`` becomes an ``OutputWriteError`` that names the file."""
    try:
        yield
    except OutputWriteError:
        raise
    except OSError as err:
        raise OutputWriteError(f"cannot write {path}: {type(err).__name__}: {err}") from err
