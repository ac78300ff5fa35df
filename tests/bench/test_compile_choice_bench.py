"""bench/compile_choice.py's P3 solve workload asks what the P3 evaluation asks."""
from __future__ import annotations

import pytest


def test_the_p3_solve_workload_is_the_evaluations_requests(shared_data, monkeypatch):
    from apache_beam.options.pipeline_options import PipelineOptions

    from beam_pipelines.evaluate import p3_sampling
    from bench import compile_choice
    from transforms.execute.options import eval_settings
    from transforms.selfplay.p3 import load_p3

    monkeypatch.setattr(compile_choice, "P3_DIR", shared_data / "p3")
    requests = compile_choice.p3_solve_workload(3, 5)
    assert len(requests) == 3
    tests = load_p3(shared_data / "p3").test
    settings = eval_settings(PipelineOptions([f"--benchmark=p3={shared_data / 'p3'}", "--samples-per-problem=5"]))
    expected = p3_sampling(settings)
    for request, puzzle in zip(requests, tests):
        # the solve prompt: the tutorial prefix, the test puzzle, a blank line and g's header
        assert request.prompt.startswith("from typing import List\n\n") and puzzle.f in request.prompt
        assert request.prompt.rstrip().endswith(":") and "\ndef g(" in request.prompt
        spec = request.spec
        assert (spec.n, spec.temperature, spec.max_tokens, spec.top_k, spec.ban_eos, spec.stop) == (
            5, 0.8, 150, 50, True, expected.stop)
    with pytest.raises(SystemExit, match="can be attempted"):
        compile_choice.p3_solve_workload(len(tests) + 1, 1)
