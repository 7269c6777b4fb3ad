"""Datasets: bad data is refused before training with exit 2 and one line naming the file, the column
or value and what was expected; good data trains, and its metrics carry the no-skill baseline."""
from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from pipeline.errors import PipelineError
from pipeline.state.store import DeploymentStore
from pipeline.training.datasets import load_dataset


def _error_line(result) -> str:
    lines = [line for line in result.output.splitlines() if line.startswith("Error: ")]
    assert len(lines) == 1, result.output
    return lines[0]


def _nothing_trained_or_deployed() -> bool:
    jobs = Path(".mlops/jobs")
    no_jobs = not jobs.exists() or not any(jobs.iterdir())
    no_endpoints = not Path(".mlops/state.db").exists() or DeploymentStore(".mlops").endpoints() == []
    return no_jobs and no_endpoints


def _csv(name: str, text: str) -> str:
    Path(name).write_text(text)
    return name


def _rows(n: int, label=lambda i: i % 2) -> str:
    return "a,b,target\n" + "".join(f"{i % 7},{(i * 3) % 5},{label(i)}\n" for i in range(n))


def _learnable(n: int = 60, label: Callable[[int], object] = lambda i: i % 2,
               extra: Callable[[int], str] | None = None, header: str = "a,b,target") -> str:
    """Rows a model learns perfectly from feature ``a`` (three values per class, so no relabelling)."""
    lines = []
    for i in range(n):
        value = label(i)
        cls = i % 2
        row = f"{cls * 10 + i % 3},{(i * 3) % 5}"
        if extra is not None:
            row += f",{extra(i)}"
        lines.append(f"{row},{value}\n")
    return header + "\n" + "".join(lines)


def _refused(pipeline, *args: str) -> str:
    result = pipeline(*args)
    assert result.exit_code == 2, result.output
    assert _nothing_trained_or_deployed()
    return _error_line(result)


# --- what existed before: each problem named, exit 2 ----------------------------------------------

@pytest.mark.parametrize("make, args, expected", [
    (lambda: None, ["--dataset", "missing.csv"], "dataset 'missing.csv' not found"),
    (lambda: _csv("d.csv", _rows(40)), ["--dataset", "d.csv", "--label-column", "label"],
     "dataset 'd.csv' has no label column 'label' (columns: a, b, target)"),
    (lambda: _csv("d.csv", _rows(40).replace("\n3,", "\nred,", 1)), ["--dataset", "d.csv"],
     "feature column 'a' is not numeric ('red' on line"),
    (lambda: _csv("d.csv", _rows(40).replace("\n3,4,", "\n3,,", 1)), ["--dataset", "d.csv"],
     "column 'b' has 1 missing value(s), the first on line"),
    (lambda: _csv("d.csv", _rows(40, label=lambda i: 2 if i == 5 else i % 2)), ["--dataset", "d.csv"],
     "class 2 has 1 row(s): a stratified split needs at least 2 per class"),
    (lambda: _csv("d.csv", _rows(40, label=lambda i: 2 if i in (5, 9, 13) else i % 2)),
     ["--dataset", "d.csv"], "fewer than cv_folds=3"),
    (lambda: _csv("d.csv", _rows(40).replace("\n3,4,", "\ninf,4,", 1)), ["--dataset", "d.csv"],
     "feature column 'a' has an infinite value on line"),
    (lambda: _csv("d.csv", _rows(40)), ["--dataset", "d.csv", "--set", 'hyperparameters={"depth": 3}'],
     "'depth' is not a hyperparameter of logistic_regression"),
])
def test_bad_dataset_is_named_with_exit_2(pipeline, make, args, expected):
    make()
    result = pipeline(*args)
    assert result.exit_code == 2
    assert expected in _error_line(result)
    assert _nothing_trained_or_deployed()


