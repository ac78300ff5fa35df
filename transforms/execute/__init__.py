"""Execution of model-written code: the sandbox (``sandbox``), execution benchmarks and their prompts
(``problems``), pass@k (``pass_at_k``), the evaluation job's options (``options``) and its Beam glue (``beam``).
"""
