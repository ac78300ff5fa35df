"""What one syntax check of a Python snippet costs, on the snippets the extraction DoFn checks.

    python bench/extract_parse.py [--records 20000] [--repeats 3] [--other-pythons /path/python3.12,...] [--json F]

Runs ``ExtractCodeFn`` (``multilang``) over the first ``--records`` records of ``bench/extract.py``'s corpus,
keeps every snippet it hands to CPython's compiler, and times per snippet, best of ``--repeats`` passes:

- ``compile``: CPython's compile to a code object (the DoFn's Python check);
- ``ast_parse``: ``ast.parse`` (the parser without the compiler, plus the AST's Python objects);
- ``symtable``: ``symtable.symtable`` (parser and symbol table);
- ``tree_sitter``: one tree-sitter Python parse (the check every other language gets);
- ``compile_joined_16``: one compile of 16 snippets joined by newlines, per snippet (what a call's own overhead
  is worth; not a check: an unclosed bracket in one snippet swallows the next);
- the DoFn's time per record over the same records, and that time less the compiles (everything else).

``--other-pythons`` times ``compile`` of the same snippets under other interpreters (a subprocess each).
"""
from __future__ import annotations

import argparse
import ast
import json
import pickle
import subprocess
import symtable
import sys
import tempfile
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench import extract as extract_bench  # noqa: E402
from runners.hardware import describe_machine  # noqa: E402
from transforms.extract import syntax  # noqa: E402

_TIME_COMPILE = """
import pickle, sys, time, warnings
warnings.simplefilter("ignore")
snippets = pickle.load(open(sys.argv[1], "rb"))
best = float("inf")
for _ in range(int(sys.argv[2])):
    started = time.perf_counter()
    for s in snippets:
        compile(s, "<s>", "exec", dont_inherit=True)
    best = min(best, time.perf_counter() - started)
print(best / len(snippets) * 1e6)
"""


def dofn_snippets(corpus: Path) -> tuple[list[str], float, int]:
    """The Python snippets the DoFn compiles, its seconds over the corpus, and the records read."""
    seen: list[str] = []
    original = syntax.compile_quietly

    def recording(source, flags=0):
        if flags == 0:
            seen.append(source)
        return original(source, flags)

    syntax.compile_quietly = recording
    try:
        seconds, _ = extract_bench.bench_dofn(corpus, "multilang")
    finally:
        syntax.compile_quietly = original
    records = sum(1 for _ in corpus.open())
    return seen, seconds, records


def best_per_item_us(check, items, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        for item in items:
            try:
                check(item)
            except (SyntaxError, ValueError):
                pass
        best = min(best, time.perf_counter() - started)
    return best / len(items) * 1e6


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--other-pythons", default="", help="comma-separated interpreters to time compile() under")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="extract-parse-"))
    corpus = workdir / "corpus.jsonl"
    extract_bench.make_corpus(corpus, args.records)
    snippets, dofn_seconds, records = dofn_snippets(corpus)
    if not snippets:
        raise SystemExit("the DoFn compiled no Python snippet: nothing to time")
    warnings.simplefilter("ignore")  # SyntaxWarnings of the snippets; the DoFn silences them by file name
    compiles = [s for s in snippets if syntax.python_compile_error(s) is None]
    parser_ts = syntax.thread_parser("python")
    encoded = [(s + "\n").encode("utf-8") for s in snippets]
    joined = ["\n".join(compiles[i:i + 16]) for i in range(0, len(compiles), 16)]
    per_snippet = {
        "compile": best_per_item_us(lambda s: compile(s, "<s>", "exec", dont_inherit=True), snippets, args.repeats),
        "ast_parse": best_per_item_us(ast.parse, snippets, args.repeats),
        "symtable": best_per_item_us(lambda s: symtable.symtable(s, "<s>", "exec"), snippets, args.repeats),
        "tree_sitter": best_per_item_us(lambda b: parser_ts.parse(b).root_node.has_error, encoded, args.repeats),
        "compile_joined_16": best_per_item_us(lambda s: compile(s, "<s>", "exec", dont_inherit=True), joined,
                                              args.repeats) * len(joined) / len(compiles),
    }
    dofn_us = dofn_seconds / records * 1e6
    report = {
        "machine": describe_machine(), "python": sys.version.split()[0], "records": records,
        "python_snippets": len(snippets), "snippets_that_compile": len(compiles),
        "mean_snippet_chars": round(sum(map(len, snippets)) / len(snippets), 1),
        "us_per_snippet": {k: round(v, 1) for k, v in per_snippet.items()},
        "dofn_us_per_record": round(dofn_us, 1), "dofn_records_per_s": round(records / dofn_seconds),
        "dofn_us_per_record_besides_compile": round(dofn_us - per_snippet["compile"] * len(snippets) / records, 1),
        "compile_us_under": {},
    }
    if args.other_pythons:
        pickled = workdir / "snippets.pkl"
        pickled.write_bytes(pickle.dumps(compiles, protocol=4))
        for python in filter(None, args.other_pythons.split(",")):
            out = subprocess.run([python, "-c", _TIME_COMPILE, str(pickled), str(args.repeats)],
                                 capture_output=True, text=True, check=True)
            version = subprocess.run([python, "-c", "import sys; print(sys.version.split()[0])"],
                                     capture_output=True, text=True, check=True).stdout.strip()
            report["compile_us_under"][version] = round(float(out.stdout), 1)
        report["compile_us_under"][report["python"]] = round(
            best_per_item_us(lambda s: compile(s, "<s>", "exec", dont_inherit=True), compiles, args.repeats), 1)
    print(json.dumps(report, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1) + "\n")
    return report


if __name__ == "__main__":
    main()
