"""Beam glue of self-play: generate -> filter -> dedup -> solve -> verify -> select -> training examples.

* ``generated_samples``: a prompt's joined generation result -> its ``n`` samples (engine errors included).
* ``FilterPuzzlesFn`` (stage ``self_play.filter``): every filter of the reference, in its order, on a pool of
  sandboxes (the ``return True`` judge and the trivial-answer test run model-written code), and the project's
  refusal of a P3 test puzzle (``p3_test_puzzle``: a dict of fingerprints built once in the launcher).
* ``KeepFirstPuzzleFn`` (stage ``self_play.dedup``): one copy of each puzzle text.
* ``SolveAttempts``: a solve request of ``n`` attempts per puzzle through the shared engine, each attempt
  verified in the sandbox (``g()`` in one sandbox, its answer type-checked, ``f(answer)`` in a fresh one); the
  evaluation job uses it on the P3 test puzzles too. ``verify_attempts`` does the same for given texts.
* ``SelectSolutionsFn``: per puzzle, up to ``max_sols`` distinct verified solutions, shortest first (stage
  ``self_play.select``), every other attempt a dead letter with its reason (stage ``self_play.solve``).
* ``TrainingExamplesFn``: the raw training text of each kept solution (``f``, ``g``, ``assert f(g())``).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Iterable, Iterator, Mapping, Sequence

import apache_beam as beam

from runners.inference import infer_and_join, to_samples
from schemas.records import RecordKind
from transforms.execute.beam import SandboxPoolDoFn
from transforms.execute.isolation import IsolationLimits, IsolationUnavailable
from transforms.execute.pool import SandboxPool
from transforms.execute.verdicts import NOT_EVALUATED, guarded, runs_cleanly, sat_outcomes, verify_pair
from transforms.selfplay import filters, plans, solve
from transforms.selfplay import puzzles as seed_format
from transforms.selfplay.introspection import interpreter_route
from transforms.selfplay.plans import example_sort_key
from transforms.selfplay.preset import FilterStrings, SelfPlayPreset
from transforms.selfplay.source import imported_names, solution_body, split_imports
from transforms.stage import REJECTED, Reject, StageBooks, StageFn, StageOutput

STAGE = "self_play"
ATTEMPT_STATUSES = ("passed", "failed", "timeout", "unparsed", "refused", "engine_error")


@dataclasses.dataclass(frozen=True)
class SandboxSettings:
    limits: IsolationLimits
    workers: int | None  # None: each worker's own number of CPUs
    allow_unisolated: bool = False


# ------------------------------------------------------------------------------------------- generation

def _sample_base(_key: str, plan: dict[str, Any], i: int) -> dict[str, Any]:
    return {"prompt_index": plan["prompt_index"], "sample_index": i, "preset": plan["preset"], "k": plan["k"],
            "head": plan["head"], "examples": plan["examples"], "seed": plan["seed"]}


def generated_samples(element, n: int) -> Iterator[dict[str, Any]]:
    """A plan joined to its generation result -> n samples (an engine error gives n error samples)."""
    return to_samples(element, n, _sample_base)


def _provenance(sample: dict[str, Any]) -> dict[str, Any]:
    return {"source_uri": f"self-play:prompt-{sample['prompt_index']}", "source_row": sample["sample_index"]}


class GeneratedFn(StageFn):
    """Stage ``self_play.generate``: a sample the engine could not produce is a dead letter."""

    stage = f"{STAGE}.generate"
    record_kind = RecordKind.PUZZLE

    def process_record(self, sample: dict[str, Any]) -> Iterator[Any]:
        if "engine_error" in sample:
            yield self.books.reject(sample, "engine_error", sample["engine_error"], **_provenance(sample))
        else:
            yield sample


# ----------------------------------------------------------------------------------------------- filter

def filter_sample(sample: dict[str, Any], strings: FilterStrings, *, trivial_reject_rate: float, seed: int,
                  sandbox: SandboxSettings, seed_examples: Sequence[seed_format.Puzzle] = (),
                  test_index: Mapping[str, str] | None = None) -> tuple[str | None, str, dict[str, Any]]:
    """(reason or None, detail, facts) of one generated sample under the reference's filters, in its order.
    ``facts`` holds the cut puzzle text, its answer type and whether the trivial test ran. ``test_index``: the P3
    test puzzles' fingerprints (``puzzle_fingerprint.fingerprint_index``); a puzzle among them is refused before
    anything runs. A puzzle nested too deeply for this process to parse is refused as one it cannot check (it used
    to raise here, failing the whole bundle)."""
    try:
        return _filter_sample(sample, strings, trivial_reject_rate=trivial_reject_rate, seed=seed, sandbox=sandbox,
                              seed_examples=seed_examples, test_index=test_index)
    except (RecursionError, MemoryError) as err:
        return filters.REACHES_INTERPRETER, f"nested too deeply to check ({type(err).__name__})", {}


def _filter_sample(sample: dict[str, Any], strings: FilterStrings, *, trivial_reject_rate: float, seed: int,
                   sandbox: SandboxSettings, seed_examples: Sequence[seed_format.Puzzle],
                   test_index: Mapping[str, str] | None) -> tuple[str | None, str, dict[str, Any]]:
    try:
        text = plans.puzzle_text(sample, seed_examples)
    except seed_format.PuzzleRejected as err:
        return err.reason, err.detail, {}
    # A seed-preset puzzle has its imports in front: the reference's text checks see f from ``def f(`` on,
    # and every program that runs f (and the kept ``sat``) gets the imports back. Paper texts have none.
    imports, text = split_imports(text)
    f_text, reason = filters.check_text(text)
    puzzle = imports + f_text
    facts: dict[str, Any] = {"sat": puzzle}
    if reason:
        return reason, puzzle[:200], facts
    test_puzzle = filters.p3_test_reason(puzzle, test_index or {})
    if test_puzzle:
        return *test_puzzle, facts
    reason = filters.unsafe_reason(puzzle, strings)
    if reason:
        return reason, "the judge refuses this code", facts
    route = interpreter_route(puzzle)
    if route:
        return filters.REACHES_INTERPRETER, route, facts
    found = filters.run_dependence(puzzle)
    if found:
        return found[0], found[2], facts
    judged = guarded(runs_cleanly, imports + filters.return_true_program(f_text, strings, preamble=False),
                     sandbox.limits, preamble=strings.judge_preamble, allow_unisolated=sandbox.allow_unisolated)
    reason = filters.read_return_true(judged.passed)
    if reason:
        return reason, judged.reason, facts
    verdict = filters.check_signature(f_text, trivial_reject_rate=trivial_reject_rate, seed=seed, strings=strings,
                                      imported=imported_names(imports))
    facts.update(answer_type=verdict.answer_type, tested=verdict.tested)
    if verdict.reason:
        return verdict.reason, f"answer {verdict.answer_name}: {verdict.answer_type}", facts
    if verdict.tested:
        try:
            outcomes = sat_outcomes(puzzle, list(verdict.candidates), sandbox.limits,
                                    preamble=filters.trivial_preamble(strings),
                                    allow_unisolated=sandbox.allow_unisolated)
        except IsolationUnavailable:  # this machine cannot sandbox at all: the job's error, not this puzzle's
            raise
        except Exception as err:  # the trusted side raised on this one puzzle: recorded, the job goes on
            return "verifier_error", f"{type(err).__name__}: {str(err)[:200]}", facts
        reason = filters.read_trivial_outcomes(outcomes)
        hits = [c for c, o in zip(verdict.candidates, outcomes) if o in filters.TRIVIAL_OUTCOMES]
        if reason and hits:
            return reason, f"f({hits[0]!r}) passes", facts
        if reason:  # no small answer passed, but some were never tried
            untried = outcomes.count(NOT_EVALUATED)
            return reason, (f"{untried} of {len(outcomes)} small answers not tried: the sandbox failed too often "
                            f"(timeouts or crashes) before their turn"), facts
    reason = filters.environment_name_reason(puzzle, strings)
    if reason:
        names = sorted(filters.environment_names(strings))
        return reason, f"reads a name defined in some of its runs only (one of {names})", facts
    reason = filters.too_long_reason(puzzle)
    return (reason, f"{len(puzzle)} characters", facts) if reason else (None, "", facts)


class FilterPuzzlesFn(SandboxPoolDoFn):
    """Stage ``self_play.filter`` over batches of samples, on the worker's pool of sandboxes."""

    def __init__(self, strings: FilterStrings, trivial_reject_rate: float, seed: int, sandbox: SandboxSettings,
                 model: str, seed_examples: Sequence[seed_format.Puzzle] = (),
                 test_index: Mapping[str, str] | None = None):
        super().__init__(sandbox.workers)
        self._strings = strings
        self._rate = trivial_reject_rate
        self._seed = seed
        self._sandbox = sandbox
        self._model = model
        self._seed_examples = tuple(seed_examples)
        self._test_index = dict(test_index or {})  # {fingerprint: P3 test puzzle name}, pickled with the DoFn
        self.books = StageBooks(f"{STAGE}.filter", RecordKind.PUZZLE)

    def _one(self, sample: dict[str, Any]):
        return filter_sample(sample, self._strings, trivial_reject_rate=self._rate, seed=self._seed,
                             sandbox=self._sandbox, seed_examples=self._seed_examples,
                             test_index=self._test_index)

    def process(self, batch: list[dict[str, Any]]) -> Iterator[Any]:
        self.books.took(len(batch))
        for sample, (reason, detail, facts) in zip(batch, self._pool.map(self._one, batch)):
            if reason:
                payload = {**sample, **({"sat": facts["sat"]} if "sat" in facts else {})}
                yield self.books.reject(payload, reason, detail, **_provenance(sample))
            else:
                yield self.books.kept(plans.puzzle_record(sample, facts["sat"], facts.get("answer_type"),
                                                          facts.get("tested", False), self._model))


