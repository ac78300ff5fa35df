"""OS isolation for model-written Python: bubblewrap namespaces, an unprivileged uid, rlimits and a wall clock.

Each ``SandboxProcess`` is one interpreter started by ``bwrap`` with:

* every namespace unshared (``--unshare-all --unshare-user``): no network (loopback is the sandbox's own), its
  own PID namespace and ``/proc`` (the parent's ``/proc/<pid>`` entries do not exist there), IPC, UTS, cgroup;
  nested user namespaces disabled (``--disable-userns``), so the program cannot gain capabilities or mount an
  unbounded tmpfs in a namespace of its own;
* a whitelisted, read-only file system: a fresh tmpfs root holding only ``/usr`` (and the ``/bin``, ``/lib*``
  links into it), the interpreter's prefix when it lies elsewhere, OpenSSL's configuration file (which decides
  the hash algorithms ``hashlib`` offers: ``openssl_config_args``), ``/proc``, a minimal read-only ``/dev`` and a
  private size-limited tmpfs work dir ``/sandbox``. Nothing else exists inside: not the project, ``/work``,
  ``/root``, ``/tmp``, outputs or benchmark data. That is stronger than hiding a list of paths with tmpfs, since a
  path nobody thought of (an output bucket's mount, another user's home) is absent too;
* ``--clearenv`` (a few fixed variables are set), ``--new-session`` (no terminal injection),
  ``--die-with-parent``, uid/gid 65534 inside;
* resource limits set by the agent before any of the program's code runs: CPU, address space, file size,
  open files, process count (``RLIMIT_NPROC``), no core files.

``RLIMIT_NPROC`` and root: the kernel skips the process-count check for tasks whose real uid is the host's root,
and bwrap started by root maps the sandbox uid to host uid 0. So when the parent is root, ``bwrap`` itself is
started as host uid/gid 65534 (through ``setpriv``, so ``subprocess`` still vforks): the sandbox then runs
as host "nobody", and since Linux 5.14 ``RLIMIT_NPROC`` is counted per user namespace, i.e. per sandbox (the
interpreter counts as 1). The interpreter is PID 1 of its namespace (``--as-pid-1``), so bwrap reaps it itself
(bwrap's own init would be left a zombie of the host's init after a kill).
Memory in total: each process is capped by ``RLIMIT_AS``, at most
``max_processes`` processes exist, so a sandbox holds at most ``max_processes x memory_mb`` of address space, plus
its tmpfs (``file_size_mb``) and memfd/pipe buffers (each file capped by ``RLIMIT_FSIZE``, their number by
``RLIMIT_NOFILE``). A cgroup would bound it more tightly, but needs a writable cgroup tree that Beam workers lack.
A plain script (``run_plain_script``, the literal check of a training text) has no ``RLIMIT_AS``, as a plain run
has none, runs as one process (no fork, no thread), and has half a plain run's C stack
(``PLAIN_SCRIPT_STACK_BYTES``), so that what passes there does not crash a plain run by chance. Its sandbox's
PID 1 is a supervisor instead of the script (``_SCRIPT_BOOTSTRAP``): it forks the script, sums the memory held
below it every ``MEMORY_POLL_S`` (resident pages, page tables, shared mappings at their whole size) and kills it
once the sum passes ``memory_mb``; the script can grow by what it touches in one poll. It runs in the sandbox, so
no lock of the parent's (Python's GIL in a busy Beam worker) can delay it.

The interpreter: the project's base interpreter (``sys.base_prefix``; the venv is never needed, ``-s -P -S``
gives the standard library only). When the sandbox user cannot reach it (here pyenv under ``/root``, mode 700), a
read-only mirror of it (``sandbox_python``) is bound at its own path; only when no mirror can be made does the
system ``/usr/bin/pythonX.Y`` of the same version run, with a warning.

Killing: the wall clock is kept by the parent. At the end of a run, timed out or not, the sandbox's PID 1 gets
SIGKILL through a pidfd; the kernel then kills every process of the PID namespace (double-forked ``setsid``
daemons included, which were re-parented to PID 1) before PID 1 is gone, and ``close`` returns only after that.

Without bwrap, ``IsolationUnavailable`` names the Debian package; ``allow_unisolated=True`` runs the interpreter
directly with the same rlimits and a loud warning (no namespaces: for development only).
"""
from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
import re
import secrets
import selectors
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from transforms.execute import sandbox_python, syscall_filter

log = logging.getLogger(__name__)

SANDBOX_UID = 65534  # "nobody", inside the sandbox and, when the parent is root, on the host too
# Interpreter flags: ``-I`` without ``-E``, so the fixed PYTHONHASHSEED below is read. The environment is ours alone
# (``--clearenv``, or an explicit ``env`` unisolated), so no other PYTHON* variable can reach the interpreter.
PYTHON_FLAGS = ("-s", "-P", "-S", "-B")
# str/bytes hashes, hence set and dict-view iteration order, are the same in every run, so a puzzle whose answer
# depends on set order gets the same verdict every time (with -I each interpreter drew a random seed).
HASH_SEED = "0"


