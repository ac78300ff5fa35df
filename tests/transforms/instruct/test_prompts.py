"""Prompt presets against the reference strings (copied here as literals: they are the spec)."""
from __future__ import annotations

import collections
import dataclasses
import json
from pathlib import Path

import pytest

from transforms.instruct import prompts
from transforms.instruct.prompts import (
    PromptPreset,
    TokenizerSource,
    draw_prefix,
    fenced_code,
    format_training_prompt,
    judge_prompt,
    load_preset,
    response_prefix,
    stored_instruction,
    summarize_prompt,
)

# --- the reference, verbatim (../shared/reference/inverse_instruct.md) -------------------------------------------
REFERENCE_SUMMARIZE_TEMPLATE = """You are an exceptionally intelligent coding assistant that consistently \
delivers accurate and reliable responses to user instructions.

@@ Instruction
This is a response code snippet to a programming problem, please give the problem description:
{code}

@@ Response
{prefix}"""

REFERENCE_JUDGE_TEMPLATE = """You are an exceptionally intelligent coding assistant that consistently \
delivers accurate and reliable responses to user instructions.

@@ Instruction
Here is a programming problem:
{instruction}

Here is the answer code to the problem:
{code}
Is the answer correct? Your reply should begin with Yes or No.

@@ Response
"""

REFERENCE_PREFIXES = ["Write a", "Create a", "Implement a", "Develop a", "Design a", "Build a", "I want a"]

CODE = "def add(a, b):\n    return {'sum': a + b}"  # braces must survive formatting untouched

# One fully written-out prompt, so a bug shared by the template literal and the renderer cannot hide.
EXPECTED_SUMMARIZE_PYTHON = (
    "You are an exceptionally intelligent coding assistant that consistently delivers accurate and reliable "
    "responses to user instructions.\n"
    "\n"
    "@@ Instruction\n"
    "This is a response code snippet to a programming problem, please give the problem description:\n"
    "```python\n"
    "def add(a, b):\n"
    "    return {'sum': a + b}\n"
    "```\n"
    "\n"
    "@@ Response\n"
    "Write a python"
)


def test_paper_summarize_prompt_is_the_reference_byte_for_byte():
    prompt = summarize_prompt("paper", CODE, "python", "Write a python")
    assert prompt == EXPECTED_SUMMARIZE_PYTHON
    fenced = "```python\n" + CODE + "\n```"
    assert prompt == REFERENCE_SUMMARIZE_TEMPLATE.replace("{code}", fenced).replace("{prefix}", "Write a python")
    assert prompt.encode("utf-8") == EXPECTED_SUMMARIZE_PYTHON.encode("utf-8")


def test_paper_summarize_prompt_without_fence_tag():
    prompt = summarize_prompt("paper", "x = 1\n", "", "Build a")
    assert prompt == REFERENCE_SUMMARIZE_TEMPLATE.replace("{code}", "```\nx = 1\n```").replace("{prefix}", "Build a")
    assert prompt.endswith("@@ Response\nBuild a")


def test_paper_judge_prompt_is_the_reference_byte_for_byte():
    instruction = "Write a python function that adds two numbers {a} and {b}."
    prompt = judge_prompt("paper", instruction, CODE, "python")
    fenced = "```python\n" + CODE + "\n```"
    assert prompt == REFERENCE_JUDGE_TEMPLATE.replace("{instruction}", instruction).replace("{code}", fenced)
    assert prompt.endswith("Is the answer correct? Your reply should begin with Yes or No.\n\n@@ Response\n")


def test_fenced_code_keeps_code_verbatim_and_adds_no_blank_line():
    assert fenced_code("a\nb", "js") == "```js\na\nb\n```"
    assert fenced_code("a\nb\n", "js") == "```js\na\nb\n```"
    assert fenced_code("a\n\n", None) == "```\na\n\n```"


def test_fenced_code_outlasts_fences_inside_the_code():
    from transforms.extract.fences import find_first_fence

    # a four-backtick Markdown block that holds a ```bash block
    code = "Install it:\n```bash\npip install x\n```\nDone.\n"
    fenced = fenced_code(code, "markdown")
    assert fenced == "````markdown\n" + code + "````"
    fence = find_first_fence(fenced)
    assert (fence.fence, fence.info, fence.body, fence.closed) == ("````", "markdown", code.rstrip("\n"), True)
    # the longest run at a line start decides, after indentation and whatever the line ending
    assert fenced_code("a\n  `````\r````\n", None).startswith("``````\n")
    assert fenced_code("```\r\nx", "") == "````\n```\r\nx\n````"
    # the summarize prompt shows the whole snippet inside one block
    prompt = summarize_prompt("paper", code, "markdown", "Write a")
    assert find_first_fence(prompt).body == code.rstrip("\n")


