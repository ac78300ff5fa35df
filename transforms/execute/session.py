"""The parent's side of the agent protocol: one sandbox, a program loaded into it, functions called in it.

Requests and answers are single JSON lines. Every request carries a fresh random id that the answer must echo,
so an answer cannot be written before its request exists: a program cannot pre-write a "load succeeded" or a
result for a later call and then exit. Whatever the program writes to the answer pipe is at most as powerful as
what its functions could return, because the parent believes only plain data (``wire.py``) and decides
verdicts itself (``verdicts.py``). Anything else on the pipe (a wrong id, an over-long line, non-JSON, a value
that is not plain data) fails the run.
"""
from __future__ import annotations

import dataclasses
import os
import secrets
import time
from typing import Any

from transforms.execute import wire
from transforms.execute.isolation import HASH_SEED, IsolationLimits, SandboxFailure, start_agent

_REQUEST_MAX_BYTES = 64 << 20  # what the trusted side may send (arguments come from trusted code) ...


@dataclasses.dataclass(frozen=True)
class CallResult:
    """``kind``: ``value`` (``value`` holds the decoded result), ``raised`` (``error_type``/``message``),
    ``bad_result`` (the function returned something that is not plain data) or ``missing`` (no such function).
    ``base_exception``: what was raised is not an ``Exception`` (SystemExit, KeyboardInterrupt, ...)."""
    kind: str
    value: Any = None
    error_type: str = ""
    message: str = ""
    base_exception: bool = False
    builtin_bases: tuple[str, ...] = ()  # the builtin classes of what was raised, nearest first


def _error_fields(reply: dict, key: str) -> tuple[str, str]:
    err = reply.get(key)
    if type(err) is not dict or type(err.get("type")) is not str or type(err.get("message")) is not str:
        raise SandboxFailure("protocol", f"malformed {key} description")
    return err["type"][:100], err["message"][:1000]


class AgentSession:
    """A sandbox with the agent running in it. ``load`` a program, then ``call`` its functions. A context
    manager: leaving it kills the sandbox. After a ``SandboxFailure`` every further request raises it again."""

    def __init__(self, limits: IsolationLimits = IsolationLimits(), allow_unisolated: bool = False,
                 hash_seed: str = HASH_SEED):
        self.limits = limits
        self.failure: SandboxFailure | None = None
        self.process, self._request_fd, self._response_fd = start_agent(limits, allow_unisolated, hash_seed)
        self._pending = bytearray()
        # ... and at least twice the largest answer, since an answer the parent accepted may be sent back as an
        # argument (a puzzle checked on a solution's answer).
        self._request_max = max(_REQUEST_MAX_BYTES, 2 * limits.max_message_bytes)

    @property
    def isolated(self) -> bool:
        return self.process.isolated

    def restart_clock(self) -> None:
        """Give the next requests a full ``timeout_s`` again (batch checks time each answer separately)."""
        self.process.deadline = time.monotonic() + self.limits.timeout_s

    def _request(self, payload: dict, time_limit_s: float | None = None) -> dict:
        if self.failure is not None:
            raise self.failure
        deadline = None if time_limit_s is None else time.monotonic() + time_limit_s
        nonce = secrets.token_hex(16)
        try:
            line = wire.dumps_tree({**payload, "id": nonce}, self._request_max).encode("ascii") + b"\n"
        except wire.WireError as e:
            raise ValueError(f"the trusted side sent something that is not plain data: {e}") from None
        try:
            raw = self.process.exchange(line, self._request_fd, self._response_fd, self._pending, deadline)
            try:
                reply = wire.loads_json(raw, self.limits.max_message_bytes + 65536)
            except wire.WireError as e:
                raise SandboxFailure("protocol", f"unreadable answer: {e}") from None
            if type(reply) is not dict or reply.get("id") != nonce:
                raise SandboxFailure("protocol", "an answer that is not for the request sent")
            if type(reply.get("ok")) is not bool:
                raise SandboxFailure("protocol", "an answer without a status")
            return reply
        except SandboxFailure as f:
            self.failure = f
            raise

    def load(self, source: str) -> tuple[str, str] | None:
        """Run ``source``'s module code. None when it completed; else (exception type, message)."""
        reply = self._request({"op": "load", "source": source})
        if reply["ok"]:
            return None
        return _error_fields(reply, "error")

    def call(self, name: str, args: tuple | list = (), allow_nan: bool = True, kwargs: dict | None = None,
             time_limit_s: float | None = None) -> CallResult:
        """Call ``name(*args, **kwargs)`` in the sandbox. Arguments cross as plain data, so the function gets
        copies and cannot change the caller's objects. ``time_limit_s``: this call's own wall-clock limit, within
        the run's (a ``SandboxFailure("timeout")`` past it)."""
        return self._call({"op": "call", "name": name}, args, allow_nan, kwargs, time_limit_s)

    def evaluate(self, expression: str, allow_nan: bool = True) -> CallResult:
        """The value of ``expression`` (trusted text, e.g. ``f(g())``) in the loaded program's namespace, as a call's
        result: evaluated in place, so the program's objects are passed as themselves (no copies) and no name is
        bound in its namespace."""
        return self._result(self._request({"op": "eval", "expression": expression}), allow_nan)

    def fresh_call(self, source: str, name: str, args: tuple | list = (), allow_nan: bool = True,
                   kwargs: dict | None = None) -> CallResult:
        """Load ``source`` and call ``name(*args, **kwargs)`` in a process forked for this call alone: nothing one
        call leaves behind (a mutated default, a patched builtin, CPU time spent) reaches the next. A program
        that does not load answers as a call that raised."""
        return self._call({"op": "fresh_call", "source": source, "name": name}, args, allow_nan, kwargs)

    def _call(self, request: dict, args: tuple | list, allow_nan: bool, kwargs: dict | None,
              time_limit_s: float | None = None) -> CallResult:
        reply = self._request({**request, "args": wire.encode_tree(list(args), self._request_max),
                               "kwargs": wire.encode_tree(dict(kwargs or {}), self._request_max)}, time_limit_s)
        return self._result(reply, allow_nan)

    def _result(self, reply: dict, allow_nan: bool) -> CallResult:
        if reply["ok"]:
            if "value" not in reply:
                self.failure = SandboxFailure("protocol", "a result without a value")
                raise self.failure
            try:
                return CallResult("value", wire.decode_tree(reply["value"], allow_nan=allow_nan))
            except wire.WireError as e:
                return CallResult("bad_result", message=str(e))
        if "missing" in reply:
            return CallResult("missing", message=str(reply["missing"])[:200])
        if "bad_result" in reply:
            _, message = _error_fields(reply, "bad_result")
            return CallResult("bad_result", message=message)
        error_type, message = _error_fields(reply, "error")
        bases = reply["error"].get("builtin")
        bases = tuple(b[:100] for b in bases[:20]) if type(bases) is list and all(type(b) is str for b in bases) else ()
        return CallResult("raised", error_type=error_type, message=message, builtin_bases=bases,
                          base_exception=reply["error"].get("base") is not False)  # unsaid: the stricter reading

    def close(self) -> None:
        self.process.close()
        for fd in (self._request_fd, self._response_fd):
            try:
                os.close(fd)
            except OSError:
                pass

    def __enter__(self) -> "AgentSession":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