def drawn_hash_seed() -> str:
    """A hash seed drawn from the kernel, never 0 (the seed of the sandboxes of ``g`` and ``f(answer)``), for the
    checks that must see what plain Python sees, which draws a seed at random: the trivial-answer test (the
    literal check, a plain script, leaves the seed to its interpreter). An answer that holds under seed 0 only (a
    set's order, ``hash(s) % 1000``) must not pass, and neither must one tuned to any seed known in advance: a
    fixed second seed was searched for (a red team found a string whose set order held under 0 and 1), and so
    was one derived from the program's text (a comment in ``g`` varied 4,830 times). A verdict that rests on the
    seed can therefore differ between runs, as it does between two plain runs; no other verdict does."""
    import secrets

    return str(1 + secrets.randbelow(2 ** 32 - 1))  # PYTHONHASHSEED takes 0..4294967295
WORK_DIR = "/sandbox"
# Appears in every sandbox interpreter's command line, so tests can find strays from outside.
PROCESS_MARKER = "inverse-instruct-sandbox"
BWRAP_PACKAGE = "bubblewrap"


class IsolationUnavailable(RuntimeError):
    """bubblewrap is missing or does not work here, and running unisolated was not allowed."""


class SandboxFailure(BaseException):
    """The sandboxed process did not give a usable answer: ``kind`` is ``timeout``, ``crashed`` (it exited or
    was killed), ``protocol`` (it wrote something that is not an answer) or ``setup``. A ``BaseException`` so
    that trusted test code running ``except Exception`` around a proxied call cannot swallow it."""

    def __init__(self, kind: str, detail: str, *, names_its_cause: bool = False):
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail
        # A timeout's verdict reason is "timeout" alone unless the detail names a cause of its own (one call's
        # limit, not the run's); the other kinds always give their detail.
        self.names_its_cause = names_its_cause


@dataclasses.dataclass(frozen=True)
class IsolationLimits:
    timeout_s: float = 10.0  # wall clock of one run (spawn, load and all calls)
    cpu_s: int = 10  # per process
    memory_mb: int = 1024  # address space per process; a plain script: resident memory, all its processes
    file_size_mb: int = 8  # any file written, and the size of the /sandbox tmpfs
    open_files: int = 64
    max_processes: int = 4  # tasks in the sandbox's user namespace, the interpreter included
    output_tail_chars: int = 2000  # how much of stdout/stderr is kept
    max_message_bytes: int = 8 << 20  # largest answer the parent reads (and the largest result encoded)

    def __post_init__(self) -> None:
        numbers = dataclasses.asdict(self)
        if any(v <= 0 for v in numbers.values()):
            raise ValueError(f"isolation limits must be positive: {self}")
        if self.max_processes < 1:
            raise ValueError("max_processes counts the interpreter: at least 1")
        if self.open_files < 16:
            raise ValueError("open_files below 16 leaves the interpreter unable to start")

    def within(self, seconds: float) -> "IsolationLimits":
        """These limits with a wall clock of ``seconds``, and a CPU limit to match (whole seconds, at least 1)."""
        return dataclasses.replace(self, timeout_s=seconds, cpu_s=max(1, int(seconds)))


@dataclasses.dataclass(frozen=True)
class ProcessResult:
    """What a raw program did. Nothing here is a verdict: exit codes and output come from untrusted code."""
    returncode: int | None
    timed_out: bool
    duration_s: float
    stdout: str
    stderr: str
    isolated: bool
    memory_exceeded: bool = False  # a plain script's resident memory passed ``memory_mb`` and the run was ended


def death_signal(returncode: int | None, reports_128_plus_n: bool) -> int | None:
    """The signal that ended a process, from its exit code: negative for the process itself, 128 + n where a parent
    reports its child's death so (bwrap for the sandbox's PID 1, a plain script's supervisor for the script)."""
    if returncode is None:
        return None
    if returncode < 0:
        return -returncode
    return returncode - 128 if returncode > 128 and reports_128_plus_n else None


# ------------------------------------------------------------------------------------------ environment

def bwrap_path() -> str | None:
    return shutil.which("bwrap") or ("/usr/bin/bwrap" if os.access("/usr/bin/bwrap", os.X_OK) else None)


def _runs_as_nobody() -> bool:
    return os.geteuid() == 0


@functools.lru_cache(maxsize=None)
def _as_nobody() -> tuple[str, ...]:
    """The prefix that starts bwrap as host uid/gid 65534 when the parent is root. ``setpriv`` (util-linux) execs
    bwrap after setting the ids, so ``subprocess`` can vfork: its ``user=``/``group=`` would make it fork() this
    process instead, which runs grpc's fork handlers (Beam loads grpc) in the child, and that child sometimes died
    of SIGBUS before bwrap started."""
    if not _runs_as_nobody():
        return ()
    setpriv = shutil.which("setpriv") or "/usr/bin/setpriv"
    return (setpriv, f"--reuid={SANDBOX_UID}", f"--regid={SANDBOX_UID}", "--clear-groups", "--")


def _reachable_by_others(path: str) -> bool:
    """Whether a process of another, unprivileged uid can reach ``path`` (o+x on every directory above it)."""
    p = Path(path).resolve()
    for d in [*reversed(p.parents)][1:]:
        if not os.stat(d).st_mode & stat.S_IXOTH:
            return False
    return bool(os.stat(p).st_mode & stat.S_IROTH)