@pytest.mark.parametrize("code", ["x = '```'\n", "`` two\n", "s = `a`\n", "a ``` b\n", "``"])
def test_fenced_code_keeps_three_backticks_when_nothing_conflicts(code):
    body = code if code.endswith("\n") else code + "\n"
    assert fenced_code(code, "py") == "```py\n" + body + "```"


def test_paper_preset_lists_the_reference_prefixes_and_stop():
    preset = load_preset("paper")
    assert list(preset.prefixes) == REFERENCE_PREFIXES
    assert preset.stop == ("```",)
    assert preset.style == "template"


@pytest.mark.parametrize(
    "fence_lang, base, expected",
    [
        ("python", "Write a", "Write a python"),
        ("", "Write a", "Write a"),
        (None, "I want a", "I want a"),
        ("cpp ", "Design a", "Design a cpp"),  # the tag as written may carry a trailing space: none in the prefix
        ("  ", "Build a", "Build a"),
    ],
)
def test_response_prefix_appends_the_fence_language_without_trailing_space(fence_lang, base, expected):
    assert response_prefix(load_preset("paper"), base, fence_lang) == expected


def test_prefix_draw_is_deterministic_and_uniform():
    preset = load_preset("paper")
    draws = [draw_prefix(preset, "", seed) for seed in range(7000)]
    assert draws == [draw_prefix(preset, "", seed) for seed in range(7000)]
    counts = collections.Counter(draws)
    assert set(counts) == set(REFERENCE_PREFIXES)
    # 7000 uniform draws over 7 prefixes: each count is 1000 +- ~29 (sd); 150 is > 5 sd.
    assert all(abs(n - 1000) < 150 for n in counts.values()), counts


def test_candidate_seed_depends_on_snippet_index_and_run_seed():
    seed = prompts.candidate_seed("snippet-a", 3, 7)
    assert seed == prompts.candidate_seed("snippet-a", 3, 7)
    others = {
        prompts.candidate_seed("snippet-b", 3, 7),
        prompts.candidate_seed("snippet-a", 4, 7),
        prompts.candidate_seed("snippet-a", 3, 8),
    }
    assert seed not in others and len(others) == 3
    assert 0 <= seed < 2**63


def test_prefixes_of_one_snippet_vary_across_candidates():
    preset = load_preset("paper")
    drawn = {draw_prefix(preset, "python", prompts.candidate_seed("s", i, 0)) for i in range(40)}
    assert len(drawn) >= 5
    assert all(p.endswith(" python") for p in drawn)


def test_stored_instruction_is_prefix_plus_text_stripped():
    assert (stored_instruction("Write a python", " function that sorts a list.\n\n")
            == "Write a python function that sorts a list.")
    assert stored_instruction("Write a", "") == "Write a"


def test_format_training_prompt_is_the_paper_template_with_an_empty_response():
    prompt = format_training_prompt("Sort a list.")
    assert prompt == (
        "You are an exceptionally intelligent coding assistant that consistently delivers accurate and reliable "
        "responses to user instructions.\n\n@@ Instruction\nSort a list.\n\n@@ Response\n"
    )


# --- preset files -----------------------------------------------------------------------------------------------


# Every other field changes what the model is sent, so each must change the hash.
UNHASHED_PRESET_FIELDS = {"name", "description"}
# A valid value different from the `paper` preset's, per hashed field.
CHANGED_PRESET_VALUES = {
    "style": "chat",
    "system": "You are a terse assistant.",
    "layout": "{system}\n### Instruction:\n{instruction}\n### Response:\n{response}",
    "summarize_instruction": "Describe this code:\n{code}",
    "judge_instruction": "Does {code} solve {instruction}?",
    "prefixes": ("Write a",),
    "append_fence_lang": False,
    "stop": ("```", "\n\n"),
    "yes_variants": ("Yes",),
    "no_variants": ("No",),
}


