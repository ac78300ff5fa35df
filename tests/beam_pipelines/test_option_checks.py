"""Options and inputs refused before run.json and any work, in one line ``<job>: error: ...`` with exit code 2:
self-play's counts and timeouts, a P3 folder that is not one (self-play, evaluate, the self-play loop), evaluate's
--problem-limit and --pass-k, the loop's --rounds and pass-through options, paper's --benchmark values."""
from __future__ import annotations

import importlib
import json
import shutil

import pytest

from beam_pipelines import paper, self_play_loop
from beam_pipelines.launch import RUN_FILE
from tests.beam_pipelines.tiny_p3 import TINY_P3


def _job_error(module: str, argv: list[str], tmp_path, capsys) -> str:
    job = importlib.import_module(module)
    out = tmp_path / "out"
    code = job.main([f"--output={out}", "--engine=fake", "--quiet", *argv])
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert code == 2 and len(lines) == 1, err
    assert lines[0].startswith(f"{job.JOB.prog}: error: "), err
    assert not (out / RUN_FILE).exists()
    return lines[0]


# ------------------------------------------------------------------------------------------- self-play

@pytest.mark.parametrize("bad, wanted", [
    (["--num-prompts", "0"], "--num-prompts must be at least 1, got 0"),
    (["--num-prompts", "-3"], "--num-prompts must be at least 1, got -3"),
    (["--samples-per-prompt", "0"], "--samples-per-prompt must be at least 1, got 0"),
    (["--samples-per-prompt", "-1"], "--samples-per-prompt must be at least 1, got -1"),
    (["--solve-attempts", "0"], "--solve-attempts must be at least 1, got 0"),
    (["--literal-runs", "0"], "--literal-runs must be at least 1, got 0"),
    (["--max-solutions", "0"], "--max-solutions must be at least 1, got 0"),
    (["--max-solutions", "-1"], "--max-solutions must be at least 1, got -1"),
    (["--verify-timeout", "0"], "--verify-timeout must be more than 0 seconds, got 0"),
    (["--verify-timeout", "-1"], "--verify-timeout must be more than 0 seconds, got -1"),
    (["--judge-timeout", "0"], "--judge-timeout must be more than 0 seconds, got 0"),
    (["--sandbox-workers", "-2"], "--sandbox-workers must be at least 1, got -2"),
    (["--sandbox-timeout", "0"], "--sandbox-timeout must be more than 0, got 0"),
    (["--sandbox-memory-mb", "-5"], "--sandbox-memory-mb must be more than 0, got -5"),
])
def test_self_play_refuses_counts_and_timeouts_below_their_minimum(tmp_path, capsys, bad, wanted):
    assert wanted in _job_error("beam_pipelines.self_play", [f"--p3-dir={TINY_P3}", *bad], tmp_path, capsys)


def _broken_p3(tmp_path, how: str):
    folder = tmp_path / "p3"
    shutil.copytree(TINY_P3, folder)
    puzzles = folder / "puzzles.json"
    if how == "no split":
        (folder / "split.json").unlink()
    elif how == "empty puzzles":
        puzzles.write_text("")
    elif how == "truncated puzzles":
        puzzles.write_text(puzzles.read_text()[:200])
    elif how == "no ans_type":
        rows = json.loads(puzzles.read_text())
        del rows[0]["ans_type"]
        puzzles.write_text(json.dumps(rows))
    elif how == "empty train":
        split = json.loads((folder / "split.json").read_text())
        (folder / "split.json").write_text(json.dumps({**split, "train": []}))
    elif how == "a file":
        return puzzles
    return folder


BROKEN = [
    ("no split", "{p3}/split.json does not exist"),
    ("empty puzzles", "{p3}/puzzles.json is empty"),
    ("truncated puzzles", "{p3}/puzzles.json is not valid JSON"),
    ("no ans_type", "{p3}/puzzles.json: entry 0 (Tutorial1:0) lacks 'ans_type'"),
    ("empty train", "{p3}/split.json: the 'train' list is empty"),
    ("a file", "{p3}/puzzles.json is not a folder"),
]


