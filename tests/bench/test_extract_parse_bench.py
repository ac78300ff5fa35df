"""bench/extract_parse.py: it times the snippets the DoFn really compiles, and leaves the DoFn's compile as it was."""
from __future__ import annotations

import json
import sys

from tests.bench import load_bench


def test_the_snippets_timed_are_the_ones_the_dofn_compiled(monkeypatch, tmp_path):
    bench = load_bench("extract_parse.py", monkeypatch)
    from transforms.extract import syntax

    before = syntax.compile_quietly
    out = tmp_path / "parse.json"
    report = bench.main(["--records", "300", "--repeats", "1", "--other-pythons", sys.executable,
                         "--json", str(out)])
    assert syntax.compile_quietly is before
    assert json.loads(out.read_text()) == report
    # the corpus is mostly Python, fenced or not, with some syntax errors planted by bench/extract.py's shapes
    assert 0 < report["snippets_that_compile"] < report["python_snippets"] <= report["records"] == 300
    assert set(report["us_per_snippet"]) == {"compile", "ast_parse", "symtable", "tree_sitter", "compile_joined_16"}
    assert all(us > 0 for us in report["us_per_snippet"].values())
    assert 0 < report["dofn_us_per_record_besides_compile"] < report["dofn_us_per_record"]
    assert set(report["compile_us_under"]) == {report["python"]}  # the same interpreter twice: one key