@functools.lru_cache(maxsize=None)
def interpreter() -> tuple[str, tuple[tuple[str, str], ...]]:
    """(path of the sandbox's python, (source, destination) directories outside /usr to bind read-only for it)."""
    installation = sandbox_python.current_installation()
    base, prefix = installation.executable, installation.prefix
    own_prefix = () if prefix.startswith("/usr/") or prefix == "/usr" else ((prefix, prefix),)
    if not _runs_as_nobody() or (_reachable_by_others(base) and _reachable_by_others(prefix)):
        return base, own_prefix
    try:
        return base, ((str(sandbox_python.mirror(installation)), prefix),)
    except sandbox_python.MirrorUnavailable as e:
        mirror_problem = str(e)
    system = f"/usr/bin/python{installation.version}"
    if os.access(system, os.X_OK) and _reachable_by_others(system):
        log.warning("the sandbox runs %s, not this process's interpreter %s (%s), so verdicts rest on that "
                    "interpreter's behaviour", system, base, mirror_problem)
        return system, ()
    raise IsolationUnavailable(
        f"no Python {installation.version} the sandbox user (uid {SANDBOX_UID}) can run: {base} is not reachable "
        f"by other users, it cannot be mirrored ({mirror_problem}), and {system} does not exist (Debian package "
        f"python{installation.version})")


_ROOT_DIRECTORIES = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")  # links into /usr on merged-/usr systems


def _root_links() -> list[str]:
    """bwrap arguments recreating /bin, /lib, /lib64, /sbin: links into /usr on merged-/usr systems."""
    args: list[str] = []
    for name in _ROOT_DIRECTORIES:
        host = f"/{name}"
        if os.path.islink(host):
            args += ["--symlink", os.readlink(host), host]
        elif os.path.isdir(host):
            args += ["--ro-bind", host, host]
    return args


# OpenSSL's ``.include`` directive (``.include path`` or ``.include = path``, a comment after it): a file, or a
# directory whose ``*.cnf`` and ``*.conf`` files are read
_OPENSSL_INCLUDE = re.compile(r"^[ \t]*\.include[ \t]*=?[ \t]*([^#\n]*)", re.MULTILINE)
_OPENSSL_INCLUDE_DEPTH = 8
_OPENSSL_DIRECTORY_FILES = (".cnf", ".conf")
_warned_openssl: set[str] = set()


def _warn_openssl_once(message: str) -> None:
    if message not in _warned_openssl:
        _warned_openssl.add(message)
        log.warning("%s: sandboxed code may see other hash algorithms than a plain run", message)


def _openssl_destination_ok(path: str, interpreter_dirs: tuple[str, ...]) -> bool:
    """Whether ``path`` can be a bind destination as written: no linked directory on the way (``/lib`` is a link
    into ``/usr`` here), nothing the sandbox builds itself, nothing already bound whole."""
    parent = os.path.dirname(path)
    if path == "/" or os.path.realpath(parent) != parent:
        return False
    taken = ("/usr", "/proc", "/dev", WORK_DIR, *interpreter_dirs)
    return not any(path == t or path.startswith(t.rstrip("/") + "/") or t.startswith(path + "/") for t in taken)


def openssl_config_args() -> list[str]:
    """bwrap arguments that give the sandbox the OpenSSL configuration a plain run of this interpreter reads
    (``_openssl_config_args``, read once per ``OPENSSL_CONF`` value: every sandbox start asks)."""
    return list(_openssl_config_args(os.environ.get("OPENSSL_CONF")))


