"""The statistics of model monitoring: baseline, capture records, drift and live quality.

Fast unit tests of the pure modules under pipeline/monitoring/, on iris split by the
project's own training recipe (the rows a training job holds out are the rows replayed).
"""
from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.datasets import load_iris

from pipeline.container.train import build_estimator, split
from pipeline.errors import PipelineError
from pipeline.monitoring import (
    Baseline,
    DriftThresholds,
    LiveTraffic,
    capture_hour_directory,
    capture_line,
    capture_record,
    class_key,
    compute_baseline,
    decode_rows,
    detect_drift,
    iter_capture_records,
    live_quality,
    prediction_keys,
    read_baseline,
    read_labels,
    write_baseline,
)
from pipeline.monitoring.drift_tests import holm_adjusted, ks_statistic, psi

pytestmark = pytest.mark.unit

THRESHOLDS = DriftThresholds()
T0 = datetime(2026, 11, 30, 10, 15, 2, 123000, tzinfo=UTC)


class Iris:
    def __init__(self) -> None:
        frame = load_iris(as_frame=True).frame
        features, labels = frame.drop(columns=["target"]), frame["target"]
        self.X_train, self.X_test, self.y_train, self.y_test = split(features, labels, 0.2, 42)
        self.model = build_estimator("logistic_regression", {}, 42).fit(self.X_train.to_numpy(), self.y_train)
        self.baseline = compute_baseline(self.X_train, self.y_train)
        self.heldout = self.X_test.to_numpy()

    def replay(self, seed: int, requests: int = 500) -> np.ndarray:
        """Held-out rows resampled, as a client replaying them would send them."""
        return self.heldout[np.random.default_rng(seed).integers(0, len(self.heldout), requests)]

    def predict(self, rows: np.ndarray) -> list[int]:
        return self.model.predict(rows).tolist()


@pytest.fixture(scope="module")
def iris() -> Iris:
    return Iris()


# --------------------------------------------------------------------------- drift
def test_replayed_heldout_rows_are_no_drift(iris: Iris) -> None:
    rows = iris.replay(seed=1)
    report = detect_drift(iris.baseline, rows, iris.predict(rows), THRESHOLDS)
    assert report.verdict == "no_drift", report.reason
    assert report.moved_features == [] and report.violations == ()
    assert report.rows == 500 and report.rows_compared == 500


@pytest.mark.parametrize("feature", range(4))
def test_one_feature_shifted_by_two_std_is_drift_on_that_feature_only(iris: Iris, feature: int) -> None:
    rows = iris.replay(seed=2)
    rows[:, feature] += 2 * iris.baseline.features[feature].std
    report = detect_drift(iris.baseline, rows, iris.predict(rows), THRESHOLDS)
    assert report.verdict == "drift"
    assert report.moved_features == [iris.baseline.feature_names[feature]]
    assert report.features[0].name == iris.baseline.feature_names[feature]  # the worst first
    assert "distribution" in report.features[0].reasons
    assert report.features[0].mean_shift_std == pytest.approx(2.0, abs=0.5)


def test_fewer_rows_than_monitor_min_rows_is_insufficient_data_never_no_drift(iris: Iris) -> None:
    rows = iris.replay(seed=3, requests=99)
    report = detect_drift(iris.baseline, rows, iris.predict(rows), THRESHOLDS)
    assert report.verdict == "insufficient_data"
    assert "99" in report.reason and "monitor_min_rows is 100" in report.reason
    shifted = rows.copy()
    shifted[:, 0] += 10.0  # even an obvious move is not judged on too few rows
    assert detect_drift(iris.baseline, shifted, [], THRESHOLDS).verdict == "insufficient_data"


def test_replayed_rows_count_once_in_the_effective_sample(iris: Iris) -> None:
    rows = iris.replay(seed=4)
    report = detect_drift(iris.baseline, rows, iris.predict(rows), THRESHOLDS)
    distinct = np.unique(rows, axis=0, return_counts=True)[1]
    assert report.distinct_rows == distinct.size <= len(iris.heldout)
    assert report.effective_rows == pytest.approx(500 ** 2 / np.square(distinct).sum())
    fresh = np.random.default_rng(0).normal(size=(300, 4))
    assert detect_drift(iris.baseline, fresh, [], THRESHOLDS).effective_rows == pytest.approx(300)


