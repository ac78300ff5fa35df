"""The sandbox side of the protocol: runs INSIDE the sandbox as the interpreter's first code. Stdlib only.

It sets the resource limits, then serves one request per line from the request pipe and answers one line per
request on the response pipe (newline-delimited JSON, see ``session.py``):

* ``{"op": "load", "id", "source"}``: run a program's module code in a fresh namespace;
* ``{"op": "call", "id", "name", "args", "kwargs"}``: call a function of that namespace with plain-data arguments and
  answer its result as plain data (``wire.py``), or the exception it raised;
* ``{"op": "eval", "id", "expression"}``: evaluate an expression (the parent's, e.g. ``f(g())``) in that namespace
  and answer its value like a call's, without binding any name there;
* ``{"op": "fresh_call", "id", "source", "name", "args", "kwargs"}``: load and call, in a forked child, so that
  every such call starts from this process as it was before any program ran (no state carries over from one call
  to the next) and has a CPU budget of its own. A session that only makes fresh calls never runs a program in the
  process that reads its requests.

Nothing here is trusted by the parent: the program runs in this same process and can rewrite any of it.
A program's namespace is named ``__main__``, as a script's: a program must not be able to tell it is being checked
by a name (``if __name__ != "__main__"``) and answer differently from the trained-on text.
The parent only believes what it can check itself (see ``session.py``).
"""
import builtins
import json
import os
import resource
import sys

wire = sys.modules["sandbox_wire"]  # wire.py, executed by the bootstrap
_LAYOUT_NOISE = []  # kept alive for the process's life: see _shift_layout


def _shift_layout():
    """Before a program loads: a random number (0-255, from the kernel) of live small objects in each of pymalloc's
    size classes, so where the program's own objects land within a pool differs from run to run. ASLR moves pages,
    not offsets within them: without this the low bits of an address (``hash(object())``, a default ``repr``, the
    order of a set of objects) were the same in every sandbox and every forked call, and a puzzle could answer on
    them, differently from plain Python (a red team, 2026-12-03). An answer resting on an address now holds only
    by chance, as it does between two plain runs."""
    counts = os.urandom(33)
    # Past 512 bytes objects come from the C allocator's heap, whose offsets ASLR leaves alone too: one buffer of
    # a random size moves the heap's top by a random number of 16-byte steps.
    _LAYOUT_NOISE.append(bytearray(513 + 16 * counts[32]))
    for count, size in zip(counts, range(16, 513, 16)):
        if size == 16:
            _LAYOUT_NOISE.append([object() for _ in range(count)])
        elif size == 32:
            _LAYOUT_NOISE.append([i + 0.5 for i in range(count)])  # a float is 24 bytes
        else:
            _LAYOUT_NOISE.append([b"\1" * (size - 33) for _ in range(count)])  # a bytes object is 33 + len


def _set_limits(cfg):
    def limit(kind, soft, hard=None):
        try:
            resource.setrlimit(kind, (soft, soft if hard is None else hard))
        except (ValueError, OSError) as e:
            sys.stderr.write(f"sandbox agent: cannot set limit {kind}: {e}\n")
            os._exit(70)  # never run the program with a limit missing

    limit(resource.RLIMIT_CPU, cfg["cpu_s"], cfg["cpu_s"] + 1)  # SIGXCPU at soft, SIGKILL at hard
    limit(resource.RLIMIT_AS, cfg["memory_bytes"])
    limit(resource.RLIMIT_FSIZE, cfg["file_bytes"])
    limit(resource.RLIMIT_NOFILE, cfg["open_files"])
    limit(resource.RLIMIT_NPROC, cfg["max_processes"])  # counted per user namespace (see isolation.py)
    limit(resource.RLIMIT_CORE, 0)
    limit(resource.RLIMIT_MSGQUEUE, 0)
    limit(resource.RLIMIT_MEMLOCK, 0)


def _describe(exc):
    try:
        message = str(exc)[:1000]
    except BaseException:  # an exception whose __str__ fails or exits
        message = "<unprintable>"
    # Whether it is not an ordinary Exception (SystemExit, KeyboardInterrupt, another BaseException): one that
    # a test's ``except Exception`` would not catch in process. Claiming otherwise gains a program nothing.
    # Its builtin classes, nearest first: the trusted side re-raises the nearest one it can, so a test catches it
    # exactly when it would catch the original (a class merely NAMED ValueError is not a ValueError).
    try:
        bases = [c.__name__ for c in type(exc).__mro__ if getattr(builtins, c.__name__, None) is c][:20]
    except BaseException:
        bases = []
    return {"type": type(exc).__name__[:100], "message": message, "base": not issubclass(type(exc), Exception),
            "builtin": bases}


def _depth_probe(k=0):
    try:
        return _depth_probe(k + 1)
    except RecursionError:
        return k


_PROBE_MODULE = compile("_r = _p()", "<probe>", "exec")
_PROBE_EXPRESSION = compile("_p()", "<probe>", "eval")


class _PlainDepth:
    """While a program runs: the recursion limit moved so that the program has as many frames left as a plain
    script's module level has (``cfg["plain_depth"]``, measured by the parent with this interpreter), though the
    agent's own frames lie beneath it. ``measured``: what ``_depth_probe`` found where the program will run.
    Without this a puzzle measuring its own recursion depth answered differently here (a red team, 2026-12-03)."""

    def __init__(self, measured, cfg):
        self.shift = cfg.get("plain_depth", measured) - measured

    def __enter__(self):
        self.previous = _get_limit()
        _set_limit(self.previous + self.shift)
        # The program reads and sets the limit it would have in a plain script (a `g` returning
        # sys.getrecursionlimit() gave 1004 here, 1000 there).
        shift = self.shift
        sys.getrecursionlimit = lambda: _get_limit() - shift
        sys.setrecursionlimit = lambda limit: _set_limit(limit + shift)

    def __exit__(self, *exc):
        sys.getrecursionlimit, sys.setrecursionlimit = _get_limit, _set_limit
        _set_limit(self.previous)