@functools.lru_cache(maxsize=8)
def _openssl_config_args(named: str | None) -> tuple[str, ...]:
    """The arguments of ``openssl_config_args`` for ``OPENSSL_CONF`` = ``named`` (None: unset).

    ``hashlib`` answers from OpenSSL, whose configuration decides which algorithms exist (a legacy provider adds
    ``md4``, ``whirlpool``...; a FIPS one refuses ``md5``). The sandbox has no ``/etc``, so ``/usr/lib/ssl/openssl.cnf``
    (a link into ``/etc/ssl``) led nowhere and ``--clearenv`` dropped ``OPENSSL_CONF``: the sandboxes ran on OpenSSL's
    built-in defaults, and ``s not in hashlib.algorithms_available`` held there and not in a plain run on a host
    whose configuration loads the legacy provider (the twenty-third red team). The file (``OPENSSL_CONF``, else
    OpenSSL's directory's ``openssl.cnf``) is bound read-only at its real path (named by ``OPENSSL_CONF`` where a
    plain run names it, or where the default path's links would not lead there inside); the
    absolute paths it ``.include``s, transitively (the twenty-fourth: an included file loaded the provider), are
    bound at their real paths and, where that is safe, at the paths written (a directory: its ``*.cnf`` and
    ``*.conf`` files). What cannot be bound (out of the sandbox user's reach, a relative or ``$ENV::`` include, a
    path the sandbox builds itself) is left out with a warning; nothing here can stop a sandbox from starting."""
    try:
        import _ssl
    except ImportError:  # no OpenSSL: hashlib's own implementations, which read no configuration
        return ()
    interpreter_dirs = tuple(destination for _, destination in interpreter()[1])
    args: list[str] = []
    visible: set[str] = set()  # real paths the sandbox shows at their own path

    linked_roots = tuple(f"/{name}/" for name in _ROOT_DIRECTORIES
                         if os.path.islink(f"/{name}"))  # _root_links recreates these links inside

    def show(real: str, written: str) -> None:
        for destination in dict.fromkeys([real, written]):
            if destination in visible:
                continue
            if destination.startswith(("/usr/", *linked_roots)) or any(
                    destination.startswith(d.rstrip("/") + "/") for d in interpreter_dirs):
                visible.add(destination)  # there already, at the same path (or through a link that is)
            elif _openssl_destination_ok(destination, interpreter_dirs):
                args.extend(["--ro-bind", real, destination])
                visible.add(destination)
            else:
                _warn_openssl_once(f"OpenSSL's configuration path {destination} cannot be shown in the sandbox")

    def bind(written: str, depth: int) -> None:
        real = os.path.realpath(written)
        if real in visible or depth > _OPENSSL_INCLUDE_DEPTH or not os.path.exists(real):
            return
        if _runs_as_nobody() and not _reachable_by_others(real):
            _warn_openssl_once(f"OpenSSL's configuration {real} is out of the sandbox user's reach")
            return
        if os.path.isdir(real):
            for name in sorted(os.listdir(real)):
                if name.endswith(_OPENSSL_DIRECTORY_FILES):
                    bind(os.path.join(written, name), depth + 1)
            return
        show(real, written)
        with open(real, encoding="utf-8", errors="replace") as config:
            text = config.read(1 << 20)
        for included in _OPENSSL_INCLUDE.findall(text):
            included = included.strip().strip("\"'")
            if os.path.isabs(included) and "$" not in included:
                bind(included, depth + 1)
            elif included:  # relative ones follow OPENSSL_CONF_INCLUDE or the working directory
                _warn_openssl_once(f"OpenSSL's configuration includes {included!r}, which is not bound")

    try:
        path = os.path.abspath(named or os.path.join(os.path.dirname(_ssl.get_default_verify_paths()[1]),
                                                     "openssl.cnf"))
        bind(path, 0)
    except (OSError, ValueError) as e:
        _warn_openssl_once(f"OpenSSL's configuration could not be read ({e})")
        return ()
    real = os.path.realpath(path)
    # named as a plain run names it: OPENSSL_CONF when the parent has it, or when the default path reaches the file
    # through links of which only the last is shown (a chain through /etc/alternatives would break inside)
    try:
        one_hop = os.path.normpath(os.path.join(os.path.dirname(path), os.readlink(path)))
    except OSError:  # not a link
        one_hop = path
    needs_name = named or one_hop != real
    return tuple(args + (["--setenv", "OPENSSL_CONF", real] if needs_name and real in visible
                         and os.path.isfile(real) else []))


def bwrap_args(limits: IsolationLimits, info_fd: int, hash_seed: str | None = HASH_SEED,
               seccomp_fd: int | None = None) -> list[str]:
    """The bwrap command line up to (not including) the command; ``seccomp_fd`` holds ``syscall_filter``'s
    filter; ``hash_seed`` None leaves PYTHONHASHSEED unset (the interpreter draws its own, as a plain run does)."""
    python, binds = interpreter()
    args = [bwrap_path() or "bwrap",
            "--unshare-all", "--unshare-user", "--disable-userns",
            "--die-with-parent", "--new-session", "--clearenv", "--as-pid-1",
            "--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID), "--hostname", "sandbox",
            "--ro-bind", "/usr", "/usr", *_root_links()]
    for source, destination in binds:
        args += ["--ro-bind", source, destination]
    args += openssl_config_args()
    args += ["--proc", "/proc",
             "--dev", "/dev", "--remount-ro", "/dev",  # bwrap's /dev is a writable, unbounded tmpfs otherwise
             "--size", str(limits.file_size_mb << 20), "--tmpfs", WORK_DIR,
             "--remount-ro", "/",
             "--chdir", WORK_DIR,
             "--setenv", "PATH", "/usr/bin:/bin", "--setenv", "LANG", "C.UTF-8",
             "--setenv", "HOME", WORK_DIR, "--setenv", "TMPDIR", WORK_DIR,
             *(("--setenv", "PYTHONHASHSEED", hash_seed) if hash_seed is not None else ()),
             "--info-fd", str(info_fd),
             *(("--seccomp", str(seccomp_fd)) if seccomp_fd is not None else ()),
             "--"]
    return args


@functools.lru_cache(maxsize=None)
def _probe() -> str | None:
    """None when bwrap runs a trivial program here; else why not (cached per process)."""
    if bwrap_path() is None:
        return "bwrap is not installed"
    try:
        result = _run_program("pass", IsolationLimits(timeout_s=30), isolated=True)
    except (IsolationUnavailable, SandboxFailure, OSError) as e:
        return str(e)
    if result.returncode != 0:
        return f"bwrap exited {result.returncode}: {result.stderr.strip()[-500:]}"
    return None


def bwrap_available() -> bool:
    """Whether bubblewrap is installed and can build the sandbox on this machine."""
    return _probe() is None


_warned_unisolated = False


def check_isolation(allow_unisolated: bool) -> bool:
    """True when runs will be isolated. Raises ``IsolationUnavailable`` when they cannot be and that was not
    allowed; logs a warning (once per process) when it was."""
    global _warned_unisolated
    problem = _probe()
    if problem is None:
        return True
    if not allow_unisolated:
        raise IsolationUnavailable(
            f"model-written code runs only inside bubblewrap, which cannot run here: {problem}. It needs the "
            f"Debian package '{BWRAP_PACKAGE}' (apt-get install {BWRAP_PACKAGE}) and a Python the sandbox user can "
            "run; or pass allow_unisolated=True (--allow-unsandboxed) to run it WITHOUT isolation")
    if not _warned_unisolated:
        log.warning("!!! RUNNING MODEL-WRITTEN CODE WITHOUT ISOLATION (%s): only rlimits and a wall clock bound "
                    "it; it can read and write your files and reach the network !!!", problem)
        _warned_unisolated = True
    return False


