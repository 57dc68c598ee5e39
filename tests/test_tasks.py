"""The evaluation tasks built from the corpus (qcourse.tasks): what they contain, that the shipped
files are what the builder makes, hand-checked scoring, and the cross-check with
lm-evaluation-harness."""
import json

import pytest
import yaml

from qcourse import data, tasks


@pytest.fixture(scope="module")
def shipped():
    return {name: tasks.load(name) for name in tasks.TASKS}


def test_every_example_is_a_well_formed_four_way_choice(shipped):
    for name, examples in shipped.items():
        assert 150 <= len(examples) <= tasks.MAX_EXAMPLES, name
        for e in examples:
            assert len(e["choices"]) == 4 and len(set(e["choices"])) == 4
            assert 0 <= e["label"] < 4
            assert e["context"] and not e["context"][-1].isspace()
        labels = [e["label"] for e in examples]
        assert min(labels.count(i) for i in range(4)) > len(examples) / 8   # shuffled, not fixed


def test_the_right_next_line_is_the_line_in_the_source(shipped):
    code = {d.name: d.text.splitlines() for d in data.documents("test", "code")}
    for e in shipped["qcourse_next_line"]:
        module, line_number = e["source"].rsplit(":", 1)
        answer = e["choices"][e["label"]]
        assert answer == "\n" + code[module][int(line_number) - 1]
        assert e["context"].splitlines()[-1] in code[module]   # the context is that file's code
        indent = len(answer) - len(answer.lstrip())
        assert all(len(c) - len(c.lstrip()) == indent for c in e["choices"])  # no giveaway


def test_the_right_cloze_word_ends_a_sentence_of_the_document(shipped):
    prose = {d.name: d.text for d in data.documents("test", "prose")}
    for e in shipped["qcourse_docstring_cloze"]:
        name, offset = e["source"].rsplit("@", 1)
        word = e["choices"][e["label"]].strip()
        text = prose[name]
        assert text[int(offset):int(offset) + len(word)] == word
        assert text[int(offset) + len(word)] in ".!?"
        assert text[:int(offset) - 1].endswith(e["context"])


@pytest.mark.slow
def test_the_shipped_files_are_what_the_builder_makes(shipped):
    for name in tasks.TASKS:
        assert tasks.build(name) == shipped[name], f"rebuild {name}: python -m qcourse.tasks"


def test_the_yaml_is_the_task_config():
    for name in tasks.TASKS:
        on_disk = yaml.safe_load(tasks.yaml_file(name).read_text())
        assert on_disk == tasks.task_config(name)
        assert on_disk["dataset_kwargs"]["data_files"]["test"] == f"data/tasks/{name}.jsonl"
        assert on_disk["dataset_path"] == "json" and on_disk["output_type"] == "multiple_choice"


def test_write_makes_jsonl_and_yaml_anywhere(tmp_path, monkeypatch):
    monkeypatch.setattr(tasks, "build", lambda name, seed=0: [
        {"context": "a", "choices": [" b", " c", " d", " e"], "label": 2, "source": "x"}])
    counts = tasks.write(tmp_path)
    assert counts == {name: 1 for name in tasks.TASKS}
    line = tasks.task_file(tasks.TASKS[0], tmp_path).read_text().strip()
    assert json.loads(line)["label"] == 2
    config = yaml.safe_load(tasks.yaml_file(tasks.TASKS[0], tmp_path).read_text())
    assert config["dataset_kwargs"]["data_files"]["test"] == str(tasks.task_file(tasks.TASKS[0],
                                                                                 tmp_path))


def test_cloze_points_are_sentence_final_words():
    text = "It returns the result. Then It stops! Short end. the value is here."
    assert [w for _, w in tasks.cloze_points(text)] == ["result", "stops", "here"]
    offset, word = tasks.cloze_points(text)[0]
    assert text[offset:offset + len(word)] == "result"


def test_function_lines_skip_docstrings_and_short_functions():
    source = ('def short():\n    return 1\n\n'
              'def longer(x):\n    """Doc\n    string."""\n    a = x\n    b = a + 1\n'
              '    c = b * 2\n    d = c - 3\n    return d\n')
    (found,) = tasks.function_lines(source)
    assert [n for n, _ in found] == [4, 7, 8, 9, 10, 11]
    assert tasks.function_lines("def broken(:\n") == []


class CharTokenizer:
    """One token per character (a toy tokenizer)."""

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": [ord(c) for c in text]}


def test_encode_pair_splits_like_the_harness():
    head, tail = tasks.encode_pair(CharTokenizer(), "ab ", "cd")
    assert head == [ord("a"), ord("b")]                # the trailing space moved
    assert tail == [ord(" "), ord("c"), ord("d")]
    assert tasks.encode_pair(CharTokenizer(), "ab", "\ncd")[1] == [10, ord("c"), ord("d")]


