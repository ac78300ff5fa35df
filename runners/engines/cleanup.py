"""Process clean-up of engines that run subprocesses (the engine server, or vLLM's own EngineCore and workers).

``close()`` of every live engine runs at interpreter exit and on SIGTERM/SIGHUP (when the engine lives in the main
thread); a small watchdog process kills an engine's subprocesses if the owning process dies without running any
Python (SIGKILL).
"""
from __future__ import annotations

import atexit
import logging
import os
import signal
import subprocess
import sys
import threading
import weakref
from typing import Any, Sequence

LOG = logging.getLogger(__name__)

LIVE_ENGINES: "weakref.WeakSet[Any]" = weakref.WeakSet()
_HOOKS_INSTALLED = False
_HOOKS_LOCK = threading.Lock()


def close_all_engines() -> None:
    # At interpreter exit pytest/Beam may have closed the log streams vLLM's shutdown warns on; a failed log
    # write must not print a traceback over a clean shutdown.
    logging.raiseExceptions = False
    for engine in list(LIVE_ENGINES):
        try:
            engine.close()
        except Exception:  # shutting down: keep closing the others
            LOG.exception("closing %r failed", engine)


def _on_termination_signal(signum, frame):
    close_all_engines()
    # Re-deliver the signal with the default action so the exit status still says how we died.
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def install_cleanup_hooks() -> None:
    global _HOOKS_INSTALLED
    with _HOOKS_LOCK:
        if _HOOKS_INSTALLED:
            return
        _HOOKS_INSTALLED = True
        atexit.register(close_all_engines)
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers can only be set from the main thread; the watchdog still covers us
        for signum in (signal.SIGTERM, signal.SIGHUP):
            if signal.getsignal(signum) in (signal.SIG_DFL, None):
                signal.signal(signum, _on_termination_signal)


# Runs in its own session so a signal to our process group does not take it down before it can clean up.
_WATCHDOG_SOURCE = r"""
import os, sys, time
owner = int(sys.argv[1])
targets = [tuple(item.split(":")) for item in sys.argv[2:]]
while os.getppid() == owner:
    time.sleep(0.5)
import psutil
procs = []
for pid, created in targets:
    try:
        proc = psutil.Process(int(pid))
        if abs(proc.create_time() - float(created)) < 1.0:
            procs.extend(proc.children(recursive=True))
            procs.append(proc)
    except psutil.Error:
        pass
for proc in procs:
    try:
        proc.terminate()
    except psutil.Error:
        pass
_, alive = psutil.wait_procs(procs, timeout=5)
for proc in alive:
    try:
        proc.kill()
    except psutil.Error:
        pass
"""


def start_watchdog(child_pids: Sequence[int]) -> subprocess.Popen | None:
    import psutil

    targets = []
    for pid in child_pids:
        try:
            targets.append(f"{pid}:{psutil.Process(pid).create_time()}")
        except psutil.Error:
            pass
    if not targets:
        return None
    return subprocess.Popen(
        [sys.executable, "-c", _WATCHDOG_SOURCE, str(os.getpid()), *targets],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True, close_fds=True)


def stop_watchdog(watchdog: subprocess.Popen | None) -> None:
    """Stop a watchdog from ``start_watchdog`` once its engine has shut down cleanly."""
    if watchdog is None:
        return
    watchdog.terminate()
    try:
        watchdog.wait(5)
    except subprocess.TimeoutExpired:
        watchdog.kill()


def is_resource_tracker(proc) -> bool:
    try:
        return any("resource_tracker" in part for part in proc.cmdline())
    except Exception:
        return False


def with_descendants(procs) -> list:
    import psutil

    alive = []
    for proc in procs:
        try:
            if proc.is_running():
                alive.extend(proc.children(recursive=True))
                alive.append(proc)
        except psutil.Error:
            pass
    return alive


def terminate(procs) -> None:
    """SIGTERM, then SIGKILL after 5 s, whatever vLLM's own shutdown left running."""
    import psutil

    for proc in procs:
        try:
            proc.terminate()
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(procs, timeout=5)
    for proc in alive:
        try:
            proc.kill()
        except psutil.Error:
            pass