# ------------------------------------------------------------------------------------------- processes

_BOOTSTRAP = f"""# {PROCESS_MARKER}
import sys, types
wire = types.ModuleType("sandbox_wire")
exec(compile(sys.argv[1], "wire.py", "exec"), wire.__dict__)
sys.modules["sandbox_wire"] = wire
exec(compile(sys.argv[2], "agent.py", "exec"), {{"__name__": "__sandbox_agent__"}})
"""

# For raw programs (``run_program``): limits first, then the program, in the same interpreter.
_RAW_BOOTSTRAP = f"""# {PROCESS_MARKER}
import json, resource, sys
cfg = json.loads(sys.argv[1])
for kind, soft, hard in cfg["limits"]:
    resource.setrlimit(kind, (soft, hard))
del json, resource, cfg, kind, soft, hard
exec(compile(sys.argv[2], "<program>", "exec"), {{"__name__": "__main__"}})
"""

# For plain scripts (``run_plain_script``): limits first (no address-space cap), then the script file written and
# the interpreter exec'd on it with its default flags (site included), so that nothing of the sandbox's own runs in
# the script's process. The directory's name is the marker, so that the exec'd interpreter's command line still
# holds it. The bootstrap stays as the supervisor (PID 1 in the sandbox): it forks the script, and every
# MEMORY_POLL_S sums the memory the processes below it hold: resident pages, page tables (reading one byte every
# 2 MiB of untouched reservations held 8 GiB of page tables and no resident memory: the seventeenth red team), and
# shared mappings at their whole size (pages dropped from VmRSS by MADV_DONTNEED stay held; the eighteenth). Past
# the bound it kills them, says so on stderr with the run's marker and exits; otherwise it exits as the script did
# (128 + n for a death by signal n). It makes itself non-dumpable, so the script can neither ptrace it nor write its
# memory (the eighteenth held 2 GiB while it kept the supervisor stopped).
MEMORY_POLL_S = 0.01
_SCRIPT_BOOTSTRAP = f"""# {PROCESS_MARKER}
import json, os, resource, signal, sys, time
cfg = json.loads(sys.argv[1])
for kind, soft, hard in cfg["limits"]:
    resource.setrlimit(kind, (soft, hard))
os.mkdir("{PROCESS_MARKER}")
with open("{PROCESS_MARKER}/main.py", "w", encoding="utf-8") as script:
    script.write(sys.argv[2])
child = os.fork()
if child == 0:
    os.execv(sys.executable, [sys.executable, "{PROCESS_MARKER}/main.py"])
me, MAPS_LIMIT = os.getpid(), 1 << 20
import ctypes
ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE 0: the script may not ptrace it nor write its /proc/1/mem


def below():
    found, stack = [], [me]
    while stack:
        pid = stack.pop()
        try:
            for task in os.listdir(f"/proc/{{pid}}/task"):
                with open(f"/proc/{{pid}}/task/{{task}}/children") as children:
                    kids = [int(k) for k in children.read().split()]
                found += kids
                stack += kids
        except (OSError, ValueError):
            pass
    return found


def held(pids):
    total = 0
    for pid in pids:
        try:  # the first thread with Vm lines: a leader that ended by SYS_exit is a zombie without them
            for task in os.listdir(f"/proc/{{pid}}/task"):
                with open(f"/proc/{{pid}}/task/{{task}}/status") as status:
                    found = [int(line.split()[1]) << 10 for line in status if line.startswith(("VmRSS:", "VmPTE:"))]
                if found:
                    total += sum(found)
                    break
        except (OSError, ValueError, IndexError):
            pass
        try:  # shared mappings at their whole size: their pages leave VmRSS (MADV_DONTNEED) but stay held
            with open(f"/proc/{{pid}}/maps") as maps:
                text = maps.read(MAPS_LIMIT + 1)
            if len(text) > MAPS_LIMIT:  # tens of thousands of mappings made each poll last half a second
                total += 1 << 62
            for line in text.splitlines():
                span, perms = line.split(None, 2)[:2]
                if perms[3:4] == "s":
                    low, high = span.split("-")
                    total += int(high, 16) - int(low, 16)
        except PermissionError:  # a process that made itself non-dumpable hides its maps: it counts as over
            total += 1 << 62
        except (OSError, ValueError, IndexError):
            pass
    return total


while True:
    done, status = os.waitpid(child, os.WNOHANG)
    if done:
        break
    pids = below()
    if held(pids) > cfg["resident_bytes"]:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        os.write(2, ("\\n" + cfg["memory_marker"] + "\\n").encode())
        os._exit(1)
    time.sleep({MEMORY_POLL_S})
code = os.waitstatus_to_exitcode(status)
os._exit(code if code >= 0 else 128 - code)
"""

_PACKAGE_DIR = Path(__file__).resolve().parent


@functools.lru_cache(maxsize=None)
def _agent_sources() -> tuple[str, str]:
    return ((_PACKAGE_DIR / "wire.py").read_text(encoding="utf-8"),
            (_PACKAGE_DIR / "agent.py").read_text(encoding="utf-8"))


