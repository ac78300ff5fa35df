"""Prompt presets: the one source of truth for every prompt the method sends to a model.

A preset is plain data (``transforms/presets/<name>.yaml`` for the built-in ones, or any YAML/JSON file given by
path, e.g. ``--preset my_preset.yaml``). The functions below render it:

- :func:`summarize_prompt` - code to instruction, with the response slot pre-filled by a prefix;
- :func:`judge_prompt` - the self-evaluation (Yes/No) prompt;
- :func:`format_training_prompt` - the prompt the training job puts before a response.

Two styles exist. ``template`` fills ``layout`` (the paper's "@@ Instruction / @@ Response" text).
``chat`` puts the same system line and instruction into the model's own chat template
(``tokenizer.apply_chat_template``); the summarize prefix then pre-fills the assistant turn.

A preset file may say ``extends: <name or path>`` to start from another preset and override some keys (a relative
path is read from the folder of the file that extends it).
Its hash (:attr:`PromptPreset.hash`) is the sha256 of its canonical content - every key that changes what is
sent to the model, i.e. everything except ``name`` and ``description`` - so a renamed copy hashes the same.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import posixpath
import random
import re
from typing import Any, Mapping

import yaml

from transforms.presets import PRESET_DIR

BUILTIN_PRESETS = ("paper", "chat")
STYLES = ("template", "chat")


@dataclasses.dataclass(frozen=True)
class PromptPreset:
    name: str
    style: str
    system: str
    layout: str | None  # template style only: placeholders {system}, {instruction}, {response}
    summarize_instruction: str  # placeholder {code}
    judge_instruction: str  # placeholders {instruction}, {code}
    prefixes: tuple[str, ...]
    append_fence_lang: bool
    stop: tuple[str, ...]
    yes_variants: tuple[str, ...]
    no_variants: tuple[str, ...]
    description: str = ""

    def __post_init__(self) -> None:
        if self.style not in STYLES:
            raise ValueError(f"preset {self.name!r}: style must be one of {STYLES}, got {self.style!r}")
        if self.style == "template" and not self.layout:
            raise ValueError(f"preset {self.name!r}: a template-style preset needs a layout")
        if not self.prefixes:
            raise ValueError(f"preset {self.name!r}: needs at least one prefix")
        if not self.yes_variants or not self.no_variants:
            raise ValueError(f"preset {self.name!r}: needs yes_variants and no_variants")
        # Fail at load time, not deep inside a worker, when a template names an unknown placeholder.
        _check_placeholders(self.name, "layout", self.layout or "", {"system", "instruction", "response"})
        _check_placeholders(self.name, "summarize_instruction", self.summarize_instruction, {"code"})
        _check_placeholders(self.name, "judge_instruction", self.judge_instruction, {"instruction", "code"})

    def content(self) -> dict[str, Any]:
        """The keys that determine what is sent to the model (hashed; name and description excluded)."""
        data = dataclasses.asdict(self)
        data.pop("name")
        data.pop("description")
        return {k: list(v) if isinstance(v, tuple) else v for k, v in data.items()}

    @functools.cached_property
    def hash(self) -> str:
        canonical = json.dumps(self.content(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _check_placeholders(preset: str, key: str, template: str, allowed: set[str]) -> None:
    import string

    for _, field, _, _ in string.Formatter().parse(template):
        if field is not None and field not in allowed:
            raise ValueError(f"preset {preset!r}: {key} uses unknown placeholder {{{field}}}; "
                             f"allowed: {sorted(allowed)}")


_FIELDS = {f.name for f in dataclasses.fields(PromptPreset)}


def _read_preset_data(spec: str, seen: tuple[str, ...] = (),
                      extended_by: tuple[str, str] | None = None) -> dict[str, Any]:
    """Raw mapping of a preset by built-in name or path, with ``extends`` resolved.

    A relative ``extends`` path is read from the extending file's folder (not the working directory); a built-in
    name is always the built-in preset."""
    if spec in BUILTIN_PRESETS:
        text = (PRESET_DIR / f"{spec}.yaml").read_text(encoding="utf-8")
    else:
        from transforms.io.filesystems import read_text

        try:
            text = read_text(spec)
        except (FileNotFoundError, OSError) as exc:
            if extended_by is not None:  # (the extending file, its extends as written)
                parent, written = extended_by
                raise ValueError(f"prompt preset {parent!r} extends {written!r}, which is not one of "
                                 f"{BUILTIN_PRESETS} and not a readable file: {spec!r} (a relative path is read "
                                 f"from the folder of {parent!r})") from exc
            raise ValueError(f"unknown prompt preset {spec!r}: not one of {BUILTIN_PRESETS} "
                             "and not a readable file") from exc
    data = _parse_preset_text(spec, text)
    if not isinstance(data, Mapping):
        raise ValueError(f"prompt preset {spec!r} must be a mapping, got {type(data).__name__}")
    data = dict(data)
    base = data.pop("extends", None)
    if base:
        if not isinstance(base, str):
            raise ValueError(f"prompt preset {spec!r}: extends must be a preset name or path, got {base!r}")
        base_spec = _extended_spec(base, spec)
        if _preset_key(base_spec) in {_preset_key(s) for s in seen + (spec,)}:
            raise ValueError(f"prompt preset {spec!r}: circular extends via {base!r}")
        merged = _read_preset_data(base_spec, seen + (spec,), extended_by=(spec, base))
        merged.update(data)
        data = merged
    return data


def _parse_preset_text(spec: str, text: str) -> Any:
    """The content of the preset file ``spec`` (JSON when it ends ``.json``, else YAML); a file that does not parse
    is a ``ValueError`` of one line naming the file, the problem and where it is (not the parser's traceback)."""
    if spec.endswith(".json"):
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"prompt preset {spec!r} is not valid JSON: {exc.msg} "
                             f"(line {exc.lineno}, column {exc.colno})") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(f"prompt preset {spec!r} is not valid YAML: {_yaml_problem(exc)}") from None


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """A YAML error on one line: what the parser was doing, what it found, and where (1-based line and column)."""
    if not isinstance(exc, yaml.MarkedYAMLError):
        return " ".join(str(exc).split())
    parts = [part for part in (exc.context, exc.problem) if part]
    mark = exc.problem_mark or exc.context_mark
    where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
    return " ".join((", ".join(parts) or type(exc).__name__).split()) + where