def test_preset_hash_covers_every_field_but_name_and_description():
    preset = load_preset("paper")
    hashed_fields = {f.name for f in dataclasses.fields(PromptPreset)} - UNHASHED_PRESET_FIELDS
    assert hashed_fields == set(CHANGED_PRESET_VALUES)  # a new field needs a changed value here
    for field, value in CHANGED_PRESET_VALUES.items():
        assert getattr(preset, field) != value, field
        assert dataclasses.replace(preset, **{field: value}).hash != preset.hash, field


def test_equal_presets_hash_equal_whatever_their_name_and_description():
    preset = load_preset("paper")
    assert dataclasses.replace(preset).hash == preset.hash
    assert dataclasses.replace(preset, name="renamed", description="another text").hash == preset.hash
    assert load_preset("chat").hash != preset.hash


def test_user_preset_by_path_extends_a_builtin(tmp_path: Path):
    path = tmp_path / "mine.yaml"
    path.write_text("extends: paper\nname: mine\ndescription: a renamed copy\n")
    mine = load_preset(str(path))
    paper = load_preset("paper")
    assert mine.name == "mine"
    assert mine.hash == paper.hash  # same prompts, same hash
    assert summarize_prompt(mine, CODE, "python", "Write a python") == EXPECTED_SUMMARIZE_PYTHON

    changed = tmp_path / "terse.json"
    changed.write_text(json.dumps({"extends": "paper", "name": "terse", "prefixes": ["Write a"]}))
    terse = load_preset(str(changed))
    assert terse.prefixes == ("Write a",) and terse.hash != paper.hash
    assert {draw_prefix(terse, "", s) for s in range(50)} == {"Write a"}