@pytest.mark.parametrize("how, wanted", BROKEN)
def test_self_play_and_evaluate_refuse_a_broken_p3_folder_naming_the_file(tmp_path, capsys, how, wanted):
    p3 = _broken_p3(tmp_path, how)
    wanted = wanted.format(p3=tmp_path / "p3")
    line = _job_error("beam_pipelines.self_play", [f"--p3-dir={p3}"], tmp_path, capsys)
    assert f"--p3-dir: {wanted}" in line
    line = _job_error("beam_pipelines.evaluate", [f"--benchmark=p3={p3}"], tmp_path, capsys)
    assert f"--benchmark p3: {wanted}" in line


def test_self_play_refuses_a_p3_folder_without_the_solve_prefix_families_unless_given_a_prefix(tmp_path, capsys):
    p3 = tmp_path / "p3"
    shutil.copytree(TINY_P3, p3)
    split = json.loads((p3 / "split.json").read_text())
    (p3 / "split.json").write_text(json.dumps({**split, "train": [f for f in split["train"] if f != "Tutorial2"]}))
    line = _job_error("beam_pipelines.self_play", [f"--p3-dir={p3}"], tmp_path, capsys)
    assert "the solve prefix needs the training families ['Tutorial2']" in line


# -------------------------------------------------------------------------------------------- evaluate

@pytest.mark.parametrize("bad, wanted", [
    (["--problem-limit", "0"], "--problem-limit must be at least 1, got 0"),
    (["--problem-limit", "-1"], "--problem-limit must be at least 1, got -1"),
    (["--pass-k", "0"], "--pass-k 0: every k must be at least 1"),
    (["--pass-k", "1,-1"], "--pass-k 1,-1: every k must be at least 1"),
    (["--pass-k", "5", "--samples-per-problem", "2", "--eval-temperature", "0.8"],
     "--pass-k 5: pass@5 needs at least that many samples per problem, but --samples-per-problem is 2"),
    (["--pass-k", "1,x"], "--pass-k must be 'all' or comma-separated integers"),
    (["--sandbox-workers", "0"], "--sandbox-workers must be at least 1, got 0"),
])
def test_evaluate_refuses_a_problem_limit_or_pass_k_it_cannot_honour(tmp_path, capsys, bad, wanted):
    assert wanted in _job_error("beam_pipelines.evaluate", bad, tmp_path, capsys)


def test_evaluate_keeps_its_default_k_and_takes_a_k_up_to_n():
    from apache_beam.options.pipeline_options import PipelineOptions

    from transforms.execute.options import eval_settings

    def ks(*argv):
        return eval_settings(PipelineOptions(list(argv))).ks

    assert ks() == (1, 10, 100)  # the default list: the summary reports its k up to n
    assert ks("--pass-k=2,1", "--samples-per-problem=2", "--eval-temperature=0.8") == (1, 2)
    assert ks(f"--benchmark=p3={TINY_P3}", "--samples-per-problem=3") == (1, 2, 3)


def test_the_p3_evaluation_makes_the_papers_100_attempts_unless_told():
    """The self-play paper evaluates the 228 test puzzles with 100 attempts each and reports pass@1..100
    (fine_tune1.sh -> solve.py -attempts=100): `evaluate --benchmark p3` used to make 1 attempt."""
    from apache_beam.options.pipeline_options import PipelineOptions

    from transforms.execute.options import eval_settings

    def settings(*argv):
        return eval_settings(PipelineOptions(list(argv)))

    p3 = settings(f"--benchmark=p3={TINY_P3}")
    assert (p3.samples, p3.temperature, p3.ks) == (100, 0.8, tuple(range(1, 101)))
    assert settings(f"--benchmark=p3={TINY_P3}", "--reference-solutions").samples == 1  # one run per solution
    assert settings(f"--benchmark=p3={TINY_P3}", "--samples-per-problem=7").samples == 7
    humaneval = settings()
    assert (humaneval.samples, humaneval.temperature) == (1, 0.0)


# ------------------------------------------------------------------------------------- self-play loop

def _loop_error(argv, tmp_path, capsys, monkeypatch) -> str:
    ran = []
    monkeypatch.setattr(self_play_loop, "run_step", lambda *a, **k: ran.append(a))
    out = tmp_path / "loop"
    with pytest.raises(SystemExit) as exit_:
        self_play_loop.main([f"--output={out}", *argv])
    assert exit_.value.code == 2 and ran == [] and not out.exists()  # not even the base evaluation
    return capsys.readouterr().err