class KeepFirstPuzzleFn(beam.DoFn):
    """Stage ``self_play.dedup``: of the samples that wrote the same puzzle, the first (prompt, sample) stays."""

    def __init__(self):
        self.books = StageBooks(f"{STAGE}.dedup", RecordKind.PUZZLE)

    def process(self, element: tuple[str, Iterable[dict[str, Any]]]) -> Iterator[Any]:
        _, records = element
        ordered = sorted(records, key=lambda r: (r["prompt_index"], r["sample_index"]))
        self.books.took(len(ordered))
        yield self.books.kept(ordered[0])
        for r in ordered[1:]:
            yield self.books.reject(r, "duplicate_puzzle", f"same puzzle as {ordered[0]['name']}")


# ------------------------------------------------------------------------------------------------ solve

@dataclasses.dataclass(frozen=True)
class SolveSettings:
    prefix: str
    sampling: plans.Sampling
    run_seed: int
    judge_preamble: str
    stage: str = f"{STAGE}.solve_plan"
    count_planned: bool = True  # False when the launcher already counted the requests (it knows the total)
    # What the literal f(g()) check has in front of f and g: self-play's training text's names (List only, as
    # filters.trivial_preamble); None for the P3 evaluation, whose attempts are judged as the reference judges.
    literal_preamble: str | None = None
    # How many times the literal f(g()) script runs, each under a hash seed of its own (verify_pair): self-play's
    # training text must hold in every run; the P3 evaluation runs it once.
    literal_runs: int = 1