def test_a_tiny_shift_on_a_large_sample_is_significant_but_below_the_psi_floor() -> None:
    generator = np.random.default_rng(7)
    train = pd.DataFrame(generator.normal(size=(50_000, 2)), columns=["a", "b"])
    baseline = compute_baseline(train, pd.Series(generator.integers(0, 2, 50_000), name="y"))
    live = generator.normal(size=(20_000, 2))
    live[:, 0] += 0.15
    report = detect_drift(baseline, live, [], THRESHOLDS)
    feature_a = next(f for f in report.features if f.name == "a")
    assert feature_a.ks_p_adjusted < THRESHOLDS.drift_alpha  # "significant"...
    assert feature_a.psi < THRESHOLDS.drift_psi_threshold  # ...but too small to matter
    assert report.verdict == "no_drift"
    lower_floor = DriftThresholds(drift_psi_threshold=0.01)
    assert detect_drift(baseline, live, [], lower_floor).moved_features == ["a"]


def test_missing_values_that_training_did_not_have_are_a_completeness_violation(iris: Iris) -> None:
    rows = iris.replay(seed=5)
    rows[::5, 2] = np.nan  # one row in five lost its third feature
    report = detect_drift(iris.baseline, rows, iris.predict(np.nan_to_num(rows)), THRESHOLDS)
    assert report.moved_features == [iris.baseline.feature_names[2]]
    assert report.features[0].reasons == ("missing_values",)
    assert report.features[0].missing_rate == pytest.approx(0.2)
    assert [v["constraint_check_type"] for v in report.violations] == ["completeness_check"]


def test_rows_of_the_wrong_width_are_counted_and_above_the_threshold_a_violation(iris: Iris) -> None:
    good = [list(row) for row in iris.replay(seed=6, requests=300)]
    assert detect_drift(iris.baseline, good + [[1.0, 2.0, 3.0]] * 3, [], THRESHOLDS).verdict == "no_drift"  # 0.99%
    report = detect_drift(iris.baseline, good + [[1.0, 2.0, 3.0]] * 4, [], THRESHOLDS)
    assert report.wrong_width_rows == 4 and report.rows == 304 and report.rows_compared == 300
    assert report.verdict == "drift"  # 4 of 304 is 1.3%, over drift_wrong_width_threshold=1%
    assert report.violations[0]["constraint_check_type"] == "column_count_check"
    lenient = DriftThresholds(drift_wrong_width_threshold=0.05)
    assert detect_drift(iris.baseline, good + [[1.0, 2.0, 3.0]] * 4, [], lenient).verdict == "no_drift"


def test_all_rows_of_the_wrong_width_are_drift_not_insufficient_data(iris: Iris) -> None:
    report = detect_drift(iris.baseline, np.ones((200, 5)), [], THRESHOLDS)
    assert report.verdict == "drift" and report.wrong_width_rows == 200


def test_values_beyond_the_training_range_are_out_of_range_and_in_the_end_buckets(iris: Iris) -> None:
    rows = iris.replay(seed=8)
    top = iris.baseline.features[1].max
    rows[:100, 1] = top + 1.0
    report = detect_drift(iris.baseline, rows, iris.predict(rows), THRESHOLDS)
    moved = report.features[0]
    assert moved.name == iris.baseline.feature_names[1] and "out_of_range" in moved.reasons
    assert moved.out_of_range_rate == pytest.approx(0.2)


def test_predicted_classes_far_from_the_training_distribution_are_drift(iris: Iris) -> None:
    rows = iris.replay(seed=9)
    report = detect_drift(iris.baseline, rows, [0] * 500, THRESHOLDS)
    assert report.prediction.moved and report.verdict == "drift"
    assert report.moved_features == []  # the rows did not move, the answers did
    assert report.prediction.distribution["0"] == 1.0