_DEPTH_PROBE = ("def d(k=0):\n    try:\n        return d(k + 1)\n    except RecursionError:\n        return k\n"
                "print(d())\n")


@functools.lru_cache(maxsize=None)
def plain_recursion_depth(python: str) -> int:
    """How deep a recursive function called at a plain script's module level gets before RecursionError, with
    ``python``: the depth the sandbox's agent gives a program too (``agent._PlainDepth``)."""
    out = subprocess.run([python, "-c", _DEPTH_PROBE], capture_output=True, text=True, check=True, timeout=60)
    return int(out.stdout)


def agent_config(limits: IsolationLimits, request_fd: int, response_fd: int, python: str | None = None) -> dict:
    config = {"cpu_s": int(limits.cpu_s), "memory_bytes": limits.memory_mb << 20,
              "file_bytes": limits.file_size_mb << 20, "open_files": limits.open_files,
              "max_processes": limits.max_processes, "max_result_bytes": limits.max_message_bytes,
              "request_fd": request_fd, "response_fd": response_fd}
    if python is not None:
        config["plain_depth"] = plain_recursion_depth(python)
    return config


class _Tail:
    def __init__(self, chars: int):
        self.keep = max(4 * chars, 64)
        self.chars = chars
        self.data = bytearray()

    def add(self, chunk: bytes) -> None:
        self.data += chunk
        if len(self.data) > 2 * self.keep:
            del self.data[:-self.keep]

    def text(self) -> str:
        return self.data[-self.keep:].decode("utf-8", "replace")[-self.chars:]


