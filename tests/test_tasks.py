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
    for name in tasks.TASKS:
        ours = tasks.evaluate(model, tokenizer, name, limit=12)
        assert ours == harness[name] == through_logits[name]
        assert ours["n"] == 12
