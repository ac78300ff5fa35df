"""Executing model-written code, and the benchmarks that judge it.

The trust line: everything the model wrote runs in a sandbox and can only hand back plain data; benchmark tests,
answer-type checks and the "is exactly True" comparisons run in the trusted process.

Owns: bubblewrap isolation and resource limits (``isolation``), the plain-data wire format (``wire``), the
sandbox-side agent (``agent``, runs inside the sandbox, stdlib only) and the parent's side of its protocol
(``session``), verdicts on HumanEval-style tests and P3 puzzles computed by trusted code (``verdicts``), a worker
pool for many sandboxes from one Beam worker (``pool``), execution-benchmark problems and their prompts
(``problems``), pass@k (``pass_at_k``), the sandbox and evaluation options (``options``) and the Beam glue
(``beam``).
"""