def solution_refusal(g: str, sat: str = "") -> str | None:
    """Why a self-play solution may not be judged, or None: the reference's judge refused to run code with
    imports outside its short list, and a g that reaches the interpreter can tell the sandbox from plain Python
    (read the literal check's nonce from its caller's code, see which names are defined, share state with f), so
    a pair it passes need not hold in its training text. A g that may draw from randomness not seeded by a constant
    passes both checks of a pair by chance; it is judged with its puzzle ``sat`` in front, as the training text
    has it, since g may read a name the puzzle's imports bind (``import random as r`` there, ``r.randint`` in g).
    Its interpreter routes are looked for with the puzzle in front as well (g can rebind the names f reads). So is
    a g whose generator holds a finalizer (run at a collection timed differently in the sandbox) or that may
    put objects hashed by address in a set (its order follows ASLR) or show an address in text, with its puzzle in
    front too.
    The P3 evaluation judges its attempts as the reference does, without this (a test puzzle's own reference
    solution may import)."""
    if filters.unsafe_reason(g):
        return "the solution imports or names what the reference's judge refuses to run"
    program = f"{sat}\n\n{g}" if sat else g
    # with its puzzle in front: `global list` in g made the puzzle's `type(n) != list is tuple` an identity test
    # of g's objects (the thirteenth red team)
    route = interpreter_route(program)
    if route:
        return f"the solution reaches the interpreter: {route}"
    found = filters.run_dependence(program)
    return f"the solution {found[1]}: {found[2]}" if found else None