def test_the_loop_refuses_negative_rounds_and_takes_zero(tmp_path, capsys, monkeypatch):
    err = _loop_error([f"--p3-dir={TINY_P3}", "--rounds=-1"], tmp_path, capsys, monkeypatch)
    assert "--rounds must be 0 (the base evaluation only) or more, got -1" in err
    assert self_play_loop.parse_args([f"--output={tmp_path / 'x'}", f"--p3-dir={TINY_P3}", "--rounds=0"]).rounds == 0


@pytest.mark.parametrize("self_play_args, wanted", [
    ("--num-prompts 0", "the self-play step (--self-play-args): --num-prompts must be at least 1, got 0"),
    ("--max-solutions -1", "the self-play step (--self-play-args): --max-solutions must be at least 1, got -1"),
    ("--verify-timeout 0", "the self-play step (--self-play-args): --verify-timeout must be more than 0 seconds"),
])
def test_the_loop_refuses_bad_self_play_args_before_the_base_evaluation(tmp_path, capsys, monkeypatch,
                                                                        self_play_args, wanted):
    err = _loop_error([f"--p3-dir={TINY_P3}", f"--self-play-args={self_play_args}"], tmp_path, capsys, monkeypatch)
    assert wanted in err


def test_the_loop_refuses_a_k_below_one(tmp_path, capsys, monkeypatch):
    err = _loop_error([f"--p3-dir={TINY_P3}", "--pass-k=0,1"], tmp_path, capsys, monkeypatch)
    assert "--pass-k 0,1: every k must be at least 1" in err


@pytest.mark.parametrize("how, wanted", BROKEN)
def test_the_loop_refuses_a_broken_p3_folder_as_its_own_option(tmp_path, capsys, monkeypatch, how, wanted):
    p3 = _broken_p3(tmp_path, how)
    err = _loop_error([f"--p3-dir={p3}"], tmp_path, capsys, monkeypatch)
    assert f"self-play-loop: error: --p3-dir: {wanted.format(p3=tmp_path / 'p3')}" in err


# --------------------------------------------------------------------------------------------------- paper

MBPP_ROW = {"task_id": 11, "text": "Write a function that returns its argument.", "code": "def same(x):\n    return x",
            "test_list": ["assert same(3) == 3"], "test_setup_code": "", "challenge_test_list": []}


@pytest.mark.parametrize("benchmark, wanted", [
    ("nosuch", "--benchmark nosuch: give NAME=FILE"),
    ("mbpp", "--benchmark mbpp: give NAME=FILE"),
    ("mbpp=", "--benchmark mbpp=: give NAME=FILE"),
    ("bogus=/nonexistent.jsonl", "--benchmark bogus=/nonexistent.jsonl: 'bogus' is not a benchmark of the table"),
    ("humaneval={mbpp}", "'humaneval' always runs (it ships)"),
    ("mbpp=/nonexistent.jsonl", "the evaluate step on mbpp: --benchmark mbpp: /nonexistent.jsonl does not exist"),
])
def test_paper_checks_every_benchmark_before_any_step(tmp_path, capsys, monkeypatch, benchmark, wanted):
    mbpp = tmp_path / "mbpp.jsonl"
    mbpp.write_text(json.dumps(MBPP_ROW) + "\n")
    ran = []
    monkeypatch.setattr(paper, "run_step", lambda *a, **k: ran.append(a))
    out = tmp_path / "paper"
    with pytest.raises(SystemExit) as exit_:
        paper.main([f"--output={out}", f"--benchmark={benchmark.format(mbpp=mbpp)}"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and wanted.format(mbpp=mbpp) in err, err
    assert ran == [] and not out.exists()


def test_paper_refuses_a_benchmark_given_twice_and_takes_one_given_once(tmp_path, capsys):
    mbpp = tmp_path / "mbpp.jsonl"
    mbpp.write_text(json.dumps(MBPP_ROW) + "\n")
    args = paper.parse_args([f"--output={tmp_path / 'p'}", f"--benchmark=mbpp={mbpp}"])
    assert args.benchmarks == [("mbpp", str(mbpp))]
    with pytest.raises(SystemExit):
        paper.parse_args([f"--output={tmp_path / 'p'}", f"--benchmark=mbpp={mbpp}", f"--benchmark=mbpp={mbpp}"])
    assert "--benchmark mbpp=" in capsys.readouterr().err
