"""Source-tree splitting: one snippet per top-level function/class and per method, in many languages."""
from __future__ import annotations

import ast
import sysconfig
from pathlib import Path

import pytest

from transforms.extract.languages import LANGUAGES, language_for_path
from transforms.extract.policies import Extracted, ExtractionConfig, Rejection, extract_code
from transforms.extract.syntax import python_compile_error, syntax_error
from transforms.extract.whitespace import normalize_code
from transforms.io.source_tree import Definition, UndecodableSource, iter_definitions

# pytest records warnings with filters that outrank the module's own "ignore" for snippet compiles.
pytestmark = pytest.mark.filterwarnings("ignore:::<inverse_instruct_snippet>")

STDLIB = Path(sysconfig.get_paths()["stdlib"])

SOURCES = {
    "python": '''import os

@decorator
def top(a, b=1):
    return a + b

class Foo(Base):
    """Doc."""
    x = 1

    @property
    def bar(self):
        return self.x

    def baz(self, y):
        def inner():
            return y
        return inner()
''',
    "java": '''package a.b;
import java.util.List;

public class Foo {
    private int x;
    public Foo(int x) { this.x = x; }
    public int bar() { return x; }
    abstract void todo();
}

interface Shape { double area(); }
enum Color { RED, GREEN; int rank() { return ordinal(); } }
''',
    "c": '''#include <stdio.h>

struct point { int x; int y; };
struct point;

static int add(int a, int b) {
    return a + b;
}

int *make(void) { return 0; }
int prototype(int);
''',
    "cpp": '''#include <iostream>

namespace geo {
class Point {
public:
    Point(int x) : x_(x) {}
    int x() const { return x_; }
private:
    int x_;
};
}

template <typename T>
T maxOf(T a, T b) { return a > b ? a : b; }

#ifdef FEATURE
int feature() { return 1; }
#endif
''',
    "csharp": '''using System;

namespace Demo
{
    public class Calc
    {
        public int Add(int a, int b) { return a + b; }
        public int Prop { get; set; }
    }
    interface IShape { double Area(); }
}
''',
    "javascript": '''import fs from "fs";

function add(a, b) {
  return a + b;
}

const mul = (a, b) => a * b;

export class Foo extends Bar {
  constructor(x) { super(); this.x = x; }
  static make() { return new Foo(1); }
}
export { add as plus };
''',
    "typescript": '''interface Shape { area(): number; }

export function add(a: number, b: number): number {
  return a + b;
}

class Circle implements Shape {
  constructor(private r: number) {}
  area(): number { return Math.PI * this.r ** 2; }
}
''',
    "go": '''package main

import "fmt"

type Point struct {
	X, Y int
}

func (p *Point) Sum() int {
	return p.X + p.Y
}

func main() {
	fmt.Println(Point{1, 2}.Sum())
}
''',
    "rust": '''use std::fmt;

#[derive(Debug)]
struct Point { x: i32, y: i32 }

impl fmt::Display for Point {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result { write!(f, "{}", self.x) }
}

trait Shape { fn area(&self) -> f64; }

fn main() {
    println!("{}", Point { x: 1, y: 2 });
}
''',
    "swift": '''import Foundation

class Animal {
    let name: String
    init(name: String) { self.name = name }
    func speak() -> String { return name }
}

func greet(name: String) -> String {
    return "Hello, \\(name)"
}
''',
    "php": '''<?php
namespace App;

function add($a, $b) {
    return $a + $b;
}

class User {
    public function getName() { return $this->name; }
}
''',
    "ruby": '''require 'set'

def add(a, b)
  a + b
end

class Animal
  def initialize(name)
    @name = name
  end

  def self.create(name)
    new(name)
  end
end
''',
    "kotlin": '''package demo

fun add(a: Int, b: Int): Int {
    return a + b
}

class Point(val x: Int, val y: Int) {
    fun sum(): Int = x + y
}

interface Shape { fun area(): Double }
''',
    "bash": '''#!/bin/bash
greet() {
  echo "Hello $1"
}

function cleanup {
  rm -f /tmp/x
}

greet "$USER"
''',
}