@pytest.mark.unit
def test_csv_dataset_trains_with_its_label_column(pipeline):
    rows = "".join(f"{i % 5 + (100 if i >= 30 else 0)},{i % 3},{'big' if i >= 30 else 'small'}\n" for i in range(60))
    _csv("d.csv", "x1,x2,kind\n" + rows)
    result = pipeline("--dataset", "d.csv", "--label-column", "kind", "--mode", "training")
    assert result.exit_code == 0, result.output
    evaluation = pipeline.results()["phases"]["training"]["evaluation_results"]
    assert evaluation["accuracy"] == 1.0
    assert evaluation["test_size"] == 12


# --- the header ----------------------------------------------------------------------------------

def test_duplicate_label_column_in_the_header_is_refused_not_renamed_into_a_feature(pipeline):
    _csv("d.csv", "f1,f2,target,target\n" + "".join(f"{i % 7},{i % 5},{i % 2},{i % 2}\n" for i in range(60)))
    line = _refused(pipeline, "--dataset", "d.csv")  # a full run: before, this deployed at 100% accuracy
    assert "dataset 'd.csv' has duplicate column names in its header: 'target' in columns 3, 4" in line
    assert "expected every column name once" in line


@pytest.mark.unit
def test_duplicate_feature_names_are_refused(pipeline):
    _csv("d.csv", _learnable(header="a,a,target"))
    assert "'a' in columns 1, 2" in _refused(pipeline, "--dataset", "d.csv", "--mode", "training")


@pytest.mark.unit
def test_a_column_without_a_name_is_refused(pipeline):
    _csv("d.csv", ",a,b,target\n" + "".join(f"{i}," + line for i, line in
                                           enumerate(_learnable().splitlines(keepends=True)[1:])))
    line = _refused(pipeline, "--dataset", "d.csv", "--mode", "training")
    assert "dataset 'd.csv': column 1 has no name in the header" in line
    assert "expected a name for every column" in line


@pytest.mark.unit
def test_a_trailing_comma_on_the_data_rows_is_refused_not_shifted_into_other_columns(pipeline):
    _csv("d.csv", "".join(line.replace("\n", ",\n") if n else line
                          for n, line in enumerate(_learnable().splitlines(keepends=True))))
    line = _refused(pipeline, "--dataset", "d.csv", "--mode", "training")
    assert "the first data row has 4 fields but the header has 3" in line


@pytest.mark.unit
def test_a_label_name_that_differs_only_in_spaces_is_suggested_with_its_quotes(pipeline):
    _csv("d.csv", _learnable(header="a, b, target"))
    line = _refused(pipeline, "--dataset", "d.csv", "--mode", "training")
    assert "has no label column 'target'" in line and "did you mean ' target'?" in line


@pytest.mark.unit
def test_a_file_separated_by_semicolons_is_told_to_use_commas(pipeline):
    _csv("d.csv", _learnable().replace(",", ";"))
    assert "expected fields separated by commas" in _refused(pipeline, "--dataset", "d.csv", "--mode", "training")


@pytest.mark.unit
def test_a_bom_and_quoted_header_names_are_read_as_plain_names(pipeline):
    text = _learnable().replace("a,b,target", '"a","b","target"', 1)
    Path("d.csv").write_text("\ufeff" + text, encoding="utf-8")
    result = pipeline("--dataset", "d.csv", "--mode", "training")
    assert result.exit_code == 0, result.output


@pytest.mark.unit
@pytest.mark.parametrize("content, expected", [
    ("", "dataset 'd.csv' is empty: expected a CSV file with a header row"),
    ("\n\n", "dataset 'd.csv' is empty: expected a CSV file with a header row"),
    ("a,b,target\n", "dataset 'd.csv' has a header row but no data rows"),
    ("a,b,target\n\n\n", "dataset 'd.csv' has a header row but no data rows"),
    ("target\n" + "".join(f"{i % 2}\n" for i in range(40)), "has no feature columns besides the label 'target'"),
])
def test_a_file_without_rows_or_features_is_named(pipeline, content, expected):
    _csv("d.csv", content)
    assert expected in _refused(pipeline, "--dataset", "d.csv", "--mode", "training")


