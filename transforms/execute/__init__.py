"""Executing model-written Python: OS isolation, the plain-data boundary, and verdicts decided outside.

Owns: bubblewrap isolation and resource limits (``isolation.py``), the plain-data wire format (``wire.py``), the
sandbox-side agent (``agent.py``, runs inside the sandbox, stdlib only) and the parent's side of its protocol
(``session.py``), verdicts on HumanEval-style tests and P3 puzzles computed by trusted code (``verdicts.py``),
and a worker pool for running many sandboxes from one Beam worker (``pool.py``).

The trust line: everything the model wrote runs in a sandbox and can only hand back plain data; benchmark tests,
answer-type checks and the "is exactly True" comparisons run in the trusted process.
"""