def test_report_is_plain_json_with_the_worst_feature_first(iris: Iris) -> None:
    rows = iris.replay(seed=10)
    rows[:, 3] += 3 * iris.baseline.features[3].std
    report = detect_drift(iris.baseline, rows, iris.predict(rows), THRESHOLDS)
    data = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert data["verdict"] == "drift" and data["moved_features"] == ["petal width (cm)"]
    assert data["features"][0]["name"] == "petal width (cm)"
    assert data["thresholds"]["monitor_min_rows"] == 100
    table = report.summary_table().splitlines()
    assert table[0].startswith("feature") and table[1].startswith("petal width (cm)")
    assert report.summary_table(moved_only=True).count("\n") == 1


def test_live_traffic_gathers_rows_from_many_records_and_counts_wrong_widths(iris: Iris) -> None:
    traffic = LiveTraffic(width=4)
    rows = iris.replay(seed=11, requests=5000)
    for row in rows:
        traffic.add(row.reshape(1, 4), [0])
    traffic.add([np.array([1.0, 2.0]), np.array([1.0, 2.0, 3.0, 4.0])], [1, 2])
    assert traffic.rows.shape == (5001, 4) and traffic.wrong_width_rows == 1
    assert np.array_equal(traffic.rows[:5000], rows) and len(traffic.predictions) == 5002


def test_psi_ks_and_holm_are_the_textbook_quantities() -> None:
    assert psi([50, 50], [50, 50]) == 0.0
    assert psi([50, 50], [90, 10]) == pytest.approx((0.9 - 0.5) * np.log(0.9 / 0.5) + (0.1 - 0.5) * np.log(0.1 / 0.5))
    assert psi([100, 0], [50, 50]) == pytest.approx((0.5 - 1.0) * np.log(0.5) + (0.5 - 1e-4) * np.log(0.5 / 1e-4))
    generator = np.random.default_rng(3)
    a, b = generator.normal(size=700), generator.normal(0.2, size=300)
    assert ks_statistic(np.sort(a), b) == pytest.approx(stats.ks_2samp(a, b).statistic)
    # Holm on (0.01, 0.04, 0.03, 0.005): sorted 0.005*4, 0.01*3, 0.03*2, 0.04*1 -> running maximum
    assert holm_adjusted([0.01, 0.04, 0.03, 0.005]).tolist() == pytest.approx([0.03, 0.06, 0.06, 0.02])


def test_thresholds_refuse_a_bad_value_naming_the_key() -> None:
    with pytest.raises(ValueError, match="drift_alpha=1.5"):
        DriftThresholds(drift_alpha=1.5)
    with pytest.raises(ValueError, match="monitor_min_rows=0"):
        DriftThresholds(monitor_min_rows=0)
    with pytest.raises(ValueError, match="drift_out_of_range_threshold"):
        DriftThresholds(drift_out_of_range_threshold=-0.1)
    picked = DriftThresholds.from_mapping({"monitor_min_rows": 20, "accuracy_threshold": 0.9})
    assert picked.monitor_min_rows == 20 and picked.drift_alpha == 0.05


# --------------------------------------------------------------------------- baseline
def test_baseline_holds_statistics_deciles_and_the_class_distribution(iris: Iris) -> None:
    baseline = iris.baseline
    sepal_length = baseline.features[0]
    column = iris.X_train.iloc[:, 0]
    assert sepal_length.count == 120 and sepal_length.missing == 0
    assert sepal_length.mean == pytest.approx(column.mean()) and sepal_length.std == pytest.approx(column.std())
    assert (sepal_length.min, sepal_length.max) == (column.min(), column.max())
    assert sum(sepal_length.bin_counts) == 120
    assert list(sepal_length.bin_edges) == sorted(set(np.quantile(column, np.arange(1, 10) / 10)))
    assert baseline.class_counts == {"0": 40, "1": 40, "2": 40}
    assert baseline.reference_sample.shape == (120, 4)  # fewer rows than the sample size: all of them


def test_baseline_samples_at_most_sample_size_rows_seeded() -> None:
    generator = np.random.default_rng(1)
    frame = pd.DataFrame(generator.normal(size=(10_000, 3)), columns=["a", "b", "c"])
    labels = pd.Series(generator.integers(0, 2, 10_000), name="y")
    first = compute_baseline(frame, labels, sample_size=500, seed=5)
    again = compute_baseline(frame, labels, sample_size=500, seed=5)
    assert first.reference_sample.shape == (500, 3)
    assert np.array_equal(first.reference_sample, again.reference_sample)
    assert not np.array_equal(first.reference_sample, compute_baseline(frame, labels, 10, 500, seed=6).reference_sample)