_get_limit, _set_limit = sys.getrecursionlimit, sys.setrecursionlimit


def _handle(msg, namespace, cfg):
    op = msg.get("op")
    if op == "load":
        _shift_layout()
        try:
            code = compile(msg["source"], "<program>", "exec")
            probe = {"_p": _depth_probe}
            exec(_PROBE_MODULE, probe)  # module code runs where this does
            with _PlainDepth(probe["_r"], cfg):
                exec(code, namespace)
        except BaseException as e:  # SystemExit and KeyboardInterrupt included: the load did not complete
            return {"ok": False, "error": _describe(e)}
        return {"ok": True}
    if op == "call":
        fn = namespace.get(msg["name"])
        if not callable(fn):
            return {"ok": False, "missing": msg["name"]}
        try:
            args = wire.decode_tree(msg["args"])
            kwargs = wire.decode_tree(msg.get("kwargs", {"t": "dict", "v": []}))
            measured = _depth_probe(*(), **{})  # called as fn is, from this frame
            with _PlainDepth(measured, cfg):
                result = fn(*args, **kwargs)
        except BaseException as e:
            return {"ok": False, "error": _describe(e)}
        return _value(result, cfg)
    if op == "eval":
        try:
            code = compile(msg["expression"], "<expression>", "eval")
            with _PlainDepth(eval(_PROBE_EXPRESSION, {"_p": _depth_probe}), cfg):
                result = eval(code, namespace)
        except BaseException as e:
            return {"ok": False, "error": _describe(e)}
        return _value(result, cfg)
    return {"ok": False, "error": {"type": "ProtocolError", "message": f"unknown op {op!r}"}}


def _value(result, cfg):
    try:
        return {"ok": True, "value": wire.encode_tree(result, cfg["max_result_bytes"])}
    except BaseException as e:  # WireError, or a hostile object failing while being inspected
        return {"ok": False, "bad_result": _describe(e)}


def _fresh_call(msg, cfg):
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: load, call, answer on the private pipe, exit
        try:
            os.close(read_fd)
            os.close(cfg["request_fd"])
            os.close(cfg["response_fd"])
            namespace = {"__name__": "__main__", "__builtins__": builtins}
            reply = _handle({"op": "load", "source": msg["source"]}, namespace, cfg)
            if reply["ok"]:
                reply = _handle({**msg, "op": "call"}, namespace, cfg)
            data = _encoded(reply, cfg)
            for stream in (sys.stdout, sys.stderr):
                stream.flush()
            view = memoryview(data)
            while view:
                view = view[os.write(write_fd, view):]
        finally:
            os._exit(0)
    os.close(write_fd)
    limit = cfg["max_result_bytes"] + 8192
    chunks, size = [], 0
    with os.fdopen(read_fd, "rb") as pipe:
        while size <= limit:
            chunk = pipe.read(65536)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    if size > limit:
        os.kill(pid, 9)
    _, status = os.waitpid(pid, 0)
    data = b"".join(chunks)
    if size > limit or not data:
        why = "an answer over the size limit" if size > limit else "no answer"
        if os.WIFSIGNALED(status):
            why += f" (signal {os.WTERMSIG(status)})"  # SIGXCPU: the call's CPU budget ran out
        return {"ok": False, "error": {"type": "CallDied", "message": f"the call's process ended with {why}"}}
    try:
        reply = json.loads(data)
    except BaseException as e:  # not JSON, or nested past the parser's recursion limit
        return {"ok": False, "error": {"type": "CallDied", "message": f"unreadable answer: {type(e).__name__}"}}
    return reply if type(reply) is dict else {"ok": False, "error": {"type": "CallDied", "message": "bad answer"}}


def _encoded(reply, cfg):
    try:
        return wire.dumps_tree(reply, cfg["max_result_bytes"] + 4096).encode("ascii")
    except wire.WireError as e:
        failed = {"ok": False, "bad_result": {"type": "WireError", "message": str(e)}}
        if "id" in reply:
            failed["id"] = reply["id"]
        return json.dumps(failed).encode("ascii")


def main(cfg):
    _set_limits(cfg)
    # Python's default 4,300-digit str<->int limit stays: the trained-on text runs under it (lifting it here let
    # `sum(int(c) for c in str(10**5000 - 1))` verify while `assert f(g())` raises in plain Python).
    requests = os.fdopen(cfg["request_fd"], "rb")
    responses = os.fdopen(cfg["response_fd"], "wb")
    namespace = {"__name__": "__main__", "__builtins__": builtins}
    while True:
        line = requests.readline()
        if not line:
            return
        msg = json.loads(line)
        for stream in (sys.stdout, sys.stderr):  # a forked child would write the parent's buffered output again
            try:
                stream.flush()
            except BaseException:
                pass
        reply = _fresh_call(msg, cfg) if msg.get("op") == "fresh_call" else _handle(msg, namespace, cfg)
        reply["id"] = msg["id"]
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except BaseException:
                pass
        responses.write(_encoded(reply, cfg) + b"\n")
        responses.flush()


main(json.loads(sys.argv[3]))
