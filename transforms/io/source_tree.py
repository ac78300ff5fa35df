"""Split source files into definition snippets, for the source-tree reader. Pure functions, no Beam.

``iter_definitions(source, language)`` yields :class:`Definition` ``(kind, name, start_line, code)``:

* every top-level function (``kind="function"``) and type-level definition (``kind="class"``: class,
  struct, union, enum, interface, trait, Rust ``impl``, Ruby module, Kotlin object, Go ``type``);
* for each such class, each of its methods (``kind="method"``, name ``Class.method``), after the class
  itself, so a method appears twice: inside its class's snippet and on its own. Go methods are top level
  and are yielded as methods. Nested functions and nested classes stay inside their parent's snippet.
* Members of namespace-like scopes count as top level (C++/C# namespaces, Rust ``mod``, PHP namespace
  blocks, C/C++ ``#if`` blocks and ``extern "C"``).
* Decorators (Python), ``export`` (JS/TS), ``template <...>`` (C++) and leading ``#[...]`` attributes
  (Rust) are part of the snippet. Signature-only declarations (interface methods, prototypes,
  ``struct foo;``) are skipped.
* ``validate=True`` (default) skips a definition whose subtree holds a tree-sitter ERROR/MISSING node
  or whose snippet fails ``transforms.extract.syntax.syntax_error`` (for Python: CPython's compiler, which
  refuses Python 2 code that tree-sitter's Python grammar tolerates); the rest of the file is still
  used. A method of a language whose methods are not programs on their own (JS, Java...) is checked
  inside the language's class shell. ``validate=False`` yields every definition found, broken or not:
  use it when the snippets go through ``extract_code(..., language_hint=language)``, which applies the
  same checks and gives each failure a reason code instead of dropping it silently.
* ``code`` is normalized like extracted code (``extraction.normalize_code``): a method's indentation is
  removed so it stands alone. ``start_line`` is 1-based, the snippet's first line in the file.

Bytes are decoded as the language defines: Python by its PEP 263 coding cookie or BOM
(``tokenize.detect_encoding``), everything else as UTF-8 (a BOM is dropped). Undecodable input raises
:class:`UndecodableSource` (a ``ValueError``) before anything is yielded, so a reader can dead-letter
the file.
"""
from __future__ import annotations

import io
import tokenize
from typing import Iterator, NamedTuple

from schemas.records import lone_surrogate_at
from transforms.extract.languages import CLASS, FUNCTION, METHOD, LanguageSpec, language_for_path, language_spec
from transforms.extract.syntax import only_tolerated_errors, python_compile_error, syntax_error, thread_parser
from transforms.extract.whitespace import normalize_code

UNPARSED = "unparsed"  # top-level code the grammar put in an ERROR node

__all__ = ["Definition", "UndecodableSource", "decode_source", "iter_definitions", "language_for_path"]


class Definition(NamedTuple):
    kind: str  # "function" | "class" | "method" | "unparsed" (an ERROR node, only when not validating)
    name: str
    start_line: int  # 1-based
    code: str


class UndecodableSource(ValueError):
    """The file's bytes cannot be decoded as its language says they are encoded."""


def decode_source(source: str | bytes, language: str) -> str:
    """Text of a source file (see the module docstring for the encoding rules)."""
    if isinstance(source, str):
        text = source
    elif isinstance(source, (bytes, bytearray)):
        data = bytes(source)
        try:
            if language == "python":
                encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
            else:
                encoding = "utf-8-sig"
            text = data.decode(encoding)
        except (SyntaxError, LookupError, UnicodeDecodeError) as exc:
            raise UndecodableSource(f"cannot decode {language} source: {exc}") from exc
    else:
        raise TypeError(f"source must be str or bytes, not {type(source).__name__}")
    if text.startswith("\ufeff"):
        text = text[1:]
    surrogate = lone_surrogate_at(text)
    if surrogate is not None:
        raise UndecodableSource(f"source holds a lone surrogate at offset {surrogate}")
    return text


def iter_definitions(source: str | bytes, language: str, *, validate: bool = True) -> Iterator[Definition]:
    """One :class:`Definition` per top-level function/class and per method of a top-level class."""
    spec = language_spec(language)
    text = decode_source(source, language)
    data = text.encode("utf-8")
    root = _parse(data, spec)
    # Python: when the whole file compiles, every definition in it does too (one compile instead of
    # one per definition, which made the stdlib 6x slower). Likewise the methods of a class that compiles.
    file_valid = validate and language == "python" and not root.has_error and python_compile_error(text) is None
    for node in _top_level_nodes(root, spec):
        if node.type == "ERROR" and not validate:
            # Code the grammar could not place (often a broken definition): passed on as it is, so that
            # extraction judges it and a dead letter says where it was, instead of it vanishing.
            code = normalize_code(data[node.start_byte:node.end_byte].decode("utf-8", "replace"))
            if code:
                yield Definition(UNPARSED, "", node.start_point[0] + 1, code)
            continue
        definition = _unwrap(node, spec)
        if definition is None:
            continue
        kind = _top_level_kind(definition, spec)
        if kind is None:
            continue
        name = _name(definition, spec)
        emitted = list(_emit(kind, name, node, definition, data, spec, validate and not file_valid))
        yield from emitted
        if kind == CLASS:
            methods_valid = file_valid or (language == "python" and bool(emitted))
            for member in _class_members(definition, spec):
                method = _unwrap(member, spec)
                if method is not None and method.type in spec.methods and _has_body(method):
                    yield from _emit(
                        METHOD, f"{name}.{_name(method, spec)}", member, method, data, spec,
                        validate and not methods_valid,
                    )