def _extended_spec(base: str, spec: str) -> str:
    """Where ``extends: base`` of the preset ``spec`` points: a built-in name as it is, an absolute path or URI as
    it is, a relative path joined to the folder of ``spec`` (a local path or a URI)."""
    if base in BUILTIN_PRESETS or spec in BUILTIN_PRESETS or "://" in base or os.path.isabs(base):
        return base
    if "://" in spec:
        scheme, _, rest = spec.partition("://")
        return f"{scheme}://{posixpath.normpath(posixpath.join(posixpath.dirname(rest), base))}"
    return os.path.normpath(os.path.join(os.path.dirname(spec), base))


def _preset_key(spec: str) -> str:
    """``spec`` in a form that names one preset once (for the circularity check)."""
    return spec if spec in BUILTIN_PRESETS or "://" in spec else os.path.abspath(spec)


def preset_from_mapping(data: Mapping[str, Any]) -> PromptPreset:
    unknown = set(data) - _FIELDS
    if unknown:
        raise ValueError(f"prompt preset has unknown keys {sorted(unknown)}; allowed: {sorted(_FIELDS)}")
    missing = {f.name for f in dataclasses.fields(PromptPreset) if f.default is dataclasses.MISSING} - set(data)
    if data.get("style") == "chat":
        missing.discard("layout")  # a chat preset renders through the tokenizer's template
    if missing:
        raise ValueError(f"prompt preset {data.get('name', '?')!r} lacks keys {sorted(missing)}")
    values = dict(data)
    values.setdefault("layout", None)
    for key in ("prefixes", "stop", "yes_variants", "no_variants"):
        values[key] = tuple(str(x) for x in values[key])
    values["append_fence_lang"] = bool(values["append_fence_lang"])
    return PromptPreset(**values)


@functools.lru_cache(maxsize=32)
def load_preset(spec: str = "paper") -> PromptPreset:
    """A built-in preset by name (``paper``, ``chat``) or a user preset by path (YAML or JSON)."""
    return preset_from_mapping(_read_preset_data(spec))


def resolve_preset(preset: PromptPreset | str) -> PromptPreset:
    return preset if isinstance(preset, PromptPreset) else load_preset(preset)


# --- rendering -------------------------------------------------------------------------------------------------