class SandboxProcess:
    """One interpreter in the sandbox with its stdout/stderr drained into tails and, optionally, a request pipe
    (parent -> sandbox) and a response pipe (sandbox -> parent). Use as a context manager: leaving it kills the
    sandbox and everything it started."""

    def __init__(self, python_args: list[str], limits: IsolationLimits, isolated: bool,
                 channel: tuple[int, int] | None = None, hash_seed: str | None = HASH_SEED):
        """``python_args`` follow the interpreter path; ``channel`` is (request read end, response write end),
        the child's ends of the two protocol pipes, which the caller created and keeps the other ends of."""
        self.limits = limits
        self.isolated = isolated
        self.started = time.monotonic()
        self.deadline = self.started + limits.timeout_s
        self._stdout = _Tail(limits.output_tail_chars)
        self._stderr = _Tail(limits.output_tail_chars)
        self._inner_pidfd: int | None = None
        self._workdir: str | None = None
        self._closed = False
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        child_fds = list(channel or ())
        info_r = info_w = None
        if isolated:
            info_r, info_w = os.pipe()
            python, _ = interpreter()
            seccomp_fd = syscall_filter.program_fd()
            argv = [*_as_nobody(), *bwrap_args(limits, info_w, hash_seed, seccomp_fd), python, *python_args]
            child_fds += [info_w] + ([seccomp_fd] if seccomp_fd is not None else [])
            env: dict[str, str] = {}
            cwd = "/"
        else:
            self._workdir = tempfile.mkdtemp(prefix="unisolated-sandbox-")
            argv = [os.path.realpath(getattr(sys, "_base_executable", None) or sys.executable), *python_args]
            env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": self._workdir, "TMPDIR": self._workdir,
                   **({"PYTHONHASHSEED": hash_seed} if hash_seed is not None else {})}
            cwd = self._workdir
        try:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out_w, stderr=err_w,
                                         pass_fds=child_fds, close_fds=True, start_new_session=True, env=env,
                                         cwd=cwd)
        finally:
            for fd in (out_w, err_w, *child_fds):
                os.close(fd)
        self._out_fds = {out_r: self._stdout, err_r: self._stderr}
        for fd in self._out_fds:
            os.set_blocking(fd, False)
        self._outer_pidfd = os.pidfd_open(self.proc.pid)
        if info_r is not None:
            try:
                self._read_info(info_r)
            except BaseException:
                self.close()
                raise

    # --- info from bwrap: the host pid of the sandbox's PID 1, which we kill to end the whole namespace
    def _read_info(self, info_r: int) -> None:
        data = bytearray()
        try:
            with selectors.DefaultSelector() as sel:
                sel.register(info_r, selectors.EVENT_READ)
                for fd in self._out_fds:
                    sel.register(fd, selectors.EVENT_READ)
                while True:
                    remaining = self.deadline - time.monotonic()
                    if remaining <= 0:
                        raise SandboxFailure("timeout", "the sandbox did not start in time")
                    for key, _ in sel.select(remaining):
                        if key.fd == info_r:
                            chunk = os.read(info_r, 4096)
                            if not chunk:
                                return self._info_done(bytes(data))
                            data += chunk
                        else:
                            self._drain(key.fd, sel)
        finally:
            os.close(info_r)

    def _info_done(self, data: bytes) -> None:
        try:
            pid = int(json.loads(data)["child-pid"])
        except (ValueError, KeyError, TypeError):
            code = self.proc.wait()
            self._drain_remaining()  # what bwrap said before it exited
            said = self.stderr.strip()[-500:] or "(no message)"
            raise SandboxFailure("setup", f"bwrap did not start the sandbox (exit {code}): {said}") from None
        try:
            self._inner_pidfd = os.pidfd_open(pid)
        except ProcessLookupError:
            self._inner_pidfd = None  # already gone: it exited; nothing inside to kill

    def _drain(self, fd: int, sel: selectors.BaseSelector | None = None) -> None:
        try:
            chunk = os.read(fd, 1 << 16)
        except BlockingIOError:
            return
        if chunk:
            self._out_fds[fd].add(chunk)
            return
        if sel is not None:
            sel.unregister(fd)
        os.close(fd)
        del self._out_fds[fd]

    def _drain_remaining(self, seconds: float = 1.0) -> None:
        """Read what is left in stdout/stderr after the process ended, for at most ``seconds``."""
        end = time.monotonic() + seconds
        while self._out_fds and time.monotonic() < end:
            for fd in list(self._out_fds):
                self._drain(fd)
            if self._out_fds:
                time.sleep(0.001)

    @property
    def stdout(self) -> str:
        return self._stdout.text()

    @property
    def stderr(self) -> str:
        return self._stderr.text()

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def exchange(self, request: bytes, request_fd: int, response_fd: int, pending: bytearray,
                 deadline: float | None = None) -> bytes:
        """Write ``request`` to the request pipe and return the next response line (without its newline),
        draining stdout/stderr meanwhile. ``pending`` holds bytes read past a line, for the next call."""
        deadline = self.deadline if deadline is None else min(deadline, self.deadline)
        limit = self.limits.max_message_bytes + 65536
        outgoing = memoryview(request)
        with selectors.DefaultSelector() as sel:
            for fd in self._out_fds:
                sel.register(fd, selectors.EVENT_READ)
            if outgoing:
                sel.register(request_fd, selectors.EVENT_WRITE)
            sel.register(response_fd, selectors.EVENT_READ)
            while True:
                newline = pending.find(b"\n")
                if newline >= 0:
                    if outgoing:
                        raise SandboxFailure("protocol", "answered before the request was sent")
                    line = bytes(pending[:newline])
                    del pending[:newline + 1]
                    return line
                if len(pending) > limit:
                    raise SandboxFailure("protocol", f"an answer longer than {limit} bytes")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise SandboxFailure("timeout", f"no answer within {self.limits.timeout_s:g}s")
                for key, _ in sel.select(remaining):
                    if key.fd == request_fd:
                        try:
                            n = os.write(request_fd, outgoing[:1 << 16])
                        except BlockingIOError:
                            continue
                        except BrokenPipeError:
                            raise SandboxFailure("crashed", self._exit_description()) from None
                        outgoing = outgoing[n:]
                        if not outgoing:
                            sel.unregister(request_fd)
                    elif key.fd == response_fd:
                        chunk = os.read(response_fd, 1 << 16)
                        if not chunk:
                            raise SandboxFailure("crashed", self._exit_description())
                        pending += chunk
                    else:
                        self._drain(key.fd, sel)

    def wait(self) -> int | None:
        """Wait for the interpreter to exit or the wall clock to run out (then None), draining output."""
        with selectors.DefaultSelector() as sel:
            for fd in self._out_fds:
                sel.register(fd, selectors.EVENT_READ)
            sel.register(self._outer_pidfd, selectors.EVENT_READ)
            while True:
                remaining = self.deadline - time.monotonic()
                if remaining <= 0:
                    return None
                for key, _ in sel.select(remaining):
                    if key.fd == self._outer_pidfd:
                        return self.proc.wait()
                    self._drain(key.fd, sel)

    def _exit_description(self) -> str:
        try:
            code = self.proc.wait(timeout=0.5)
        except subprocess.TimeoutExpired:
            return "the interpreter closed its answer pipe"
        killed_by = death_signal(code, self.isolated)
        if killed_by is not None:
            try:
                return f"killed by {signal.Signals(killed_by).name}"
            except ValueError:
                if code < 0:
                    return f"killed by signal {-code}"
        return f"exited with code {code} before answering"

    def close(self) -> None:
        """Kill the sandbox and everything in it; return once they are gone (outputs drained)."""
        if self._closed:
            return
        self._closed = True
        if self._inner_pidfd is not None:
            try:
                signal.pidfd_send_signal(self._inner_pidfd, signal.SIGKILL)
            except ProcessLookupError:
                pass
            # PID 1 of the namespace exits only after the kernel has killed and reaped all the others; bwrap,
            # its parent, then reaps it and exits.
            with selectors.DefaultSelector() as sel:
                sel.register(self._inner_pidfd, selectors.EVENT_READ)
                if not sel.select(10.0):
                    log.error("sandbox PID 1 still alive 10 s after SIGKILL")
            os.close(self._inner_pidfd)
            try:
                self.proc.wait(timeout=5.0)
            except subprocess.TimeoutExpired:
                pass
        if self.proc.returncode is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            self.proc.wait()
        os.close(self._outer_pidfd)
        self._drain_remaining()
        for fd in list(self._out_fds):
            os.close(fd)
        self._out_fds.clear()
        if self._workdir:
            shutil.rmtree(self._workdir, ignore_errors=True)

    def __enter__(self) -> "SandboxProcess":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def start_agent(limits: IsolationLimits, allow_unisolated: bool = False, hash_seed: str = HASH_SEED
                ) -> tuple[SandboxProcess, int, int]:
    """A sandbox running the agent; returns (process, request write fd, response read fd), both owned by the
    caller (close them after the process)."""
    isolated = check_isolation(allow_unisolated)
    req_r, req_w = os.pipe()
    resp_r, resp_w = os.pipe()
    wire_src, agent_src = _agent_sources()
    config = json.dumps(agent_config(limits, req_r, resp_w, sys.executable))  # the plain script's interpreter
    try:
        proc = SandboxProcess([*PYTHON_FLAGS, "-c", _BOOTSTRAP, wire_src, agent_src, config], limits, isolated,
                              channel=(req_r, resp_w), hash_seed=hash_seed)
    except BaseException:
        os.close(req_w)
        os.close(resp_r)
        raise
    os.set_blocking(req_w, False)
    return proc, req_w, resp_r