@pytest.mark.unit
def test_a_file_that_is_not_utf8_is_named(pipeline):
    Path("d.csv").write_bytes(_learnable().encode("utf-16"))
    line = _refused(pipeline, "--dataset", "d.csv", "--mode", "training")
    assert "dataset 'd.csv' is not a readable CSV file: expected UTF-8 text" in line


# --- features ------------------------------------------------------------------------------------

@pytest.mark.unit
@pytest.mark.parametrize("value", ["1e307", "1e200"])
def test_a_feature_too_large_to_standardise_is_named_with_its_line(pipeline, value):
    _csv("d.csv", _learnable(extra=lambda i: value if i == 4 else str(i % 4), header="a,b,big,target"))
    line = _refused(pipeline, "--dataset", "d.csv", "--mode", "training")
    assert f"feature column 'big' has a value too large to standardise ({float(value)!r} on line 6)" in line
    assert "expected magnitudes below about 1e150" in line


@pytest.mark.unit
def test_an_integer_feature_beyond_64_bits_is_used_as_a_float(pipeline):
    _csv("d.csv", _learnable(extra=lambda i: str(10**30 if i == 4 else i % 4), header="a,b,big,target"))
    result = pipeline("--dataset", "d.csv", "--mode", "training")
    assert result.exit_code == 0, result.output


@pytest.mark.unit
def test_an_integer_feature_beyond_float_range_is_named_briefly(pipeline):
    _csv("d.csv", _learnable(extra=lambda i: "9" * 400 if i == 4 else str(i % 4), header="a,b,big,target"))
    line = _refused(pipeline, "--dataset", "d.csv", "--mode", "training")
    assert "feature column 'big' has a number too large for a 64-bit float (99999999999999999999... " \
           "(400 characters) on line 6)" in line


# --- labels --------------------------------------------------------------------------------------

@pytest.mark.unit
def test_continuous_labels_are_refused_as_not_classes(pipeline):
    _csv("d.csv", _learnable(label=lambda i: [0.5, 1.5, 2.5][i % 3]))
    line = _refused(pipeline, "--dataset", "d.csv", "--mode", "training")
    assert "label column 'target' holds continuous numbers (0.5 on line 2); expected classes: integers or strings" \
        in line


@pytest.mark.unit
def test_whole_number_float_labels_are_classes(pipeline):
    _csv("d.csv", _learnable(label=lambda i: f"{i % 2 + 1}.0"))
    result = pipeline("--dataset", "d.csv", "--mode", "training")
    assert result.exit_code == 0, result.output
    assert pipeline.results()["phases"]["training"]["evaluation_results"]["confusion_matrix_labels"] == [1.0, 2.0]


@pytest.mark.unit
@pytest.mark.parametrize("big, shown", [
    ("100000000000000000000", "100000000000000000000"),  # beyond int64: pandas keeps Python ints
    ("-100000000000000000000", "-100000000000000000000"),
    ("1e20", "1e+20"),
    ("9007199254740993", "9007199254740993"),  # int64, but past 2**53
])
def test_labels_beyond_exact_float_integers_are_named(pipeline, big, shown):
    _csv("d.csv", _learnable(label=lambda i: big if i % 2 else "1"))
    line = _refused(pipeline, "--dataset", "d.csv", "--mode", "training")
    assert f"label column 'target' has the value {shown} on line 3, beyond 2**53" in line


@pytest.mark.unit
def test_labels_of_text_and_numbers_read_in_chunks_stay_one_class_per_spelling(workdir):
    # pandas parses a large file in chunks of rows and types each chunk on its own: a chunk of text
    # labels and a chunk of only numbers give both '1' and 1, two classes for one spelling.
    rows = [f"{i % 7},{'a' if i % 2 else '1'}\n" for i in range(300_000)]
    rows += [f"{i % 7},{i % 2}\n" for i in range(300_000)]
    _csv("d.csv", "f,y\n" + "".join(rows))
    with pytest.warns(pd.errors.DtypeWarning):
        assert {type(label) for label in pd.read_csv("d.csv")["y"]} == {str, int}  # what pandas alone gives
    with pytest.warns(pd.errors.DtypeWarning):
        labels = load_dataset("d.csv", "y").labels
    assert sorted(labels.unique()) == ["0", "1", "a"]


