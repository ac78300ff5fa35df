"""The language table: one entry per canonical language the pipeline knows.

Each :class:`LanguageSpec` says

* which tree-sitter-language-pack grammar(s) parse it (tried in order: TypeScript code may be
  plain TypeScript or TSX),
* which Markdown fence tags mean it (``py``, ``c++``, ``golang``...; see :func:`normalize_fence_tag`),
* which file extensions hold it (the source-tree reader, :func:`language_for_path`),
* which syntax-tree node types are definitions (top-level functions, type-level definitions such as
  classes/structs/impls, and the methods inside them), used by ``transforms.io.source_tree``,
* and the cheap textual signals that make untagged code a candidate for the language (used by
  ``transforms.extract.policies`` to decide which grammars to try; see its module docstring).

Canonical names: python, java, c, cpp, csharp, javascript, typescript, go, rust, swift, php, ruby,
kotlin, bash, plus sql, html, css, scala, lua, r. ``scala``, ``lua`` and ``r`` are only accepted from
a fence tag: their grammars accept plain English, so they are never guessed for untagged text.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from types import MappingProxyType
from typing import FrozenSet, Mapping, Pattern, Tuple, Union

# Definition kinds yielded by the source-tree splitter.
FUNCTION = "function"
CLASS = "class"  # any type-level definition: class, struct, interface, enum, trait, impl, module, object
METHOD = "method"


@dataclass(frozen=True)
class LanguageSpec:
    name: str
    grammars: tuple[str, ...]
    aliases: tuple[str, ...] = ()
    extensions: tuple[str, ...] = ()
    functions: frozenset[str] = frozenset()  # top-level function definitions
    classes: frozenset[str] = frozenset()  # type-level definitions; methods are looked for in their body
    methods: frozenset[str] = frozenset()  # method definitions inside a class body
    # Nodes that wrap exactly one definition and belong to it (decorators, `export`, `template<...>`).
    wrappers: frozenset[str] = frozenset()
    # Namespace-like nodes whose members count as top level (namespaces, `#ifdef` blocks, Rust `mod`).
    scopes: frozenset[str] = frozenset()
    # Node types that hold the members of a class when the grammar has no `body` field (Kotlin),
    # or that sit between a class body and its methods (Java `enum_body_declarations`).
    member_containers: frozenset[str] = frozenset()
    # Sibling nodes right before a definition that belong to it (Rust `#[derive(...)]`).
    leading_attributes: frozenset[str] = frozenset()
    # May the language be guessed for untagged code? False when its grammar accepts English prose.
    detectable: bool = True
    # (regex or word set, weight): evidence that untagged text is this language; each counts once.
    signals: tuple[tuple[re.Pattern[str] | frozenset[str], float], ...] = ()
    # Untagged text is tried as this language only if this regex matches (grammars that accept
    # almost anything, e.g. HTML treats any text as text nodes).
    gate: re.Pattern[str] | None = None
    # ... and never if this one matches (code of another language that happens to parse, e.g. R's
    # `x <- c(1, 2)` is a valid Python comparison).
    veto: re.Pattern[str] | None = None
    # Prepended before parsing when `prefix_unless` does not match (PHP code without `<?php` is
    # parsed by the PHP grammar as inert HTML text).
    parse_prefix: str = ""
    prefix_unless: re.Pattern[str] | None = None
    # MISSING nodes the grammar inserts for valid code (Kotlin's optional semicolon before `}`).
    tolerated_missing: frozenset[str] = frozenset()
    # A method is not valid code on its own in these languages: the source-tree splitter and hinted
    # extraction check a method snippet's syntax inside this (prefix, suffix) class shell.
    member_shell: tuple[str, str] | None = None


Signal = Tuple[Union[Pattern[str], FrozenSet[str]], float]


def _signals(*pairs: tuple[str | frozenset[str], float], flags: int = 0) -> tuple[Signal, ...]:
    """Regex strings are compiled (MULTILINE); word sets match when any word occurs as an identifier.

    Speed matters (this runs on every untagged record): keyword presence is a word-set test, and
    regexes start with a literal or ``^`` where possible so the regex engine can skip ahead.
    """
    return tuple((p if isinstance(p, frozenset) else re.compile(p, re.MULTILINE | flags), w) for p, w in pairs)


def _words(words: str) -> frozenset[str]:
    return frozenset(words.split())


_PREPROCESSOR_SCOPES = frozenset(
    {"preproc_if", "preproc_ifdef", "preproc_else", "preproc_elif", "preproc_elifdef", "linkage_specification",
     "declaration_list"}
)
_C_DECLARATION = (
    r"^[ \t]*+(?:(?:unsigned|static|const)[ \t]++)*+(?:int|char|float|double|void|long|short|bool|auto)"
    r"[ \t]++[&*]*+\w++[ \t]*+(?:\[[^\n\]]*+\])?[ \t]*+[=;({]"
)
_STATEMENT_END = r";[ \t]*+$"
_CLASS_SHELL = ("class _ {\n", "\n}")

_SPECS: tuple[LanguageSpec, ...] = (
    LanguageSpec(
        name="python",
        grammars=("python",),
        aliases=("python", "py", "python3", "py3", "pyw"),
        extensions=(".py", ".pyw"),
        functions=frozenset({"function_definition"}),
        classes=frozenset({"class_definition"}),
        methods=frozenset({"function_definition"}),
        wrappers=frozenset({"decorated_definition"}),
        # R assignments; or every line ending in `;` (JavaScript-like one-liners such as `alert('x');`).
        veto=re.compile(r"(?m:^[ \t]*+[A-Za-z_][\w.]*+[ \t]*+<-)|\A(?:[^\n]*;[ \t]*+\n)*+[^\n]*;[ \t]*+\Z"),
        signals=_signals(
            (r"^[ \t]*+(?:async[ \t]++)?def[ \t]++\w++[ \t]*+\([^\n]*\)[ \t]*+(?:->[^\n:]*+)?:", 4),
            (r"^[ \t]*+class[ \t]++\w++[ \t]*+(?:\([^\n]*\))?[ \t]*+:", 4),
            (r"^[ \t]*+from[ \t]++[\w.]++[ \t]++import[ \t]", 4),
            (r"^[ \t]*+import[ \t]++[\w.]++(?:[ \t]++as[ \t]++\w++)?(?:[ \t]*+,[ \t]*+[\w.]++)*+[ \t]*+$", 2),
            (r"^[ \t]*+(?:if|elif|while|for|with|try|except|else|finally)\b[^{};\n]*:[ \t]*+(?:#[^\n]*+)?$", 2),
            (r"self\.\w", 1),
            (_words("None True False"), 1),
            (_words("range len enumerate isinstance append elif lambda"), 1.5),
            (r"__[A-Za-z0-9]++(?:_[A-Za-z0-9]++)*+__", 2),
            (r"^[ \t]*+print\(", 1),
            (r"^[ \t]*+#(?:[ \t]|$)", 0.5),
            (r"^[ \t]*+[A-Za-z_]\w*+(?:\[[^\n\]]*+\])?[ \t]*+[-+*/]?=(?!=)[^\n]*(?<![;{,])$", 0.5),
        ),
    ),
    LanguageSpec(
        name="javascript",
        grammars=("javascript",),
        member_shell=_CLASS_SHELL,
        aliases=("javascript", "js", "node", "nodejs", "jsx", "mjs", "cjs", "es6", "ecmascript"),
        extensions=(".js", ".mjs", ".cjs", ".jsx"),
        functions=frozenset({"function_declaration", "generator_function_declaration"}),
        classes=frozenset({"class_declaration"}),
        methods=frozenset({"method_definition"}),
        wrappers=frozenset({"export_statement"}),
        signals=_signals(
            (r"console\.(?:log|error|warn|info)\(", 4),
            (r"^[ \t]*+(?:alert|prompt|confirm)\(", 3),
            (r"function\*?[ \t]*+\w*+[ \t]*+\([^()$\n]*+\)[ \t]*+\{", 2),
            (r"^[ \t]*+(?:const|let)[ \t]++[\w{}\[\], ]++=", 2),
            (r"^[ \t]*+var[ \t]++\w++[ \t]*+=", 1),
            (r"^[ \t]*+constructor[ \t]*+\(", 4),
            (r"this\.\w", 1),
            (r"=>", 1),
            (r"===|!==", 3),
            (r"(?:document|window)\.\w|\.addEventListener\(|require\(|module\.exports|export default", 4),
            (_words("async await"), 1),
            (r"\$\(['\"]", 2),
            (_STATEMENT_END, 0.5),
        ),
    ),
    LanguageSpec(
        name="java",
        grammars=("java",),
        member_shell=_CLASS_SHELL,
        aliases=("java",),
        extensions=(".java",),
        classes=frozenset(
            {"class_declaration", "interface_declaration", "enum_declaration", "record_declaration",
             "annotation_type_declaration"}
        ),
        methods=frozenset({"method_declaration", "constructor_declaration"}),
        member_containers=frozenset({"enum_body_declarations"}),
        signals=_signals(
            (r"System\.(?:out|err)\.print", 5),
            (r"public[ \t]++static[ \t]++void[ \t]++main[ \t]*+\([ \t]*+String", 5),
            (r"^[ \t]*+import[ \t]++java\.", 5),
            (r"(?:public|private|protected)[ \t]++(?:static[ \t]++)?(?:final[ \t]++)?"
             r"[\w<>\[\],.]++[ \t]++\w++[ \t]*+\(", 2),
            (r"class[ \t]++\w++(?:[ \t]++(?:extends|implements)[ \t]++[\w.<>, ]++)?[ \t]*+\{", 1),
            (r"(?:int|String|double|char|long|boolean|float)(?:\[\])++[ \t]", 2),
            (_words("boolean"), 2),
            (r"@Override", 3),
            (_words("ArrayList HashMap HashSet LinkedList StringBuilder Scanner"), 3),
            (r"(?:Integer|String|Math|Arrays|Collections|Character|Double)\.[a-z]", 3),
            (r"for[ \t]*+\([ \t]*+[\w<>\[\]]++[ \t]++\w++[ \t]*+:[^:]", 2),
            (r"\.(?:length\b|equals\()", 1),
            (r"new[ \t]++[\w.]++(?:<[\w<>, .?\[\]]*+)?[ \t]*+[(\[]", 1),
            (_STATEMENT_END, 0.5),
        ),
    ),
    LanguageSpec(
        name="c",
        grammars=("c",),
        aliases=("c", "h"),
        extensions=(".c", ".h"),
        functions=frozenset({"function_definition"}),
        classes=frozenset({"struct_specifier", "union_specifier", "enum_specifier"}),
        scopes=_PREPROCESSOR_SCOPES,
        signals=_signals(
            (r"#[ \t]*+include[ \t]*+<(?:stdio|stdlib|string|math|stdbool|stdint|ctype|time|limits)\.h>", 5),
            (_words("printf scanf fprintf sprintf"), 2),
            (_words("malloc calloc realloc"), 2),
            (r"^[ \t]*+(?:int|void)[ \t]++main[ \t]*+\(", 2),
            (r"^[ \t]*+#[ \t]*+(?:include|define|ifndef|ifdef)\b", 2),
            (r"struct[ \t]++\w++[ \t]*+\{", 1),
            (_C_DECLARATION, 2),
            (_STATEMENT_END, 0.5),
        ),
    ),
    LanguageSpec(
        name="cpp",
        grammars=("cpp",),
        aliases=("cpp", "c++", "cxx", "cc", "hpp", "hxx", "hh", "h++", "cplusplus"),
        extensions=(".cpp", ".cc", ".cxx", ".c++", ".hpp", ".hh", ".hxx", ".h++"),
        functions=frozenset({"function_definition"}),
        classes=frozenset({"class_specifier", "struct_specifier", "union_specifier", "enum_specifier"}),
        methods=frozenset({"function_definition"}),
        wrappers=frozenset({"template_declaration"}),
        scopes=_PREPROCESSOR_SCOPES | {"namespace_definition"},
        signals=_signals(
            (r"#[ \t]*+include[ \t]*+<(?:iostream|vector|string|map|unordered_map|set|algorithm|memory|"
             r"bits/stdc\+\+\.h|fstream|sstream|queue|stack|cmath|cstdio|cstdlib|cstring)>", 5),
            (r"std::", 5),
            (_words("cout cin endl"), 5),
            (r"using[ \t]++namespace[ \t]++std\b", 5),
            (r"template[ \t]*+<", 3),
            (r"class[ \t]++\w++[ \t]*+(?::[ \t]*+(?:public|private|protected)[ \t]++\w++)?[ \t]*+\{", 1),
            (r"^[ \t]*+(?:public|private|protected)[ \t]*+:", 3),
            (r"(?:int|void)[ \t]++main[ \t]*+\(", 2),
            (r"^[ \t]*+#[ \t]*+include\b", 1),
            (_words("printf"), 1),
            (_C_DECLARATION, 1.5),
            (_STATEMENT_END, 0.5),
        ),
    ),
    LanguageSpec(
        name="csharp",
        grammars=("csharp",),
        member_shell=_CLASS_SHELL,
        aliases=("csharp", "cs", "c#", "c-sharp"),
        extensions=(".cs",),
        functions=frozenset({"local_function_statement"}),
        classes=frozenset(
            {"class_declaration", "interface_declaration", "struct_declaration", "enum_declaration",
             "record_declaration"}
        ),
        methods=frozenset({"method_declaration", "constructor_declaration"}),
        scopes=frozenset({"namespace_declaration", "file_scoped_namespace_declaration", "declaration_list",
                          "global_statement"}),
        signals=_signals(
            (r"^[ \t]*+using[ \t]++System\b", 5),
            (r"Console\.(?:Write|Read)", 5),
            (r"\{[ \t]*+get;[ \t]*+(?:private[ \t]++)?set;[ \t]*+\}", 5),
            (r"^[ \t]*+namespace[ \t]++[\w.]++", 2),
            (r"(?:public|private|protected|internal)[ \t]++(?:(?:static|override|virtual|async)[ \t]++)*+"
             r"[\w<>\[\],.]++[ \t]++\w++[ \t]*+\(", 2),
            (_words("string bool"), 1),
            (r"foreach[ \t]*+\([ \t]*+[\w<>\[\],]++[ \t]++\w++[ \t]++in\b", 4),
            (r"from[ \t]++\w++[ \t]++in[ \t]++[\w.]", 3),
            (r"var[ \t]++\w++[ \t]*+=", 1),
            (r"\.(?:Length|Count|ToString|Add|Where|Select)\b", 1),
            (r"new[ \t]++[\w.]++(?:<[\w<>, .?\[\]]*+)?[ \t]*+[(\[{]", 1),
            (_STATEMENT_END, 0.5),
        ),
    ),
    LanguageSpec(
        name="typescript",
        grammars=("typescript", "tsx"),
        member_shell=_CLASS_SHELL,
        aliases=("typescript", "ts", "tsx", "mts", "cts"),
        extensions=(".ts", ".mts", ".cts", ".tsx"),
        functions=frozenset({"function_declaration", "generator_function_declaration"}),
        classes=frozenset({"class_declaration", "abstract_class_declaration", "interface_declaration",
                           "enum_declaration"}),
        methods=frozenset({"method_definition"}),
        wrappers=frozenset({"export_statement"}),
        signals=_signals(
            (r":[ \t]*+(?:number|string|boolean|any|void|unknown|never)(?:\[\])?\b", 4),
            (r"^[ \t]*+(?:export[ \t]++)?interface[ \t]++\w++[ \t]*+(?:<[^\n{]*>)?[ \t]*+"
             r"(?:extends[ \t]++[\w, <>.]++)?\{", 3),
            (r"^[ \t]*+(?:export[ \t]++)?type[ \t]++\w++[ \t]*+(?:<[^\n=]*>)?[ \t]*+=", 3),
            (r"(?:public|private|protected|readonly)[ \t]++\w++[ \t]*+[:?]", 3),
            (r"as[ \t]++(?:string|number|any|unknown|const)\b", 3),
            (r"console\.log\(", 2),
            (r"^[ \t]*+(?:const|let)[ \t]++\w++[ \t]*+[:=]", 1),
            (r"=>", 0.5),
        ),
    ),
    LanguageSpec(
        name="go",
        grammars=("go",),
        aliases=("go", "golang"),
        extensions=(".go",),
        functions=frozenset({"function_declaration"}),
        classes=frozenset({"type_declaration"}),
        methods=frozenset({"method_declaration"}),
        signals=_signals(
            (r"^package[ \t]++\w++[ \t]*+$", 5),
            (r"fmt\.\w++\(", 5),
            (r"^import[ \t]*+\($", 5),
            (r"func[ \t]++(?:\([^():\n]*+\)[ \t]*+)?\w++[ \t]*+\([^():\n]*+\)", 3),
            (r":=", 3),
            (r"err[ \t]*+!=[ \t]*+nil\b", 5),
            (r"\[\](?:int|string|byte|float64|\w)", 2),
            (_words("chan defer"), 3),
            (_words("nil"), 1),
        ),
    ),
    LanguageSpec(
        name="rust",
        grammars=("rust",),
        aliases=("rust", "rs"),
        extensions=(".rs",),
        functions=frozenset({"function_item"}),
        classes=frozenset({"struct_item", "enum_item", "trait_item", "impl_item", "union_item"}),
        methods=frozenset({"function_item"}),
        scopes=frozenset({"mod_item", "declaration_list"}),
        leading_attributes=frozenset({"attribute_item"}),
        signals=_signals(
            (r"fn[ \t]++\w++[ \t]*+(?:<[^\n(]*+)?\(", 4),
            (r"let[ \t]++mut\b", 5),
            (r"(?:println|print|format|vec|panic|assert_eq|assert|write|writeln|eprintln)!", 5),
            (_words("impl"), 4),
            (r"&(?:str|self|mut)\b", 4),
            (r"pub[ \t]++(?:fn|struct|enum|trait|mod)\b", 5),
            (r"^[ \t]*+use[ \t]++(?:std|crate|super)::", 5),
            (r"(?:Option|Result|Vec|HashMap|Box)<", 2),
            (_words("i32 u32 i64 u64 usize isize f64 f32 u8"), 2),
            (r"match[ \t]++[\w.&]++[ \t]*+\{", 3),
            (r"->[ \t]*+[\w<>&]++[ \t]*+\{", 1),
        ),
    ),
    LanguageSpec(
        name="swift",
        grammars=("swift",),
        member_shell=_CLASS_SHELL,
        aliases=("swift",),
        extensions=(".swift",),
        functions=frozenset({"function_declaration"}),
        classes=frozenset({"class_declaration", "protocol_declaration"}),
        methods=frozenset({"function_declaration", "init_declaration"}),
        signals=_signals(
            (r"^[ \t]*+import[ \t]++(?:UIKit|Foundation|SwiftUI|Cocoa)\b", 5),
            (r"func[ \t]++\w++[ \t]*+(?:<[^\n(]*+)?\([^()\n]*+\)[ \t]*+(?:throws[ \t]*+)?"
             r"(?:->[ \t]*+[\w\[\]?<>:, ]++)?[ \t]*+\{", 2),
            (r"func[ \t]++\w++\((?:_[ \t]++)?\w++[ \t]*+:[ \t]*+(?:inout[ \t]++)?\[?[A-Z]", 2),
            (r"(?:var|let)[ \t]++\w++[ \t]*+:[ \t]*+\[?[A-Z]\w*+\]?[?!]?[ \t]*+(?:=|$)", 2),
            (r"if[ \t]++let\b", 4),
            (_words("guard"), 3),
            (r"\\\(\w", 3),
            (r"->[ \t]*+[A-Z]\w*+\??[ \t]*+\{", 2),
            (_words("Int String Double Bool Character"), 1),
            (r"^[ \t]*+print\(", 1),
            (r"^[ \t]*+let[ \t]++\w++[ \t]*+=", 1),
            (r"for[ \t]++\w++[ \t]++in[ \t]++[^:{\n]*+\{", 1),
            (r"\.\.[.<]", 1),
        ),
    ),
    LanguageSpec(
        name="php",
        grammars=("php",),
        member_shell=_CLASS_SHELL,
        aliases=("php", "php5", "php7", "php8"),
        extensions=(".php",),
        functions=frozenset({"function_definition"}),
        classes=frozenset({"class_declaration", "interface_declaration", "trait_declaration", "enum_declaration"}),
        methods=frozenset({"method_declaration"}),
        scopes=frozenset({"namespace_definition", "compound_statement"}),
        gate=re.compile(r"<\?php|\$[A-Za-z_]|^[ \t]*+echo[ \t][^\n]*;[ \t]*+$", re.MULTILINE),
        parse_prefix="<?php\n",
        prefix_unless=re.compile(r"<\?(?:php|=)"),
        signals=_signals(
            (r"<\?php", 10),
            (r"\$\w++[ \t]*+(?:\[[^\]\n]*+\])?[ \t]*+=[^=]", 3),
            (r"\$\w++->\w", 5),
            (r"function[ \t]++\w++[ \t]*+\([ \t]*+(?:\??\w++[ \t]++)?&?\$", 5),
            (r"^[ \t]*+echo[ \t]++[^\n]*;[ \t]*+$", 2),
            (r"array\(", 2),
            (_words("foreach isset strlen explode implode"), 1),
        ),
    ),
    LanguageSpec(
        name="ruby",
        grammars=("ruby",),
        aliases=("ruby", "rb", "jruby"),
        extensions=(".rb",),
        functions=frozenset({"method"}),
        classes=frozenset({"class", "module"}),
        methods=frozenset({"method", "singleton_method"}),
        signals=_signals(
            (r"^[ \t]*+def[ \t]++(?:self\.)?\w++[?!=]?[ \t]*+(?:\([^)\n]*+\))?[ \t]*+$", 3),
            (r"^[ \t]*+end[ \t]*+$", 1),
            (_words("puts"), 4),
            (r"\.each(?:_with_index)?[ \t]*+(?:do|\{)[ \t]*+\|", 5),
            (r"(?:do|\{)[ \t]*+\|\w++(?:,[ \t]*+\w++)*+\|", 3),
            (r"^[ \t]*+require(?:_relative)?[ \t]++['\"]", 3),
            (_words("attr_reader attr_accessor attr_writer"), 5),
            (_words("elsif"), 5),
            (_words("unless"), 2),
            (r"#\{", 3),
            (_words("nil"), 1),
            (r"@\w++[ \t]*+=", 1),
        ),
    ),
    LanguageSpec(
        name="kotlin",
        grammars=("kotlin",),
        member_shell=_CLASS_SHELL,
        aliases=("kotlin", "kt", "kts"),
        extensions=(".kt", ".kts"),
        functions=frozenset({"function_declaration"}),
        classes=frozenset({"class_declaration", "object_declaration"}),
        methods=frozenset({"function_declaration"}),
        member_containers=frozenset({"class_body", "enum_class_body"}),
        tolerated_missing=frozenset({"_automatic_semicolon"}),
        signals=_signals(
            (r"fun(?<!\wfun)[ \t]++(?:<[^\n>]*+>[ \t]++)?[\w.]++[ \t]*+\(", 5),
            (r"^[ \t]*+val[ \t]++\w++[ \t]*+(?::[ \t]*+[\w<>?, ]++)?=", 3),
            (r"^[ \t]*+var[ \t]++\w++[ \t]*+:[ \t]*+[\w<>?, ]++=", 1),
            (_words("listOf mutableListOf arrayOf mapOf mutableMapOf setOf intArrayOf"), 4),
            (r"when[ \t]*+(?:\([^\n]*\))?[ \t]*+\{", 3),
            (r"data[ \t]++class\b|^[ \t]*+object[ \t]++\w", 4),
            (r"\?\.let\b|!!\.", 4),
            (r"^[ \t]*+println\(", 2),
            (r":[ \t]*+(?:Int|String|Boolean|Double|Long|Unit)\b", 1),
        ),
    ),
    LanguageSpec(
        name="bash",
        grammars=("bash",),
        aliases=("bash", "sh", "shell", "zsh", "shellscript", "shell-script", "ksh"),
        extensions=(".sh", ".bash"),
        functions=frozenset({"function_definition"}),
        signals=_signals(
            (r"\A#![ \t]*+/(?:usr/)?bin/(?:env[ \t]++)?(?:ba|z|k)?sh\b", 10),
            (r"^[ \t]*+(?:if|while|until|elif)[ \t]++\[\[?[ \t]", 5),
            (r"^[ \t]*+(?:fi|done|esac)[ \t]*+;?[ \t]*+$", 5),
            (r"^[ \t]*+(?:then|do)[ \t]*+$|;[ \t]*+(?:then|do)[ \t]*+$", 3),
            (r"\$\{\w|\$\(\w|\$[1-9#@?]|\"\$\w", 2),
            (r"^[ \t]*+(?:echo|printf|ls|cd|mkdir|rm|cp|mv|cat|grep|sed|awk|export|source|sudo|chmod|chown|"
             r"curl|wget|apt-get|apt|yum|brew|pip3?|npm|yarn|git|docker|tar|find|touch|kill|ps|read|exit|shift|"
             r"unset|local)[ \t]", 2),
            (r"\|[ \t]*+(?:grep|awk|sed|sort|uniq|wc|head|tail|xargs|cut|tr)\b", 4),
            (r"^[ \t]*+[A-Za-z_]\w*+=(?:\S|$)", 1),
            (r"^[ \t]*+\w++[ \t]*+\(\)[ \t]*+\{", 3),
        ),
    ),
    LanguageSpec(
        name="sql",
        grammars=("sql",),
        aliases=("sql", "mysql", "postgresql", "postgres", "pgsql", "psql", "sqlite", "sqlite3", "mariadb"),
        gate=re.compile(r"\A\s*+(?:--[^\n]*+\n\s*+)*+(?:SELECT|INSERT|UPDATE|DELETE|CREATE|ALTER|DROP|WITH|TRUNCATE)\b",
                        re.IGNORECASE),
        signals=_signals(
            (r"^[ \t]*+(?:SELECT|INSERT[ \t]++INTO|UPDATE|DELETE[ \t]++FROM|"
             r"CREATE[ \t]++(?:TABLE|INDEX|VIEW|DATABASE|PROCEDURE|FUNCTION|TRIGGER)|ALTER[ \t]++TABLE|"
             r"DROP[ \t]++TABLE)\b", 5),
            (r"\b(?:FROM|WHERE|JOIN|GROUP[ \t]++BY|ORDER[ \t]++BY|HAVING|VALUES|LIMIT)\b", 1),
            flags=re.IGNORECASE,
        ),
    ),
    LanguageSpec(
        name="html",
        grammars=("html",),
        aliases=("html", "htm", "xhtml"),
        gate=re.compile(r"\A\s*+<[!A-Za-z]"),
        signals=_signals(
            (r"<!DOCTYPE[ \t]++html|<html\b", 10),
            (r"<(?:div|p|span|a|ul|ol|li|table|tr|td|th|body|head|form|input|button|h[1-6]|img|script|style|"
             r"label|select|option|nav|section|header|footer|title|meta|link)\b[^<>\n]*+>", 3),
            (r"</\w++>", 2),
            flags=re.IGNORECASE,
        ),
    ),
    LanguageSpec(
        name="css",
        grammars=("css",),
        aliases=("css",),
        gate=re.compile(r"\A\s*+(?:/\*.*?\*/\s*+)*+[@.#:\w\[*][^{};()]*+\{[^{}]*+\}", re.DOTALL),
        signals=_signals(
            (r"^[ \t]*+(?:color|background(?:-color)?|font(?:-size|-family|-weight)?|margin(?:-\w+)?|"
             r"padding(?:-\w+)?|border(?:-\w+)?|width|height|display|text-align|position|flex(?:-\w+)?|"
             r"top|left|right|bottom)[ \t]*+:[^;\n]++;", 4),
            (r"^[ \t]*+[.#:]?[A-Za-z][\w\-.#:>+~, \t\[\]=\"'*]*+\{[ \t]*+$", 2),
        ),
    ),
    LanguageSpec(
        name="scala",
        grammars=("scala",),
        member_shell=_CLASS_SHELL,
        aliases=("scala", "sc"),
        extensions=(".scala", ".sc"),
        functions=frozenset({"function_definition"}),
        classes=frozenset({"class_definition", "object_definition", "trait_definition"}),
        methods=frozenset({"function_definition"}),
        detectable=False,
    ),
    LanguageSpec(
        name="lua",
        grammars=("lua",),
        aliases=("lua",),
        extensions=(".lua",),
        functions=frozenset({"function_declaration"}),
        detectable=False,
    ),
    LanguageSpec(
        name="r",
        grammars=("r",),
        aliases=("r", "rscript", "splus"),
        detectable=False,
    ),
)

LANGUAGES: Mapping[str, LanguageSpec] = MappingProxyType({spec.name: spec for spec in _SPECS})
# Order in which untagged code is tried when signals tie: the languages most common in code
# instruction corpora first; bash last because its grammar accepts the most non-code.
DETECTION_PRIORITY: tuple[str, ...] = (
    "python", "javascript", "java", "c", "cpp", "csharp", "typescript", "go", "rust", "php", "kotlin",
    "swift", "ruby", "sql", "html", "css", "bash",
)
assert set(DETECTION_PRIORITY) == {spec.name for spec in _SPECS if spec.detectable}

_ALIASES: dict[str, str] = {}
_EXTENSIONS: dict[str, str] = {}
for _spec in _SPECS:
    for _alias in _spec.aliases:
        assert _alias not in _ALIASES, f"fence tag {_alias!r} claimed twice"
        _ALIASES[_alias] = _spec.name
    for _ext in _spec.extensions:
        assert _ext not in _EXTENSIONS, f"extension {_ext!r} claimed twice"
        _EXTENSIONS[_ext] = _spec.name

# Characters that end the language word of an info string: `python title=x.py`, `py:main.py`,
# `{r setup, include=FALSE}`, `python{.class}`.
_TAG_END = re.compile(r"[\s:,;{}=\"']")


def fence_tag_token(info: str) -> str:
    """The language word of a fence info string, exactly as written (case kept).

    ``"python title=x.py"`` -> ``"python"``; ``"{.python}"`` -> ``"python"``; ``"py:main.py"`` -> ``"py"``;
    ``"C++"`` -> ``"C++"``; ``""`` -> ``""``.
    """
    text = info.strip().lstrip("{").lstrip()
    text = text.lstrip(".")
    match = _TAG_END.search(text)
    return text[: match.start()] if match else text


def normalize_fence_tag(tag: str | None) -> str | None:
    """The canonical language named by a fence tag or info string, or None if it names none we know.

    Case-insensitive; accepts the attribute forms Markdown dialects use (``python {.class}``,
    ``python title=x.py``, ``py:main.py``, ``{.python}``, ``{r setup}``, ``language-python``).
    """
    if not tag:
        return None
    token = fence_tag_token(tag).lower()
    for prefix in ("language-", "lang-"):
        if token.startswith(prefix):
            token = token[len(prefix):]
    return _ALIASES.get(token)


def language_for_path(path: str | os.PathLike[str]) -> str | None:
    """The canonical language of a source file by its extension (case-insensitive), or None."""
    _, ext = os.path.splitext(os.fspath(path))
    return _EXTENSIONS.get(ext.lower())


def language_spec(language: str) -> LanguageSpec:
    """The spec of a canonical language name; KeyError names the unknown language."""
    try:
        return LANGUAGES[language]
    except KeyError:
        raise KeyError(f"unknown language {language!r}; known: {sorted(LANGUAGES)}") from None