def test_accuracy_by_hand():
    examples = [{"choices": [" a", " bbbbb"], "label": 1}, {"choices": [" x", " y"], "label": 0}]
    scores = [[-2.0, -3.0], [-1.0, -4.0]]
    # acc: argmax picks 0 then 0 -> 1 of 2; acc_norm: -2/2 = -1 vs -3/6 = -0.5 picks 1 -> 2 of 2
    assert tasks.accuracy(scores, examples) == {"acc": 0.5, "acc_norm": 1.0, "n": 2}
    with pytest.raises(ValueError):
        tasks.accuracy(scores[:1], examples)


def test_choice_loglikelihoods_of_a_known_model():
    import math

    import torch

    def always_b(ids):                       # puts probability 3/4 on "b" (98), 1/4 elsewhere
        logits = torch.full((*ids.shape, 128), -1e9)
        logits[..., 98] = math.log(3)
        logits[..., 99] = 0.0
        return logits
    example = {"context": "a", "choices": ["b", "c", "bb"], "label": 0}
    scores = tasks.choice_loglikelihoods(always_b, CharTokenizer(), example)
    assert scores == pytest.approx([math.log(0.75), math.log(0.25), 2 * math.log(0.75)])


def test_the_paired_test_by_hand():
    # B answers 3 questions A missed and misses 7 A got: 10 discordant questions, and
    # P(at most 3 of 10 fair coins go one way) = (1 + 10 + 45 + 120) / 1024, doubled
    a = [1] * 7 + [0] * 3 + [1] * 51 + [0] * 39
    b = [0] * 7 + [1] * 3 + [1] * 51 + [0] * 39
    out = tasks.paired_test(a, b)
    assert (out["a_only"], out["b_only"], out["both"], out["neither"]) == (7, 3, 51, 39)
    assert out["difference"] == pytest.approx(-0.04)
    assert out["p_value"] == pytest.approx(2 * 176 / 1024)
    assert tasks.paired_test(a, a)["p_value"] == 1.0                    # no disagreement
    assert tasks.paired_test([1] * 9, [0] * 9)["p_value"] == pytest.approx(2 / 512)
    assert tasks.paired_test([True, False], [False, False])["a_only"] == 1
    with pytest.raises(ValueError, match="same questions"):
        tasks.paired_test([1, 0], [1])
    with pytest.raises(ValueError, match="1 .right. or 0"):
        tasks.paired_test([2], [1])


def test_the_paired_test_is_stricter_than_the_noise_of_one_accuracy():
    # 20 of 100 questions flip between two models of equal accuracy: no evidence either way,
    # while 12 flips one way and none the other is decisive (p < 0.001)
    a = [1] * 10 + [0] * 10 + [1] * 40 + [0] * 40
    b = [0] * 10 + [1] * 10 + [1] * 40 + [0] * 40
    assert tasks.paired_test(a, b)["p_value"] == 1.0
    assert tasks.paired_test([1] * 12 + [0] * 88, [0] * 100)["p_value"] < 0.001


def test_the_context_cached_lm_scores_like_a_full_forward_pass(small_llama):
    import types

    from qcourse.references import lm_eval

    model = small_llama(seed=1)
    tokenizer = CharTokenizer()
    requests = [types.SimpleNamespace(args=(context, choice))
                for context in ("abc ", "xy") for choice in ("d", "de f", " gh")]
    cached = lm_eval.context_cached_lm(model, tokenizer).loglikelihood(requests)
    full = lm_eval.logits_lm(model, tokenizer).loglikelihood(requests)
    assert [g for _, g in cached] == [g for _, g in full]
    assert [ll for ll, _ in cached] == pytest.approx([ll for ll, _ in full], abs=1e-5)


def test_unknown_task_is_rejected():
    with pytest.raises(ValueError, match="unknown task"):
        tasks.load("hellaswag")


@pytest.mark.slow
def test_our_scoring_equals_lm_evaluation_harness(tiny):
    from qcourse import eval as qeval
    from qcourse.references import lm_eval

    model, tokenizer = tiny
    harness = lm_eval.evaluate(model, tokenizer, limit=12)
    through_logits = lm_eval.evaluate(qeval.logits_fn(model), tokenizer, limit=12)
    cached = lm_eval.evaluate(model, tokenizer, limit=12, backend="cached")
    for name in tasks.TASKS:
        ours = tasks.evaluate(model, tokenizer, name, limit=12)
        assert harness[name] == through_logits[name] == cached[name]
        assert ours == {k: harness[name][k] for k in ("acc", "acc_norm", "n")}
        assert ours["n"] == 12 and len(harness[name]["correct"]) == 12
        assert sum(harness[name]["correct"]) / 12 == harness[name]["acc"]
    with pytest.raises(ValueError, match="unknown backend"):
        lm_eval.evaluate(model, tokenizer, limit=1, backend="vllm")