def verify_attempts(puzzle: dict[str, Any], header: str, answer_type: str, texts: Sequence[str] | None,
                    engine_error: str, n: int, judge_preamble: str, sandbox: SandboxSettings,
                    pool: SandboxPool | None = None, literal_preamble: str | None = None,
                    literal_runs: int = 1) -> list[dict[str, Any]]:
    """The ``n`` attempts of one puzzle with their status (``ATTEMPT_STATUSES``) and reason. Each distinct body is
    verified once; ``texts`` are the completions after ``header`` (None with ``engine_error``).
    ``literal_preamble``: ``verify_pair``'s (a self-play pair whose g reads ``Tuple`` verified under the judge's
    names, and its training text raises NameError). With it (self-play, whose pairs become training text) a g is
    first held to the puzzles' own static rules, ``refused`` when it breaks one (``solution_refusal``)."""
    attempts = []
    for i in range(n):
        base = {"attempt_index": i, "body": None, "g": None, "status": "engine_error", "reason": engine_error,
                "duration_s": 0.0}
        if texts is not None and i < len(texts):
            body = solution_body(texts[i])
            g = None if body is None else header + body
            base.update(body=body, g=g, status="unparsed" if body is None else "pending",
                        reason="the completion does not parse as the body of g" if body is None else "")
            refusal = None if g is None or literal_preamble is None else solution_refusal(g, puzzle["sat"])
            if refusal:
                base.update(status="refused", reason=refusal)
        elif texts is not None:
            base["reason"] = engine_error or "fewer completions than attempts"
        attempts.append(base)
    distinct = sorted({a["g"] for a in attempts if a["status"] == "pending"})

    def check(g: str):
        return guarded(verify_pair, puzzle["sat"], f"{puzzle['sat']}\n\n{g}", answer_type, sandbox.limits,
                       preamble=judge_preamble, allow_unisolated=sandbox.allow_unisolated,
                       literal_preamble=literal_preamble, literal_runs=literal_runs)

    verdicts = dict(zip(distinct, pool.map(check, distinct) if pool else map(check, distinct)))
    for a in attempts:
        if a["status"] == "pending":
            v = verdicts[a["g"]]
            a.update(status=v.status, reason=v.reason, duration_s=round(v.duration_s, 3), isolated=v.isolated)
    return attempts


class _PlanSolveFn(StageFn):
    record_kind = RecordKind.PUZZLE
    side_outputs = ("requests",)

    def __init__(self, settings: SolveSettings):
        self.stage = settings.stage
        super().__init__()
        self._settings = settings

    def process_record(self, puzzle: dict[str, Any]) -> Iterator[Any]:
        s = self._settings
        planned = plans.solve_request(puzzle, s.prefix, s.sampling, s.run_seed)
        if isinstance(planned[0], str):
            yield Reject(*planned)
            return
        prompt, request = planned
        if s.count_planned:
            self.books.count("requests.generate")
        yield beam.pvalue.TaggedOutput("requests", (puzzle["id"], request))
        yield puzzle["id"], {"puzzle": puzzle, "header": prompt.header, "answer_type": prompt.answer_type}


class _VerifyAttemptsFn(SandboxPoolDoFn):
    """A puzzle joined to its n completions -> ``{"puzzle", "attempts"}`` (verified on the worker's pool)."""

    def __init__(self, n: int, judge_preamble: str, sandbox: SandboxSettings, literal_preamble: str | None = None,
                 literal_runs: int = 1):
        super().__init__(sandbox.workers)
        self._n = n
        self._judge_preamble = judge_preamble
        self._literal_preamble = literal_preamble
        self._literal_runs = literal_runs
        self._sandbox = sandbox

    def process(self, joined) -> Iterator[dict[str, Any]]:
        from runners.inference import engine_failure

        _, groups = joined
        results = list(groups["result"])
        failure = engine_failure(results)
        for planned in groups["record"]:
            texts = None if failure else list(results[0].texts)
            attempts = verify_attempts(planned["puzzle"], planned["header"], planned["answer_type"], texts,
                                       failure[1] if failure else "", self._n, self._judge_preamble,
                                       self._sandbox, self._pool, self._literal_preamble, self._literal_runs)
            yield {**planned, "attempts": attempts}