def test_baseline_files_round_trip_and_a_changed_file_is_refused(iris: Iris, tmp_path: Path) -> None:
    digests = write_baseline(tmp_path, iris.baseline, THRESHOLDS)
    statistics = json.loads((tmp_path / "baseline.json").read_text())
    assert statistics["version"] == 0 and statistics["dataset"]["item_count"] == 120
    feature = statistics["features"][0]
    assert set(feature["numerical_statistics"]["common"]) == {"num_present", "num_missing"}
    buckets = feature["numerical_statistics"]["distribution"]["kll"]["buckets"]
    assert buckets[0]["lower_bound"] == iris.baseline.features[0].min
    constraints = json.loads((tmp_path / "constraints.json").read_text())
    assert constraints["monitoring_config"]["thresholds"] == THRESHOLDS.to_dict()
    assert constraints["features"][0]["completeness"] == 1.0

    loaded = read_baseline(tmp_path / "baseline.json", sha256=digests["baseline.json"])
    assert loaded.features == iris.baseline.features and loaded.class_counts == iris.baseline.class_counts
    assert np.array_equal(loaded.reference_sample, iris.baseline.reference_sample)
    rows = iris.replay(seed=12)
    assert detect_drift(loaded, rows, iris.predict(rows), THRESHOLDS) == \
        detect_drift(iris.baseline, rows, iris.predict(rows), THRESHOLDS)

    (tmp_path / "baseline.json").write_text(json.dumps(statistics).replace('"item_count": 120', '"item_count": 121'))
    with pytest.raises(PipelineError, match="does not match the sha256"):
        read_baseline(tmp_path / "baseline.json", sha256=digests["baseline.json"])
    (tmp_path / "baseline.json").write_text('{"version": 0}')
    with pytest.raises(PipelineError, match="is not a readable baseline"):
        read_baseline(tmp_path / "baseline.json")
    with pytest.raises(PipelineError, match="not found"):
        read_baseline(tmp_path / "missing.json")


def test_baseline_of_a_feature_with_missing_values() -> None:
    frame = pd.DataFrame({"a": [1.0, np.nan, 3.0, 4.0, np.nan] * 40, "b": np.arange(200.0)})
    baseline = compute_baseline(frame, pd.Series([0, 1] * 100, name="y"))
    assert baseline.features[0].missing == 80 and baseline.features[0].present == 120
    assert baseline.features[0].inferred_type == "Integral"
    assert Baseline.from_dict(json.loads(json.dumps(baseline.statistics_dict(), allow_nan=False))).features \
        == baseline.features


def test_class_keys_agree_whichever_way_a_label_travelled() -> None:
    assert class_key(np.int64(1)) == class_key(1.0) == class_key("1") == class_key(" 1 ") == "1"
    assert class_key("setosa") == "setosa" and class_key(2.5) == class_key("2.5")
    assert class_key(True) == class_key("true") == "True"


# --------------------------------------------------------------------------- capture
def _write(directory: Path, version: str, records: list[dict], when: datetime, name: str = "w1") -> Path:
    hour = capture_hour_directory(directory, version, when)
    hour.mkdir(parents=True, exist_ok=True)
    path = hour / f"{name}.jsonl"
    with path.open("ab") as handle:
        for record in records:
            handle.write(capture_line(record))
    return path