# --- label leakage -------------------------------------------------------------------------------

@pytest.mark.unit
@pytest.mark.parametrize("leak, label", [
    (lambda i: i % 2, lambda i: i % 2),  # the label itself
    (lambda i: (i % 3) * 10 + 3, lambda i: i % 3),  # label * 10 + 3
    (lambda i: 5 + i % 2, lambda i: "yes" if i % 2 else "no"),  # string classes renumbered
])
def test_a_feature_that_relabels_the_label_is_refused_by_name(pipeline, leak, label):
    _csv("d.csv", _learnable(label=label, extra=lambda i: str(leak(i)), header="a,b,copy,target"))
    line = _refused(pipeline, "--dataset", "d.csv", "--mode", "training")
    assert "feature column 'copy' is a relabelling of the label 'target'" in line
    assert "set allow_label_leakage=true" in line


@pytest.mark.unit
def test_a_feature_that_maps_to_the_label_only_one_way_is_not_leakage(pipeline):
    # Every value of 'a' belongs to one class, but each class has three values of 'a'; 'c' is continuous.
    _csv("d.csv", _learnable(extra=lambda i: f"{i * 0.37:.2f}", header="a,b,c,target"))
    result = pipeline("--dataset", "d.csv", "--mode", "training")
    assert result.exit_code == 0, result.output


@pytest.mark.unit
def test_leakage_deep_in_a_file_is_found_past_the_first_rows(workdir):
    # The leading rows all have one class, so only the full pass can tell.
    rows = [f"{i % 7},0,0\n" for i in range(12_000)] + [f"{i % 7},1,1\n" for i in range(12_000)]
    _csv("d.csv", "a,copy,target\n" + "".join(rows))
    with pytest.raises(PipelineError, match="feature column 'copy' is a relabelling"):
        load_dataset("d.csv", "target")
    assert load_dataset("d.csv", "target", allow_label_leakage=True).frame.shape == (24_000, 3)


@pytest.mark.unit
@pytest.mark.parametrize("how", ["set", "config_file"])
def test_allow_label_leakage_trains_with_the_leaking_feature(pipeline, how):
    _csv("d.csv", _learnable(extra=lambda i: str(i % 2), header="a,b,copy,target"))
    if how == "set":
        result = pipeline("--dataset", "d.csv", "--mode", "training", "--set", "allow_label_leakage=true")
    else:
        Path("c.json").write_text(json.dumps({"allow_label_leakage": True}))
        result = pipeline("--dataset", "d.csv", "--mode", "training", "--config-file", "c.json")
    assert result.exit_code == 0, result.output
    assert pipeline.results()["config"]["allow_label_leakage"] is True


# --- the no-skill baseline -----------------------------------------------------------------------

@pytest.mark.unit
def test_metrics_record_the_no_skill_accuracy_and_balanced_accuracy(pipeline):
    # 60 rows of class 0 and 20 of class 1, half of which look like class 0: the test rows are 12 and
    # 4, so always answering the training majority (0) scores 12/16, and the model misses some of 1.
    _csv("d.csv", "a,b,target\n" + "".join(f"{i % 3 + (10 if i >= 70 else 0)},{i % 5},{1 if i >= 60 else 0}\n"
                                            for i in range(80)))
    result = pipeline("--dataset", "d.csv", "--mode", "training",
                      "--accuracy-threshold", "0.5", "--minimum-accuracy", "0.5")
    assert result.exit_code == 0, result.output
    evaluation = pipeline.results()["phases"]["training"]["evaluation_results"]
    assert evaluation["no_skill_accuracy"] == 0.75
    matrix = evaluation["confusion_matrix"]
    recalls = [row[n] / sum(row) for n, row in enumerate(matrix)]
    assert evaluation["balanced_accuracy"] == pytest.approx(sum(recalls) / len(recalls))
    assert evaluation["balanced_accuracy"] < evaluation["accuracy"]  # the minority class is the one missed
