"""The contract check's rules (pipeline/gate/contract.py) and its settings, without an endpoint."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from pipeline.cli import cli
from pipeline.config import load_config
from pipeline.gate.contract import Contract, contract_changes
from pipeline.training.labels import label_of, output_schema

pytestmark = pytest.mark.unit

IRIS = (("sepal length (cm)", "float64"), ("sepal width (cm)", "float64"), ("petal length (cm)", "float64"),
        ("petal width (cm)", "float64"))
NUMBERS = (("number", "0"), ("number", "1"), ("number", "2"))


def test_the_same_inputs_and_labels_are_no_change():
    assert contract_changes(Contract(IRIS, NUMBERS), Contract(IRIS, NUMBERS)) == []


def test_missing_added_reordered_and_retyped_features_are_each_named():
    assert contract_changes(Contract(IRIS, NUMBERS), Contract(IRIS[:3], NUMBERS)) == [
        "input features missing: 'petal width (cm)'"]
    assert contract_changes(Contract(IRIS[:3], NUMBERS), Contract(IRIS, NUMBERS)) == [
        "input features added: 'petal width (cm)'"]
    assert contract_changes(Contract(IRIS, NUMBERS), Contract(IRIS[::-1], NUMBERS))[0].startswith(
        "input features reordered: 'sepal length (cm)', ")
    retyped = (*IRIS[:3], ("petal width (cm)", "int64"))
    assert contract_changes(Contract(IRIS, NUMBERS), Contract(retyped, NUMBERS)) == [
        "input features retyped: 'petal width (cm)' float64 -> int64"]


def test_labels_added_removed_and_retyped_are_each_named():
    assert contract_changes(Contract(IRIS, NUMBERS), Contract(IRIS, NUMBERS[:2])) == ["labels removed: [2]"]
    assert contract_changes(Contract(IRIS, NUMBERS[:2]), Contract(IRIS, NUMBERS)) == ["labels added: [2]"]
    as_text = tuple(("str", label) for _, label in NUMBERS)
    assert contract_changes(Contract(IRIS, NUMBERS), Contract(IRIS, as_text)) == [
        "labels retyped: [0, 1, 2] -> ['0', '1', '2']"]


def test_a_label_keeps_its_kind_so_zero_and_the_text_zero_differ():
    assert label_of(0) == label_of(0.0) == ("number", "0")
    assert label_of("0") == ("str", "0") and label_of(True) == ("bool", "True")
    assert output_schema(["b", "a", "b"]) == {"classes": [{"kind": "str", "label": "a"},
                                                          {"kind": "str", "label": "b"}]}


@pytest.mark.parametrize(("how", "source"), [
    ("file", "file:config.json"), ("env", "env:REPLAY_REQUESTS"), ("set", "set:replay_requests"),
])
def test_replay_requests_arrives_from_each_source(tmp_path, monkeypatch, how, source):
    monkeypatch.chdir(tmp_path)
    Path("config.json").write_text(json.dumps({"replay_requests": 7} if how == "file" else {}))
    env = {"REPLAY_REQUESTS": "7"} if how == "env" else {}
    settings = ["replay_requests=7"] if how == "set" else []
    config, sources = load_config("config.json", env, {}, settings=settings)
    assert config.replay_requests == 7 and sources["replay_requests"] == source


def test_replay_requests_from_its_flag_is_checked_and_named(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["--replay-requests", "-1", "--output-file", "out.json"])
    assert result.exit_code == 2
    assert "flag --replay-requests: replay_requests: expected a number between 0 and 100000, got -1" in result.output


@pytest.mark.parametrize("mode", ["training", "testing", "cleanup"])
def test_allow_contract_change_is_refused_where_nothing_is_deployed(tmp_path, monkeypatch, mode):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["--mode", mode, "--allow-contract-change"])
    assert result.exit_code == 2
    assert f"--allow-contract-change contradicts --mode {mode}: it deploys nothing" in result.output


def test_allow_contract_change_is_refused_before_a_subcommand(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["--allow-contract-change", "status"])
    assert result.exit_code == 2 and "--allow-contract-change is an option of a pipeline run" in result.output
