import re

import pytest

from transforms.selfplay import puzzles as seed_format
from transforms.selfplay.generate import (
    build_generation_prompt,
    build_seed_prompt,
    generation_pool,
    prompt_header,
    puzzle_from_completion,
    sampling_defaults,
)
from transforms.selfplay.p3 import P3Instance


def _instance(family, f, index=0, split="train"):
    return P3Instance(f"{family}:{index}", family, split, f, "int", "def g():", "", ("    return 1",), "m.py")


def words(text):
    return len(text.split())


def _seven_word_puzzle(i):  # "def" "f(x:" "int):" "return" "x" "==" "i": 7 whitespace-separated words
    return f"def f(x: int):\n    return x == {i}"


@pytest.fixture
def pool():
    return [_instance(f"Fam{i}", _seven_word_puzzle(i)) for i in range(10)]


def test_prompt_packs_while_under_the_budget(pool):
    # Each puzzle is 7 words and the tail "def f{k+1}(" is 2: k puzzles cost 7k + 2 words. The budget is
    # 50 - 10 = 40, so 5 puzzles (37 words) fit and a 6th (44) would not.
    prompt = build_generation_prompt(pool, words, prompt_index=0, seed=1, max_tokens=50, gen_tokens=10)
    assert prompt.k == 5 and prompt.tokens == 37 == words(prompt.text)
    # A prompt exactly AT the budget is over it (the reference breaks on tokens >= max_tokens - gen_tokens).
    at_budget = build_generation_prompt(pool, words, prompt_index=0, seed=1, max_tokens=47, gen_tokens=10)
    assert at_budget.k == 4 and at_budget.tokens == 30


def test_prompt_is_numbered_puzzles_joined_by_blank_lines_ending_with_the_next_header(pool):
    prompt = build_generation_prompt(pool, words, prompt_index=3, seed=1, max_tokens=10_000, gen_tokens=200)
    assert prompt.k == len(pool)
    chunks = prompt.text.split("\n\n")
    assert chunks[-1] == "def f11(" and prompt_header(prompt) == "def f11("
    by_name = {p.name: p.f for p in pool}
    for i, (chunk, name) in enumerate(zip(chunks, prompt.examples), start=1):
        assert chunk == by_name[name].replace("def f(", f"def f{i}(")
    assert sorted(prompt.examples) == sorted(by_name)


def test_order_is_a_function_of_seed_and_prompt_index(pool):
    build = lambda seed, index: build_generation_prompt(pool, words, prompt_index=index, seed=seed,  # noqa: E731
                                                        max_tokens=10_000, gen_tokens=0).examples
    assert build(7, 0) == build(7, 0)
    assert len({build(7, 0), build(7, 1), build(8, 0)}) == 3


def test_renaming_is_the_references_str_replace_so_a_recursive_call_is_renamed_too():
    recursive = _instance("Rec", "def f(n: int):\n    return n == 0 or f(n - 1)")
    prompt = build_generation_prompt([recursive], words, prompt_index=0, max_tokens=1000, gen_tokens=0)
    assert prompt.text == "def f1(n: int):\n    return n == 0 or f1(n - 1)\n\ndef f2("


def test_a_prompt_never_holds_a_test_family(pool):
    leaked = pool + [_instance("Secret", _seven_word_puzzle(99), split="test")]
    with pytest.raises(ValueError, match="training families"):
        build_generation_prompt(leaked, words, prompt_index=0)
    with pytest.raises(ValueError, match="training families"):
        generation_pool(leaked)


def test_pool_takes_the_first_instance_of_each_family_without_docstrings():
    instances = [_instance("A", 'def f(x: int):\n    """Doc."""\n    return x == 1', 0),
                 _instance("A", "def f(x: int):\n    return x == 2", 1),
                 _instance("B", "def f(x: int):\n    return x == 3", 0)]
    assert [(p.name, p.f) for p in generation_pool(instances)] == [
        ("A:0", "def f(x: int):\n    return x == 1"), ("B:0", "def f(x: int):\n    return x == 3")]


def test_a_budget_too_small_for_even_the_header_is_an_error(pool):
    with pytest.raises(ValueError, match="budget"):
        build_generation_prompt(pool, words, prompt_index=0, max_tokens=2, gen_tokens=0)


def test_completion_becomes_an_unnumbered_puzzle_cut_at_the_function_end():
    completion = "s: str):\n    return s[::-1] == 'abc'\n\ndef f12(x: int):\n    return x"
    assert puzzle_from_completion(completion) == "def f(s: str):\n    return s[::-1] == 'abc'\n"


def test_sampling_defaults_are_the_references():
    d = sampling_defaults()
    assert (d.temperature, d.samples_per_prompt, d.max_new_tokens, d.n_puzzles) == (0.9, 64, 200, 100_000)
    # Every stop string starts a line in column 0, where strip_puzzle would cut anyway.
    assert d.stop and all(re.fullmatch(r"\n\S.*", s) for s in d.stop)


def test_the_projects_earlier_format_stays_available_as_the_seed_preset():
    pool = seed_format.load_seed_puzzles()
    prompt = build_seed_prompt(pool, shots=3, prompt_index=0, seed=0)
    assert prompt.preset == "seed" and prompt.k == 3
    assert "def f1(" in prompt.text and "def g1(" in prompt.text and prompt.text.endswith("def f4(")
    test_puzzle = seed_format.make_puzzle("p3/X:0", "def f(x: int):\n    return x == 1", "def g():\n    return 1",
                                          "p3-test")
    with pytest.raises(ValueError, match="evaluation only"):
        build_seed_prompt([*pool, test_puzzle], shots=2, prompt_index=0)


@pytest.fixture(scope="module")
def smollm2_count():
    from transformers import AutoTokenizer

    from runners.model_resolution import ModelNotAvailableError, resolve_model

    try:
        source = resolve_model("smollm2")
    except ModelNotAvailableError as exc:  # only a missing model skips; a loading bug fails
        pytest.skip(f"the embedded SmolLM2 is not installed: {exc}")
    tokenizer = AutoTokenizer.from_pretrained(source)
    return lambda text: len(tokenizer(text, add_special_tokens=False)["input_ids"])


def test_real_prompt_fits_the_papers_budget_with_the_smollm2_tokenizer(p3_data, smollm2_count):
    pool = generation_pool(p3_data.first_train_instances())
    assert len(pool) == 155
    prompt = build_generation_prompt(pool, smollm2_count, prompt_index=0, seed=0)
    assert 5 <= prompt.k < 155
    assert smollm2_count(prompt.text) == prompt.tokens < 2048 - 200
    assert prompt.text.endswith(f"\n\ndef f{prompt.k + 1}(")
    train_names = {p.name for p in p3_data.train}
    assert set(prompt.examples) <= train_names