def fenced_code(code: str, fence_lang: str | None) -> str:
    """The snippet with its fence lines, as the reference put it into ``{code}``.

    The opening fence carries the tag as written; the code is kept verbatim and the closing fence goes on its own
    line (no blank line is added when the code already ends with a newline).

    The fence is three backticks (the reference's), or one more than the longest run of backticks that starts a
    line of the code (after spaces or tabs), so that a fence inside the code cannot close the block early (the
    CommonMark rule; ``transforms.extract.fences`` reads it back the same way).
    """
    body = code if code.endswith("\n") else code + "\n"
    longest = 0 if "```" not in code else max(
        (len(m.group(1)) for m in _LINE_START_BACKTICKS.finditer(code)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{fence_lang or ''}\n{body}{fence}"


# a run of backticks at the start of a line (CR, LF or CRLF line ends), after any indentation
_LINE_START_BACKTICKS = re.compile(r"(?:^|(?<=[\r\n]))[ \t]*(`+)")


def response_prefix(preset: PromptPreset, base_prefix: str, fence_lang: str | None) -> str:
    """``base_prefix`` plus ``" " + lang`` when the fence has a language tag; never a trailing space."""
    lang = (fence_lang or "").strip()
    prefix = f"{base_prefix} {lang}" if lang and preset.append_fence_lang else base_prefix
    return prefix.rstrip()


def draw_prefix(preset: PromptPreset, fence_lang: str | None, seed: int) -> str:
    """The prefix of one candidate: uniform over ``preset.prefixes``, a pure function of the candidate's seed."""
    base = preset.prefixes[random.Random(seed).randrange(len(preset.prefixes))]
    return response_prefix(preset, base, fence_lang)


def candidate_seed(snippet_id: str, candidate_index: int, run_seed: int) -> int:
    """The seed of one candidate (its sampling seed and its prefix draw): ``runners.api.request_seed``, the one
    derivation every engine request uses."""
    from runners.api import request_seed

    return int(request_seed(snippet_id, candidate_index, run_seed))


def _chat(tokenizer, system: str, user: str) -> str:
    if tokenizer is None:
        raise ValueError("a chat-style preset needs the model's tokenizer to render its chat template")
    messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def render(preset: PromptPreset, instruction: str, response: str = "", tokenizer=None) -> str:
    """A full prompt: ``instruction`` in the instruction slot, ``response`` pre-filling the answer."""
    if preset.style == "template":
        return preset.layout.format(system=preset.system, instruction=instruction, response=response)
    return _chat(tokenizer, preset.system, instruction) + response


def summarize_instruction(preset: PromptPreset, code: str, fence_lang: str | None, block: str | None = None) -> str:
    return preset.summarize_instruction.format(code=block if block is not None else fenced_code(code, fence_lang))


def summarize_prompt(preset: PromptPreset | str, code: str, fence_lang: str | None, prefix: str, tokenizer=None,
                     block: str | None = None) -> str:
    """Code to instruction. The prompt ends with ``prefix``, which the model continues. ``block`` replaces the
    re-fenced code as ``{code}`` (the reference's raw slice of the response)."""
    preset = resolve_preset(preset)
    return render(preset, summarize_instruction(preset, code, fence_lang, block), prefix, tokenizer)


def judge_prompt(preset: PromptPreset | str, instruction: str, code: str, fence_lang: str | None, tokenizer=None,
                 block: str | None = None) -> str:
    """The self-evaluation prompt; the next token is the judge's first answer token (Yes/No)."""
    preset = resolve_preset(preset)
    code_text = block if block is not None else fenced_code(code, fence_lang)
    text = preset.judge_instruction.format(instruction=instruction, code=code_text)
    return render(preset, text, "", tokenizer)


def stored_instruction(prefix: str, generated_text: str) -> str:
    """What a candidate's instruction is: the prefix and its continuation, stripped."""
    return (prefix + generated_text).strip()


def format_training_prompt(instruction: str, preset: PromptPreset | str = "paper", tokenizer=None) -> str:
    """The prompt part of a training example; the training job appends the response (and EOS) after it.

    With ``paper`` this is the template with the instruction and an empty response, ending with the newline
    after ``@@ Response`` - the format the paper fine-tuned with.
    """
    return render(resolve_preset(preset), instruction, "", tokenizer)


def format_training_example(instruction: str, response: str, preset: PromptPreset | str = "paper",
                            tokenizer=None) -> tuple[str, str]:
    """``(prompt, response)``; the loss goes on the response only."""
    return format_training_prompt(instruction, preset, tokenizer), response


# --- tokenizers -----------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class TokenizerSource:
    """Where to load the model's tokenizer from (picklable; workers load it once per process).

    ``path`` is a local model directory (e.g. the one ``runners.model_resolution`` resolves); ``gguf_file``
    names a GGUF file inside it when the directory holds only that. A source made by ``of_model`` holds the
    model as the user named it and resolves it where it loads: a remote worker's model cache is not the
    launcher's, so a directory resolved on the launcher may not exist there.
    """

    path: str
    gguf_file: str | None = None
    model_cache: str | None = None
    resolve: bool = False

    @classmethod
    def of_model(cls, model: str, model_cache: str | None = None) -> "TokenizerSource":
        return cls(model, model_cache=model_cache, resolve=True)

    def load(self):
        if self.resolve:
            from runners.model_resolution import resolve_model

            return _load_tokenizer(resolve_model(self.path, self.model_cache), self.gguf_file)
        return _load_tokenizer(self.path, self.gguf_file)


@functools.lru_cache(maxsize=4)
def _load_tokenizer(path: str, gguf_file: str | None):
    from runners.model_resolution import load_tokenizer

    return load_tokenizer(path, gguf_file)