def _parse(data: bytes, spec: LanguageSpec):
    # A file may need the second grammar (TypeScript with JSX): keep the first clean parse.
    first = None
    for grammar in spec.grammars:
        root = thread_parser(grammar).parse(data).root_node
        if not root.has_error:
            return root
        first = first or root
    return first


def _top_level_nodes(node, spec: LanguageSpec):
    for child in node.named_children:
        if child.type in spec.scopes:
            yield from _top_level_nodes(child, spec)
        else:
            yield child


def _unwrap(node, spec: LanguageSpec):
    """The definition inside a wrapper (decorators, export, template), or the node itself."""
    while node.type in spec.wrappers:
        inner = node.child_by_field_name("definition") or node.child_by_field_name("declaration")
        if inner is None:
            inner = next(
                (c for c in reversed(node.named_children)
                 if c.type in spec.functions or c.type in spec.classes or c.type in spec.methods
                 or c.type in spec.wrappers),
                None,
            )
        if inner is None:
            return None
        node = inner
    return node


_BODY_TYPES = frozenset(
    {"block", "compound_statement", "statement_block", "function_body", "body_statement", "constructor_body",
     "declaration_list", "field_declaration_list", "class_body", "do_group"}
)


def _has_body(node) -> bool:
    if node.child_by_field_name("body") is not None:
        return True
    return any(child.type in _BODY_TYPES for child in node.children)


def _top_level_kind(node, spec: LanguageSpec) -> str | None:
    if node.type in spec.functions:
        return FUNCTION if _has_body(node) else None
    if node.type in spec.classes:
        if node.type.endswith("_specifier") and node.child_by_field_name("body") is None:
            return None  # `struct foo;` or a use of the type, not its definition
        return CLASS
    if node.type in spec.methods:  # Go methods live at top level
        return METHOD if _has_body(node) else None
    if node.type in ("lexical_declaration", "variable_declaration") and _assigned_function(node) is not None:
        return FUNCTION  # JS/TS `const f = (x) => ...`
    return None


def _assigned_function(node):
    declarators = [c for c in node.named_children if c.type == "variable_declarator"]
    if len(declarators) != 1:
        return None
    value = declarators[0].child_by_field_name("value")
    if value is not None and value.type in ("arrow_function", "function_expression", "function"):
        return declarators[0]
    return None


_NAME_TYPES = ("identifier", "simple_identifier", "type_identifier", "name", "constant", "word")


def _name(node, spec: LanguageSpec) -> str:
    if node.type in ("lexical_declaration", "variable_declaration"):
        node = _assigned_function(node) or node
    if node.type == "impl_item":  # Rust: `impl Trait for Type`
        trait, type_ = node.child_by_field_name("trait"), node.child_by_field_name("type")
        if type_ is not None:
            return f"{_text(trait)} for {_text(type_)}" if trait is not None else _text(type_)
    if node.type == "type_declaration":  # Go: `type (A struct{}; B int)` -> first spec
        for child in node.named_children:
            if child.child_by_field_name("name") is not None:
                return _text(child.child_by_field_name("name"))
    if node.type == "singleton_method":  # Ruby: `def Util.helper` is named `helper`, like `def self.helper`
        name = node.child_by_field_name("name")
        if name is not None:
            return _text(name)
    name = node.child_by_field_name("name")
    receiver = node.child_by_field_name("receiver") if node.type == "method_declaration" else None
    if name is not None and receiver is not None:  # Go: `func (p *Point) Sum()` is `Point.Sum`
        receiver_type = _first_descendant(receiver, "type_identifier")
        if receiver_type is not None:
            return f"{_text(receiver_type)}.{_text(name)}"
    if name is not None:
        return _text(name)
    declarator = node.child_by_field_name("declarator")  # C/C++: follow pointer/function declarators
    while declarator is not None:
        inner = declarator.child_by_field_name("declarator")
        if inner is None:
            return _text(declarator)
        declarator = inner
    for child in node.named_children:
        if child.type in _NAME_TYPES:
            return _text(child)
    return "<anonymous>"


def _first_descendant(node, node_type: str):
    stack = [node]
    while stack:
        current = stack.pop()
        if current.type == node_type:
            return current
        stack.extend(reversed(current.named_children))
    return None


def _text(node) -> str:
    return node.text.decode("utf-8", "replace")


def _class_members(node, spec: LanguageSpec):
    body = node.child_by_field_name("body")
    if body is None:
        body = next((c for c in node.named_children if c.type in spec.member_containers), None)
    if body is None:
        return
    for child in body.named_children:
        if child.type in spec.member_containers:
            yield from child.named_children
        else:
            yield child


def _emit(kind: str, name: str, outer, definition, data: bytes, spec: LanguageSpec, validate: bool):
    if validate and outer.has_error and not (
        spec.tolerated_missing and only_tolerated_errors(outer, spec.tolerated_missing)
    ):
        return
    start, end, start_row = outer.start_byte, outer.end_byte, outer.start_point[0]
    following = outer.next_sibling
    if following is not None and following.type == ";":  # C/C++ `struct s {...};`
        end = following.end_byte
    previous = outer.prev_named_sibling
    while previous is not None and previous.type in spec.leading_attributes:
        start, start_row = previous.start_byte, previous.start_point[0]
        previous = previous.prev_named_sibling
    line_start = data.rfind(b"\n", 0, start) + 1
    if not data[line_start:start].strip():
        start = line_start  # keep the first line's indentation so the snippet dedents as a whole
    code = normalize_code(data[start:end].decode("utf-8"))
    if not code:
        return
    if validate:
        shell = spec.member_shell if kind == METHOD and definition.type not in spec.functions else None
        checked = shell[0] + code + shell[1] if shell else code
        if syntax_error(checked, spec.name) is not None:
            return
    yield Definition(kind, name, start_row + 1, code)