def run_program(source: str, limits: IsolationLimits = IsolationLimits(),
                allow_unisolated: bool = False) -> ProcessResult:
    """Run ``source`` as a plain program in the sandbox (limits set first) and report what it did. The low-level
    run: its exit code and output are the program's to forge; verdicts come from ``verdicts.py``."""
    return _run_program(source, limits, check_isolation(allow_unisolated))


def run_plain_script(source: str, limits: IsolationLimits = IsolationLimits(), allow_unisolated: bool = False,
                     hash_seed: str | None = None) -> ProcessResult:
    """Run ``source`` as a plain script in the sandbox: ``python main.py`` in an interpreter of its own with its
    default flags, exec'd once the limits are set, so the script finds a plain script's process and nothing of
    the sandbox's agent; PYTHONHASHSEED is unset unless ``hash_seed`` is given (the interpreter draws a seed, as a
    plain run does, and a program cannot tell this run by the variable). It has no address-space cap, as a plain
    run has none; the memory it holds is bounded by ``memory_mb`` instead, by a supervisor in the sandbox
    (``memory_exceeded``), and it runs as one process. It runs until it exits: what runs at exit (``atexit``,
    freeing what is left) is part of the script. Its exit code and output are its own to forge (see
    ``verdicts.check_literal``)."""
    return _run_program(source, limits, check_isolation(allow_unisolated), hash_seed, plain_script=True)


# The C stack a plain script gets: half of Linux's default 8 MiB. Code near the stack's end crashes or not by the
# run (ASLR moves the stack's start by kilobytes, and the environment's size moves it too), so a literal check with
# a plain run's stack passed a pair that freed a deque chain near the crash depth 8 of 15 times while plain runs of
# its training text died of SIGSEGV about half the time (the twenty-second red team). A pair checked with half the
# stack has megabytes of margin in a plain run, against the kilobytes those move.
PLAIN_SCRIPT_STACK_BYTES = 4 << 20


def plain_script_stack_bytes() -> int:
    """``PLAIN_SCRIPT_STACK_BYTES``, or less where this process's own hard limit is lower (a limit can only fall)."""
    import resource

    hard = resource.getrlimit(resource.RLIMIT_STACK)[1]
    return PLAIN_SCRIPT_STACK_BYTES if hard == resource.RLIM_INFINITY else min(PLAIN_SCRIPT_STACK_BYTES, hard)


def _run_program(source: str, limits: IsolationLimits, isolated: bool, hash_seed: str | None = HASH_SEED,
                 plain_script: bool = False) -> ProcessResult:
    import resource
    mb = 1 << 20
    # A plain script gets no address-space cap, as a plain run has none: a cap turns an allocation plain Python
    # makes (3 GiB reserved and never touched, scrypt's 1 GiB) into an error the script can catch under other names
    # (`finally: return`, scrypt's ValueError, deque's SystemError), so the script would take another branch than
    # its training text does (the sixteenth red team). Its memory is bounded by its supervisor instead.
    address_space = (resource.RLIM_INFINITY if plain_script else limits.memory_mb * mb,) * 2
    # A plain script runs as one process beside its supervisor: no fork and no thread (tasks count), which code of
    # the safe modules never needs. A chain of forks each living a moment, the one alive never the one the
    # supervisor had found, held 3 GiB past a 256 MiB bound (the nineteenth red team).
    processes = 2 if plain_script else limits.max_processes
    limit_list = [(resource.RLIMIT_CPU, int(limits.cpu_s), int(limits.cpu_s) + 1),
                  *([(resource.RLIMIT_STACK, *(plain_script_stack_bytes(),) * 2)] if plain_script else []),
                  (resource.RLIMIT_AS, *address_space),
                  (resource.RLIMIT_FSIZE, limits.file_size_mb * mb, limits.file_size_mb * mb),
                  (resource.RLIMIT_NOFILE, limits.open_files, limits.open_files),
                  (resource.RLIMIT_NPROC, processes, processes),
                  (resource.RLIMIT_CORE, 0, 0)]
    memory_marker = f"{PROCESS_MARKER}-memory-{secrets.token_hex(8)}"
    config = json.dumps({"limits": limit_list, "resident_bytes": limits.memory_mb * mb, "memory_marker": memory_marker})
    bootstrap = _SCRIPT_BOOTSTRAP if plain_script else _RAW_BOOTSTRAP
    with SandboxProcess([*PYTHON_FLAGS, "-c", bootstrap, config, source], limits, isolated,
                        hash_seed=hash_seed) as proc:
        code = proc.wait()
    memory_exceeded = plain_script and memory_marker in proc.stderr.splitlines()
    return ProcessResult(code, code is None, time.monotonic() - proc.started, proc.stdout, proc.stderr, isolated,
                         memory_exceeded)