def test_capture_records_round_trip_with_a_truncated_last_line(tmp_path: Path) -> None:
    csv_in = capture_record(inference_id="a1", input_body="5.1,3.5,1.4,0.2\n6.2,2.9,4.3,1.3",
                            input_content_type="text/csv", output_body='{"predictions": [0, 1]}',
                            output_content_type="application/json", inference_time=T0)
    json_in = capture_record(inference_id="a2", input_body=b'{"instances": [[5.9, 3.0, 5.1, 1.8]]}',
                             input_content_type="application/json", output_body="2\n",
                             output_content_type="text/csv; charset=utf-8", inference_time=T0)
    binary = capture_record(inference_id="a3", input_body=b"\xff\xfe", input_content_type="application/x-npy",
                            inference_time=T0)
    assert csv_in["captureData"]["endpointInput"] == {"observedContentType": "text/csv", "mode": "INPUT",
                                                      "data": "5.1,3.5,1.4,0.2\n6.2,2.9,4.3,1.3", "encoding": "CSV"}
    assert csv_in["eventMetadata"] == {"eventId": "a1", "inferenceId": "a1",
                                       "inferenceTime": "2026-11-30T10:15:02.123Z"}
    assert csv_in["eventVersion"] == "0"
    assert binary["captureData"]["endpointInput"]["encoding"] == "BASE64"
    assert "endpointOutput" not in binary["captureData"]

    path = _write(tmp_path, "v1", [csv_in, json_in, binary], T0)
    with path.open("ab") as handle:
        handle.write(capture_line(csv_in)[:40])  # a writer stopped mid-line
    records = iter_capture_records(tmp_path, version="v1")
    read = list(records)
    assert [r["eventMetadata"]["eventId"] for r in read] == ["a1", "a2", "a3"]
    assert (records.records, records.truncated, records.unreadable, records.files) == (3, 1, 0, 1)

    rows, predictions, inference_id, when = decode_rows(read[0])
    assert rows.tolist() == [[5.1, 3.5, 1.4, 0.2], [6.2, 2.9, 4.3, 1.3]] and predictions == [0, 1]
    assert inference_id == "a1" and when == T0
    decoded = decode_rows(read[1])
    assert decoded.rows.tolist() == [[5.9, 3.0, 5.1, 1.8]] and decoded.predictions == ["2"]
    assert decode_rows(read[2]).rows.shape == (0, 0) and decode_rows(read[2]).predictions == []


def test_an_unreadable_line_in_the_middle_is_counted_and_the_rest_read(tmp_path: Path) -> None:
    record = capture_record(inference_id="b1", input_body="1,2,3,4", input_content_type="text/csv", inference_time=T0)
    path = _write(tmp_path, "v1", [record], T0)
    with path.open("ab") as handle:
        handle.write(b"not json\n" + b'{"captureData": {}}\n' + capture_line(record))
    records = iter_capture_records(tmp_path, version="v1")
    assert len(list(records)) == 2 and records.unreadable == 2 and records.truncated == 0


def test_capture_is_read_by_version_and_since_oldest_hour_first(tmp_path: Path) -> None:
    def record(name: str, when: datetime) -> dict:
        return capture_record(inference_id=name, input_body="1,2,3,4", input_content_type="text/csv",
                              inference_time=when)

    earlier = T0 - timedelta(hours=3)
    _write(tmp_path, "v1", [record("new", T0)], T0)
    _write(tmp_path, "v1", [record("old", earlier)], earlier)
    _write(tmp_path, "v2", [record("other", T0)], T0)
    ids = lambda records: [r["eventMetadata"]["eventId"] for r in records]  # noqa: E731
    assert ids(iter_capture_records(tmp_path, version="v1")) == ["old", "new"]
    assert ids(iter_capture_records(tmp_path, version="v1", since=T0 - timedelta(minutes=1))) == ["new"]
    assert sorted(ids(iter_capture_records(tmp_path))) == ["new", "old", "other"]
    assert ids(iter_capture_records(tmp_path, version="v3")) == []
    assert ids(iter_capture_records(tmp_path / "nowhere")) == []


def test_compressed_capture_files_are_read_and_a_cut_one_counted(tmp_path: Path) -> None:
    record = capture_record(inference_id="c1", input_body="1,2,3,4", input_content_type="text/csv", inference_time=T0)
    hour = capture_hour_directory(tmp_path, "v1", T0)
    hour.mkdir(parents=True)
    (hour / "w1.jsonl.gz").write_bytes(gzip.compress(capture_line(record) * 2))
    (hour / "w2.jsonl.gz").write_bytes(gzip.compress(capture_line(record) * 500)[:-200])
    records = iter_capture_records(tmp_path, version="v1")
    count = len(list(records))
    assert 2 < count < 502 and records.truncated >= 1