EXPECTED = {
    "python": [("function", "top"), ("class", "Foo"), ("method", "Foo.bar"), ("method", "Foo.baz")],
    "java": [("class", "Foo"), ("method", "Foo.Foo"), ("method", "Foo.bar"), ("class", "Shape"), ("class", "Color"),
             ("method", "Color.rank")],
    "c": [("class", "point"), ("function", "add"), ("function", "make")],
    "cpp": [("class", "Point"), ("method", "Point.Point"), ("method", "Point.x"), ("function", "maxOf"),
            ("function", "feature")],
    "csharp": [("class", "Calc"), ("method", "Calc.Add"), ("class", "IShape")],
    "javascript": [("function", "add"), ("function", "mul"), ("class", "Foo"), ("method", "Foo.constructor"),
                   ("method", "Foo.make")],
    "typescript": [("class", "Shape"), ("function", "add"), ("class", "Circle"), ("method", "Circle.constructor"),
                   ("method", "Circle.area")],
    "go": [("class", "Point"), ("method", "Point.Sum"), ("function", "main")],
    "rust": [("class", "Point"), ("class", "fmt::Display for Point"), ("method", "fmt::Display for Point.fmt"),
             ("class", "Shape"), ("function", "main")],
    "swift": [("class", "Animal"), ("method", "Animal.init"), ("method", "Animal.speak"), ("function", "greet")],
    "php": [("function", "add"), ("class", "User"), ("method", "User.getName")],
    "ruby": [("function", "add"), ("class", "Animal"), ("method", "Animal.initialize"), ("method", "Animal.create")],
    "kotlin": [("function", "add"), ("class", "Point"), ("method", "Point.sum"), ("class", "Shape")],
    "bash": [("function", "greet"), ("function", "cleanup")],
}


@pytest.mark.parametrize("language", sorted(SOURCES))
def test_definitions_per_language(language):
    definitions = list(iter_definitions(SOURCES[language], language))
    assert [(d.kind, d.name) for d in definitions] == EXPECTED[language]
    lines = SOURCES[language].split("\n")
    for definition in definitions:
        assert definition.code == normalize_code(definition.code)
        first_line = definition.code.split("\n")[0]
        assert first_line.strip() in lines[definition.start_line - 1]
        if definition.kind != "method" or LANGUAGES[language].member_shell is None:
            assert syntax_error(definition.code, language) is None, definition


def test_wrappers_and_attributes_belong_to_the_definition():
    by_name = {d.name: d.code for d in iter_definitions(SOURCES["python"], "python")}
    assert by_name["top"].startswith("@decorator\ndef top(")
    assert by_name["Foo.bar"] == "@property\ndef bar(self):\n    return self.x"  # dedented
    assert "def inner" in by_name["Foo.baz"] and "Foo.baz.inner" not in by_name
    rust = {d.name: d.code for d in iter_definitions(SOURCES["rust"], "rust")}
    assert rust["Point"].startswith("#[derive(Debug)]\nstruct Point")
    cpp = {d.name: d.code for d in iter_definitions(SOURCES["cpp"], "cpp")}
    assert cpp["maxOf"].startswith("template <typename T>\nT maxOf(")
    assert cpp["Point"].endswith("};")
    js = {d.name: d.code for d in iter_definitions(SOURCES["javascript"], "javascript")}
    assert js["Foo"].startswith("export class Foo") and js["mul"] == "const mul = (a, b) => a * b;"


@pytest.mark.parametrize("language", ["javascript", "typescript"])
def test_methods_are_checked_inside_a_class_shell_where_the_language_needs_one(language):
    methods = [d for d in iter_definitions(SOURCES[language], language) if d.kind == "method"]
    assert methods and all(syntax_error(m.code, language) for m in methods)  # not a program on their own
    shell = LANGUAGES[language].member_shell
    assert all(syntax_error(shell[0] + m.code + shell[1], language) is None for m in methods)


def test_broken_and_python2_definitions_are_skipped():
    source = (
        'def ok():\n    return 1\n\ndef py2():\n    print "hello"\n\n'
        'def broken(:\n    pass\n\nclass K:\n    def m(self):\n        return 2\n'
    )
    assert [d.name for d in iter_definitions(source, "python")] == ["ok", "K", "K.m"]
    # validate=False yields everything; hinted extraction then gives each broken one a reason.
    everything = list(iter_definitions(source, "python", validate=False))
    assert [d.name for d in everything] == ["ok", "py2", "broken", "K", "K.m"]
    verdicts = {d.name: extract_code(d.code, language_hint="python") for d in everything}
    assert {name for name, r in verdicts.items() if isinstance(r, Rejection)} == {"py2", "broken"}
    assert all(r.reason == "syntax_error" for r in verdicts.values() if isinstance(r, Rejection))


@pytest.mark.parametrize("language", sorted(SOURCES))
def test_hinted_extraction_accepts_every_validated_definition(language):
    definitions = list(iter_definitions(SOURCES[language], language))
    assert definitions
    for definition in definitions:
        result = extract_code(definition.code, ExtractionConfig(min_chars=0), language_hint=language)
        assert isinstance(result, Extracted) and result.code == definition.code, (definition, result)


def test_a_class_with_one_bad_method_keeps_its_good_methods():
    source = 'class K:\n    def good(self):\n        return 1\n\n    def old(self):\n        print "x"\n'
    assert [d.name for d in iter_definitions(source, "python")] == ["K.good"]