def test_relative_extends_is_read_from_the_extending_files_folder(tmp_path: Path, monkeypatch):
    presets = tmp_path / "presets"
    (presets / "team").mkdir(parents=True)
    (presets / "base.yaml").write_text("extends: paper\nname: base\nprefixes: ['Write a']\n")
    (presets / "team" / "mine.yaml").write_text("extends: ../base.yaml\nname: mine\nstop: ['END']\n")
    (presets / "sibling.yaml").write_text("extends: base.yaml\nname: sibling\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "base.yaml").write_text("extends: paper\nname: decoy\nprefixes: ['Decoy']\n")
    monkeypatch.chdir(elsewhere)  # a working directory that holds another base.yaml
    mine = load_preset(str(presets / "team" / "mine.yaml"))
    assert (mine.name, mine.prefixes, mine.stop) == ("mine", ("Write a",), ("END",))
    assert load_preset(str(presets / "sibling.yaml")).prefixes == ("Write a",)
    monkeypatch.chdir(presets)  # a relative path to the extending file works the same
    assert load_preset("team/mine.yaml").prefixes == ("Write a",)


def test_relative_extends_of_a_preset_at_a_uri():
    import fsspec

    fs = fsspec.filesystem("memory")
    fs.pipe("/prompt-presets/base.yaml", b"extends: paper\nname: base\nprefixes: ['Write a']\n")
    fs.pipe("/prompt-presets/team/mine.yaml", b"extends: ../base.yaml\nname: mine\n")
    try:
        assert load_preset("memory://prompt-presets/team/mine.yaml").prefixes == ("Write a",)
    finally:
        fs.rm("/prompt-presets", recursive=True)


def test_missing_extends_names_the_extending_file_and_the_base(tmp_path: Path):
    path = tmp_path / "mine.yaml"
    path.write_text("extends: base.yaml\nname: mine\n")
    with pytest.raises(ValueError) as err:
        load_preset(str(path))
    message = str(err.value)
    assert repr(str(path)) in message and "extends 'base.yaml'" in message
    assert repr(str(tmp_path / "base.yaml")) in message


def test_circular_extends_fails_clearly(tmp_path: Path):
    (tmp_path / "a.yaml").write_text("extends: ./b.yaml\nname: a\n")
    (tmp_path / "b.yaml").write_text("extends: a.yaml\nname: b\n")
    with pytest.raises(ValueError, match="circular extends"):
        load_preset(str(tmp_path / "a.yaml"))


def test_user_preset_with_its_own_layout(tmp_path: Path):
    path = tmp_path / "alpaca.yaml"
    path.write_text(
        "extends: paper\nname: alpaca\n"
        'layout: "{system}\\n\\n### Instruction:\\n{instruction}\\n\\n### Response:\\n{response}"\n'
    )
    prompt = summarize_prompt(load_preset(str(path)), "x = 1", "", "Write a")
    assert prompt.endswith("\n\n### Response:\nWrite a")
    assert "### Instruction:\nThis is a response code snippet" in prompt


@pytest.mark.parametrize(
    "body, message",
    [
        ("extends: paper\nname: bad\nlayout: '{system} {nope}'\n", "unknown placeholder"),
        ("extends: paper\nname: bad\ncolour: blue\n", "unknown keys"),
        ("name: bad\nstyle: template\n", "lacks keys"),
        ("extends: paper\nname: bad\nstyle: fancy\n", "style must be"),
    ],
)
def test_bad_presets_fail_at_load_time(tmp_path: Path, body: str, message: str):
    path = tmp_path / "bad.yaml"
    path.write_text(body)
    with pytest.raises(ValueError, match=message):
        load_preset(str(path))


def test_unknown_preset_name_fails_clearly():
    with pytest.raises(ValueError, match="unknown prompt preset"):
        load_preset("no-such-preset")


def test_chat_preset_needs_a_tokenizer():
    with pytest.raises(ValueError, match="tokenizer"):
        summarize_prompt("chat", CODE, "python", "Write a python")


# --- chat template on the real SmolLM2 tokenizer ---------------------------------------------------------------


def smollm2_tokenizer_source() -> TokenizerSource:
    """The embedded SmolLM2's tokenizer, from the directory the model resolver builds (shared with the engine)."""
    from runners.model_resolution import ModelNotAvailableError, resolve_model

    try:
        return TokenizerSource(resolve_model("smollm2"))
    except ModelNotAvailableError as exc:
        pytest.skip(f"the embedded SmolLM2 is not installed: {exc}")


@pytest.fixture(scope="module")
def smollm2_tokenizer():
    return smollm2_tokenizer_source().load()


SYSTEM = (
    "You are an exceptionally intelligent coding assistant that consistently delivers accurate and reliable "
    "responses to user instructions."
)


def test_chat_preset_summarize_prompt_with_smollm2_template(smollm2_tokenizer):
    prompt = summarize_prompt("chat", CODE, "python", "Write a python", smollm2_tokenizer)
    assert prompt == (
        "<|im_start|>system\n" + SYSTEM + "<|im_end|>\n"
        "<|im_start|>user\n"
        "This is a response code snippet to a programming problem, please give the problem description:\n"
        "```python\ndef add(a, b):\n    return {'sum': a + b}\n```<|im_end|>\n"
        "<|im_start|>assistant\n"
        "Write a python"
    )


def test_chat_preset_judge_and_training_prompts_with_smollm2_template(smollm2_tokenizer):
    prompt = judge_prompt("chat", "Add two numbers.", "x = 1", "", smollm2_tokenizer)
    assert prompt == (
        "<|im_start|>system\n" + SYSTEM + "<|im_end|>\n"
        "<|im_start|>user\nHere is a programming problem:\nAdd two numbers.\n\n"
        "Here is the answer code to the problem:\n```\nx = 1\n```\n"
        "Is the answer correct? Your reply should begin with Yes or No.<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    assert format_training_prompt("Sort a list.", "chat", smollm2_tokenizer) == (
        "<|im_start|>system\n" + SYSTEM
        + "<|im_end|>\n<|im_start|>user\nSort a list.<|im_end|>\n<|im_start|>assistant\n"
    )


def test_a_tokenizer_source_of_a_model_resolves_where_it_loads(monkeypatch, tmp_path):
    """The main job hands its prompt DoFns the model as named, not the launcher's resolved directory: a remote
    worker's model cache (HF_HOME, ~/.cache) is not the launcher's."""
    import pickle

    from runners import model_resolution

    launcher_dir = str(tmp_path / "launcher-cache" / "models--acme--coder")
    source = TokenizerSource.of_model("acme/coder", "/worker/cache")
    assert launcher_dir not in repr(pickle.dumps(source))
    calls = []
    worker_dir = smollm2_tokenizer_source().path  # what the "worker" resolves the name to

    def resolve_on_worker(model, cache=None):
        calls.append((model, cache))
        return worker_dir

    monkeypatch.setattr(model_resolution, "resolve_model", resolve_on_worker)
    tokenizer = pickle.loads(pickle.dumps(source)).load()
    assert calls == [("acme/coder", "/worker/cache")] and tokenizer.encode("def f(): pass")