def test_decode_rows_of_several_widths_and_values_that_are_not_numbers() -> None:
    record = capture_record(inference_id="d1", input_body="1,2,3,4\n1,2,x\n\n1,,3,4",
                            input_content_type="text/csv", inference_time=T0)
    rows = decode_rows(record).rows
    assert isinstance(rows, list) and [len(row) for row in rows] == [4, 3, 4]
    assert np.isnan(rows[1][2]) and np.isnan(rows[2][1])
    single = capture_record(inference_id="d2", input_body="[1, null, true, \"2.5\"]",
                            input_content_type="application/json", inference_time=T0)
    values = decode_rows(single).rows
    assert values.shape == (1, 4) and values[0, 0] == 1.0 and values[0, 3] == 2.5
    assert np.isnan(values[0, 1]) and np.isnan(values[0, 2])


def test_prediction_keys_name_each_row_of_a_batch() -> None:
    assert prediction_keys("id", 1) == ["id"]
    assert prediction_keys("id", 3) == ["id:0", "id:1", "id:2"]


# --------------------------------------------------------------------------- quality
def _ids(count: int) -> list[str]:
    return [f"r{i}" for i in range(count)]


def test_accuracy_whose_whole_interval_is_below_the_minimum_is_a_breach() -> None:
    predictions = dict.fromkeys(_ids(200), 1)
    labels = {key: (1 if i < 120 else 0) for i, key in enumerate(_ids(200))}  # 60% right
    report = live_quality(predictions, labels, minimum_accuracy=0.9)
    assert report.status == "breach" and report.accuracy == 0.6 and report.interval_high < 0.9
    assert report.per_class_recall == {"0": {"recall": 0.0, "correct": 0, "support": 80},
                                       "1": {"recall": 1.0, "correct": 120, "support": 120}}


def test_accuracy_below_the_minimum_but_not_confidently_is_no_breach() -> None:
    predictions = dict.fromkeys(_ids(40), "a")
    labels = {key: ("a" if i < 35 else "b") for i, key in enumerate(_ids(40))}  # 87.5%, interval reaches 0.9
    report = live_quality(predictions, labels, minimum_accuracy=0.9)
    assert report.status == "no_breach" and report.accuracy < 0.9 < report.interval_high
    assert "straddles" in report.reason


def test_too_few_matched_labels_is_insufficient_data() -> None:
    predictions = dict.fromkeys(_ids(100), 0)
    labels = {**dict.fromkeys(_ids(10), 1), "unknown-id": 0}  # 10 matched, all wrong
    report = live_quality(predictions, labels, minimum_accuracy=0.9)
    assert report.status == "insufficient_data"
    assert (report.matched, report.unmatched_labels, report.unlabelled_predictions) == (10, 1, 90)
    assert live_quality(predictions, labels, 0.9, min_matched=10).status == "breach"
    assert live_quality({}, labels, 0.9).status == "insufficient_data"


def test_labels_match_predictions_whatever_their_spelling() -> None:
    report = live_quality(dict.fromkeys(_ids(50), 2), dict.fromkeys(_ids(50), "2.0"), minimum_accuracy=0.9)
    assert report.status == "no_breach" and report.accuracy == 1.0


def test_labels_file_is_read_and_bad_ones_refused_naming_the_line(tmp_path: Path) -> None:
    good = tmp_path / "labels.csv"
    good.write_text("inference_id,label,note\na1,0,x\na2,1,\na1,0,again\n")
    assert read_labels(good) == {"a1": "0", "a2": "1"}
    (tmp_path / "no_label.csv").write_text("inference_id,target\na1,0\n")
    with pytest.raises(PipelineError, match="has no 'label' column"):
        read_labels(tmp_path / "no_label.csv")
    (tmp_path / "conflict.csv").write_text("inference_id,label\na1,0\na2,1\na1,2\n")
    with pytest.raises(PipelineError, match="line 4: inference id 'a1' has label '2' but line 2"):
        read_labels(tmp_path / "conflict.csv")
    (tmp_path / "empty_id.csv").write_text("inference_id,label\n,1\n")
    with pytest.raises(PipelineError, match="line 2: empty inference_id"):
        read_labels(tmp_path / "empty_id.csv")
    with pytest.raises(PipelineError, match="not found"):
        read_labels(tmp_path / "absent.csv")


def test_a_labels_path_that_cannot_be_read_is_refused_naming_it(tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match=r"labels file '.*' cannot be read \(Is a directory\)"):
        read_labels(tmp_path)
