"""A bounded pool of sandbox runs, usable inside a Beam DoFn (create it in ``setup``, close it in ``teardown``).

Threads over subprocesses: each worker thread spends its time waiting on its sandbox's pipes, with the GIL
released, so ``workers`` sandboxes run at once. Any verdict function of ``verdicts.py`` can be submitted.
"""
from __future__ import annotations

import concurrent.futures
from typing import Any, Callable, Iterable, TypeVar

T = TypeVar("T")


class SandboxPool:
    def __init__(self, workers: int):
        if workers < 1:
            raise ValueError(f"a sandbox pool needs at least one worker, got {workers}")
        self.workers = workers
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sandbox")

    def submit(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> "concurrent.futures.Future[T]":
        return self._executor.submit(fn, *args, **kwargs)

    def map(self, fn: Callable[..., T], *iterables: Iterable[Any]) -> list[T]:
        """``fn`` over the zipped iterables, results in input order; re-raises the first error."""
        return list(self._executor.map(fn, *iterables))

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> "SandboxPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