def test_tsx_source_uses_the_tsx_grammar():
    source = "export function App(props: { name: string }) {\n  return <div>Hello {props.name}</div>;\n}\n"
    assert [d.name for d in iter_definitions(source, "typescript")] == ["App"]


def test_languages_without_definitions_yield_nothing():
    assert list(iter_definitions("SELECT 1;", "sql")) == []
    with pytest.raises(KeyError, match="unknown language"):
        list(iter_definitions("x", "cobol"))


def test_encodings():
    latin1 = b'# -*- coding: latin-1 -*-\ndef caf\xe9():\n    return "\xe9"\n'
    expected = [Definition("function", "café", 2, 'def café():\n    return "é"')]
    assert list(iter_definitions(latin1, "python")) == expected
    assert [d.name for d in iter_definitions(b"\xef\xbb\xbfdef f():\n    return 1\n", "python")] == ["f"]
    assert [d.name for d in iter_definitions(b"\xef\xbb\xbffunction f() { return 1; }", "javascript")] == ["f"]
    for source, language in [
        (b"# -*- coding: uft-8 -*-\ndef f():\n    pass\n", "python"),  # unknown codec
        (b"def f():\n    return '\xff'\n", "python"),  # not UTF-8, no cookie
        (b"function f() { return '\xff'; }", "javascript"),
        ("def f():\n    return '\ud800'\n", "python"),  # lone surrogate
    ]:
        with pytest.raises(UndecodableSource):
            list(iter_definitions(source, language))
    with pytest.raises(TypeError):
        list(iter_definitions(None, "python"))


@pytest.mark.parametrize(
    "path, language",
    [("a/b.py", "python"), ("X.JAVA", "java"), ("m.h", "c"), ("m.hpp", "cpp"), ("m.cc", "cpp"), ("p.cs", "csharp"),
     ("app.mjs", "javascript"), ("c.jsx", "javascript"), ("c.tsx", "typescript"), ("main.go", "go"), ("lib.rs", "rust"),
     ("v.swift", "swift"), ("i.php", "php"), ("r.rb", "ruby"), ("k.kts", "kotlin"), ("run.sh", "bash"),
     ("README.md", None), ("Makefile", None), ("data.pyc", None), ("noext", None)],
)
def test_language_for_path(path, language):
    assert language_for_path(path) == language
    assert language_for_path(Path(path)) == language


def _expected_from_ast(source: str) -> list[tuple[str, str, int, str]]:
    """Independent expectation: top-level defs/classes and class methods, via CPython's ast."""
    lines = source.split("\n")

    def snippet(node) -> tuple[int, str]:
        start = min([node.lineno] + [d.lineno for d in node.decorator_list])
        return start, normalize_code("\n".join(lines[start - 1 : node.end_lineno]))

    expected = []
    for node in ast.parse(source).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            expected.append(("function", node.name, *snippet(node)))
        elif isinstance(node, ast.ClassDef):
            expected.append(("class", node.name, *snippet(node)))
            for member in node.body:
                if isinstance(member, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    expected.append(("method", f"{node.name}.{member.name}", *snippet(member)))
    return expected


@pytest.mark.parametrize("module", ["textwrap.py", "functools.py", "json/decoder.py"])
def test_real_stdlib_module_matches_ast(module):
    path = STDLIB / module
    source = path.read_text(encoding="utf-8")
    definitions = list(iter_definitions(path.read_bytes(), language_for_path(path)))
    expected = _expected_from_ast(source)
    assert [d[:3] for d in definitions] == [e[:3] for e in expected]
    for definition, (*_, expected_code) in zip(definitions, expected):
        # tree-sitter also keeps comments that trail the last statement at the body's indentation
        assert definition.code.startswith(expected_code)
        trailing = definition.code[len(expected_code):].split("\n")
        assert all(not line.strip() or line.strip().startswith("#") for line in trailing), trailing
        assert python_compile_error(definition.code) is None


@pytest.mark.parametrize(
    "relative, undecodable, has_definitions",
    [
        ("test/tokenizedata/bad_coding.py", True, False),
        ("lib2to3/tests/data/py2_test_grammar.py", False, True),  # its Python 3 definitions survive
        ("lib2to3/tests/data/different_encoding.py", False, False),  # module-level code only
        ("lib2to3/tests/data/false_encoding.py", False, False),
    ],
)
def test_odd_stdlib_files(relative, undecodable, has_definitions):
    path = STDLIB / relative
    if not path.exists():
        pytest.skip(f"{relative} is not in this Python's stdlib")
    if undecodable:
        with pytest.raises(UndecodableSource):
            list(iter_definitions(path.read_bytes(), "python"))
    else:
        definitions = list(iter_definitions(path.read_bytes(), "python"))
        assert bool(definitions) == has_definitions, [d.name for d in definitions]
        for definition in definitions:
            assert python_compile_error(definition.code) is None