class SolveAttempts(beam.PTransform):
    """Puzzle records (``id``, ``name``, ``sat``) -> ``StageOutput``: ``main`` holds ``{"puzzle", "header",
    "answer_type", "attempts"}`` per puzzle; ``rejected`` the puzzles that cannot be attempted."""

    def __init__(self, handler, settings: SolveSettings, sandbox: SandboxSettings):
        super().__init__()
        self._handler = handler
        self._settings = settings
        self._sandbox = sandbox

    def expand(self, puzzles):  # -> StageOutput (see there why unannotated)
        planned = _PlanSolveFn(self._settings).apply(puzzles, "PlanSolve")
        joined = infer_and_join(planned.side["requests"], planned.main, self._handler, "Solve")
        attempts = (joined
                    | "SpreadPuzzles" >> beam.Reshuffle()
                    | "Verify" >> beam.ParDo(_VerifyAttemptsFn(self._settings.sampling.n,
                                                               self._settings.judge_preamble, self._sandbox,
                                                               self._settings.literal_preamble,
                                                               self._settings.literal_runs)))
        return StageOutput(attempts, planned.rejected)


# ----------------------------------------------------------------------------------------------- select

ATTEMPT_REASONS = {"failed": "solution_failed", "timeout": "solution_timeout", "unparsed": "solution_unparsed",
                   "refused": "solution_refused", "engine_error": "engine_error"}


class SelectSolutionsFn(beam.DoFn):
    """Per puzzle: the solved PUZZLE record (up to ``max_sols`` distinct verified g, shortest first), or an
    ``unsolved`` dead letter (stage ``self_play.select``); every attempt not kept is a dead letter of stage
    ``self_play.solve`` (tagged ``attempts_rejected``), every kept one is counted (tagged ``attempts_kept``)."""

    def __init__(self, max_sols: int):
        self._max_sols = max_sols
        self.solve_books = StageBooks(f"{STAGE}.solve", RecordKind.PUZZLE)
        self.books = StageBooks(f"{STAGE}.select", RecordKind.PUZZLE)

    def process(self, element: dict[str, Any]) -> Iterator[Any]:
        puzzle, attempts = element["puzzle"], element["attempts"]
        self.books.took()
        self.solve_books.took(len(attempts))
        marked = [solve.Attempt(a["attempt_index"], a["body"], a["status"] == "passed") for a in attempts]
        chosen = solve.select_solutions(marked, self._max_sols)
        chosen_set = set(chosen)
        kept_index: dict[str, int] = {}
        for a in attempts:
            body = a["body"]
            if a["status"] == "passed" and body in chosen_set and body not in kept_index:
                kept_index[body] = a["attempt_index"]
                self.solve_books.count("out")
                yield beam.pvalue.TaggedOutput("attempts_kept", {"puzzle_id": puzzle["id"], **a})
                continue
            if a["status"] == "passed":
                reason = "duplicate_solution" if body in chosen_set else "over_solution_cap"
            else:
                reason = ATTEMPT_REASONS[a["status"]]
            payload = {"puzzle_id": puzzle["id"], "name": puzzle["name"], "sat": puzzle["sat"], **a}
            yield beam.pvalue.TaggedOutput("attempts_rejected", self.solve_books.reject(
                payload, reason, a["reason"], source_uri=puzzle["source_uri"], source_row=puzzle["source_row"]).value)
        solved = {**puzzle, "solutions": [element["header"] + body for body in chosen],
                  "sol": element["header"] + chosen[0] if chosen else None, "attempts": len(attempts),
                  "verified_attempts": sum(a.passed for a in marked), "stage": f"{STAGE}.select"}
        if chosen:
            yield self.books.kept(solved)
        else:
            yield self.books.reject(solved, "unsolved", f"none of {len(attempts)} attempts verified")


class TrainingExamplesFn(beam.DoFn):
    """A solved puzzle -> one TRAINING_EXAMPLE per kept solution (``plans.solved_puzzle_examples``): the reference's
    raw text or the instruction format."""

    def __init__(self, preset: SelfPlayPreset, training_format: str, template: seed_format.SelfPlayPrompt):
        plans.require_training_format(training_format)  # at construction, before any element
        self._preset = preset
        self._format = training_format
        self._template = template

    def process(self, puzzle: dict[str, Any]) -> Iterator[dict[str, Any]]:
        yield from plans.solved_puzzle_examples(puzzle, self._preset, self._format, self._template)


__all__ = ["REJECTED", "FilterPuzzlesFn", "GeneratedFn", "KeepFirstPuzzleFn", "SandboxSettings", "SelectSolutionsFn",
           "SolveAttempts", "SolveSettings", "TrainingExamplesFn", "example_sort_key", "generated_samples",
           "verify_attempts"]
