"""The sandbox side of the protocol: runs INSIDE the sandbox as the interpreter's first code. Stdlib only.

It sets the resource limits, then serves one request per line from the request pipe and answers one line per
request on the response pipe (newline-delimited JSON, see ``session.py``):

* ``{"op": "load", "id", "source"}``: run a program's module code in a fresh namespace;
* ``{"op": "call", "id", "name", "args", "kwargs"}``: call a function of that namespace with plain-data arguments and
  answer its result as plain data (``wire.py``), or the exception it raised.

Nothing here is trusted by the parent: the program runs in this same process and can rewrite any of it.
The parent only believes what it can check itself (see ``session.py``).
"""
import builtins
import json
import os
import resource
import sys

wire = sys.modules["sandbox_wire"]  # wire.py, executed by the bootstrap


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
    return {"type": type(exc).__name__[:100], "message": message}


def _handle(msg, namespace, cfg):
    op = msg.get("op")
    if op == "load":
        try:
            exec(compile(msg["source"], "<program>", "exec"), namespace)
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
            result = fn(*args, **kwargs)
        except BaseException as e:
            return {"ok": False, "error": _describe(e)}
        try:
            return {"ok": True, "value": wire.encode_tree(result, cfg["max_result_bytes"])}
        except BaseException as e:  # WireError, or a hostile object failing while being inspected
            return {"ok": False, "bad_result": _describe(e)}
    return {"ok": False, "error": {"type": "ProtocolError", "message": f"unknown op {op!r}"}}


def main(cfg):
    _set_limits(cfg)
    # P3 puzzles were written for Pythons without the 4,300-digit str<->int limit; CPU is bounded here anyway.
    sys.set_int_max_str_digits(0)
    requests = os.fdopen(cfg["request_fd"], "rb")
    responses = os.fdopen(cfg["response_fd"], "wb")
    namespace = {"__name__": "__sandbox__", "__builtins__": builtins}
    while True:
        line = requests.readline()
        if not line:
            return
        msg = json.loads(line)
        reply = _handle(msg, namespace, cfg)
        reply["id"] = msg["id"]
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except BaseException:
                pass
        try:
            text = wire.dumps_tree(reply, cfg["max_result_bytes"] + 4096)
        except wire.WireError as e:
            text = json.dumps({"id": msg["id"], "ok": False, "bad_result": {"type": "WireError", "message": str(e)}})
        responses.write(text.encode("ascii") + b"\n")
        responses.flush()


main(json.loads(sys.argv[3]))
