"""How often the drift monitor cries wolf, and how often it sees the wolf: measured.

    .venv/bin/python -m bench.monitor_false_alarms [--seeds 20] [--requests 500] [--skip-speed]

For each dataset (iris; breast cancer, 30 features; a synthetic 100,000-row set of 20
features -- all made or bundled by scikit-learn, nothing downloaded) the project's own
recipe splits the rows (stratified, test_size 0.2, seed 42) and fits the model; the
baseline is computed from the training rows. Then, for each seed:

- undrifted: ``--requests`` one-row requests resampled from the held-out rows;
- shifted: the same requests with one feature (the seed's, in turn) moved by ``--shift``
  training standard deviations.

Every request goes the way the monitor will see it: a capture record (CSV in, JSON out)
written as a JSON line, read back, decoded, gathered, then ``detect_drift``. The table
counts drift verdicts, whether exactly the shifted feature was named, and how often some
test was significant before the effect-size floors (the Holm family alone).

A third scenario shows the floors at work: 10,000 fresh synthetic rows with one feature
moved by only 0.2 std -- "significant" to the KS test, too small to be worth an alarm.
An ablation reruns the undrifted traffic with every replayed row counted as new evidence
(the reason the monitor does not). Finally ``compute_baseline`` on a million rows of 20
features is timed against pandas' ``DataFrame.describe()`` on the same frame, in the same
session.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import tempfile
import time
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.datasets import load_breast_cancer, load_iris, make_classification

from bench.common import print_table, write_result
from pipeline.container.train import build_estimator, split
from pipeline.monitoring import (
    Baseline,
    DriftThresholds,
    LiveTraffic,
    capture_hour_directory,
    capture_line,
    capture_record,
    compute_baseline,
    decode_rows,
    detect_drift,
    drift,
    iter_capture_records,
)
from pipeline.monitoring.drift import DriftReport

CAPTURED_AT = datetime(2026, 11, 30, 10, 0, 0, tzinfo=UTC)
THRESHOLDS = DriftThresholds()


class Dataset:
    def __init__(self, name: str, features: pd.DataFrame, labels: pd.Series) -> None:
        self.name = name
        X_train, X_test, y_train, _ = split(features, labels, 0.2, 42)
        self.model = build_estimator("logistic_regression", {}, 42).fit(X_train.to_numpy(), y_train)
        self.baseline: Baseline = compute_baseline(X_train, y_train)
        self.heldout = X_test.to_numpy()
        self.train_rows = len(X_train)


def datasets() -> list[Dataset]:
    iris = load_iris(as_frame=True)
    cancer = load_breast_cancer(as_frame=True)
    X, y = make_classification(n_samples=100_000, n_features=20, n_informative=8, random_state=0)
    synthetic = pd.DataFrame(X, columns=[f"x{i:02d}" for i in range(20)])
    return [
        Dataset("iris", iris.data, iris.target),
        Dataset("breast_cancer", cancer.data, cancer.target),
        Dataset("synthetic", synthetic, pd.Series(y, name="target")),
    ]


def through_capture(dataset: Dataset, rows: np.ndarray, directory: Path, version: str) -> DriftReport:
    """Capture one record per row as the endpoint would, read them back, and judge them."""
    predictions = dataset.model.predict(rows).tolist()
    hour = capture_hour_directory(directory, version, CAPTURED_AT)
    hour.mkdir(parents=True)
    with open(hour / "worker-1.jsonl", "wb") as handle:
        for index, (row, prediction) in enumerate(zip(rows.tolist(), predictions)):
            handle.write(capture_line(capture_record(
                inference_id=f"{version}-{index}",
                input_body=",".join(repr(value) for value in row), input_content_type="text/csv",
                output_body=json.dumps({"predictions": [prediction]}), output_content_type="application/json",
                inference_time=CAPTURED_AT,
            )))
    records = iter_capture_records(directory, version=version)
    traffic = LiveTraffic(dataset.baseline.width)
    for record in records:
        decoded = decode_rows(record)
        traffic.add(decoded.rows, decoded.predictions)
    if records.records != len(rows) or records.unreadable or records.truncated:
        raise RuntimeError(f"capture round trip lost records: {records.records} of {len(rows)}")
    return detect_drift(dataset.baseline, traffic.rows, traffic.predictions, THRESHOLDS,
                        wrong_width_rows=traffic.wrong_width_rows)


def any_test_significant(report: DriftReport) -> bool:
    adjusted = [report.prediction.p_adjusted]
    for feature in report.features:
        adjusted += [feature.ks_p_adjusted, feature.missing_p_adjusted, feature.out_of_range_p_adjusted]
    return any(p is not None and p <= THRESHOLDS.drift_alpha for p in adjusted)


def run_scenarios(dataset: Dataset, seeds: int, requests: int, shift: float, directory: Path) -> list[dict[str, Any]]:
    width = dataset.baseline.width
    undrifted: list[DriftReport] = []
    shifted: list[tuple[str, DriftReport]] = []
    seconds: list[float] = []
    for seed in range(seeds):
        generator = np.random.default_rng(seed)
        rows = dataset.heldout[generator.integers(0, len(dataset.heldout), requests)]
        started = time.perf_counter()
        undrifted.append(through_capture(dataset, rows, directory, f"{dataset.name}-plain-{seed}"))
        seconds.append(time.perf_counter() - started)
        feature = seed % width
        moved = rows.copy()
        moved[:, feature] += shift * dataset.baseline.features[feature].std
        shifted.append((dataset.baseline.feature_names[feature],
                        through_capture(dataset, moved, directory, f"{dataset.name}-shift-{seed}")))
    common = {"dataset": dataset.name, "features": width, "train_rows": dataset.train_rows,
              "heldout_rows": len(dataset.heldout), "runs": seeds, "requests": requests,
              "median_effective_rows": round(statistics.median(r.effective_rows for r in undrifted), 1),
              "median_ms_per_run": round(1000 * statistics.median(seconds), 1)}
    plain_named = sorted({name for r in undrifted for name in r.moved_features})
    return [
        {**common, "scenario": "undrifted (held-out rows resampled)",
         "drift_verdicts": sum(r.verdict == "drift" for r in undrifted),
         "exactly_the_shifted_feature": None,
         "other_features_named": len(plain_named),
         "predicted_classes_moved": sum(r.prediction.moved for r in undrifted),
         "any_test_significant_before_floors": sum(any_test_significant(r) for r in undrifted),
         "named": plain_named},
        {**common, "scenario": f"one feature +{shift:g} std",
         "drift_verdicts": sum(r.verdict == "drift" for _, r in shifted),
         "exactly_the_shifted_feature": sum(r.moved_features == [name] for name, r in shifted),
         "other_features_named": sum(len(set(r.moved_features) - {name}) for name, r in shifted),
         "predicted_classes_moved": sum(r.prediction.moved for _, r in shifted),
         "any_test_significant_before_floors": sum(any_test_significant(r) for _, r in shifted),
         "named": sorted({name for _, r in shifted for name in r.moved_features})},
    ]


def run_small_shift(dataset: Dataset, seeds: int, rows_per_run: int, shift: float) -> dict[str, Any]:
    """Fresh rows (drawn without replacement), one feature moved a little."""
    verdicts = significant = 0
    psis = []
    for seed in range(seeds):
        generator = np.random.default_rng(10_000 + seed)
        rows = dataset.heldout[generator.choice(len(dataset.heldout), rows_per_run, replace=False)].copy()
        feature = seed % dataset.baseline.width
        rows[:, feature] += shift * dataset.baseline.features[feature].std
        report = detect_drift(dataset.baseline, rows, dataset.model.predict(rows).tolist(), THRESHOLDS)
        verdicts += report.verdict == "drift"
        moved = next(f for f in report.features if f.name == dataset.baseline.feature_names[feature])
        significant += moved.ks_p_adjusted is not None and moved.ks_p_adjusted <= THRESHOLDS.drift_alpha
        psis.append(moved.psi)
    return {"dataset": dataset.name, "scenario": f"{rows_per_run:,} fresh rows, one feature +{shift:g} std",
            "runs": seeds, "ks_significant_after_holm": significant, "drift_verdicts": verdicts,
            "median_psi": round(statistics.median(psis), 4), "psi_threshold": THRESHOLDS.drift_psi_threshold}


@contextlib.contextmanager
def repeats_counted_as_new_rows() -> Iterator[None]:
    """The counterfactual monitor that takes every replayed row as new evidence (as most
    monitors do): each row its own, the effective sample size the row count."""
    original = drift.repeated_rows
    drift.repeated_rows = lambda rows: drift.Repeats(np.arange(rows.shape[0]), float(rows.shape[0]))
    try:
        yield
    finally:
        drift.repeated_rows = original


def run_without_repeat_counting(dataset: Dataset, seeds: int, requests: int) -> dict[str, Any]:
    verdicts = 0
    named: set[str] = set()
    with repeats_counted_as_new_rows():
        for seed in range(seeds):
            rows = dataset.heldout[np.random.default_rng(seed).integers(0, len(dataset.heldout), requests)]
            report = detect_drift(dataset.baseline, rows, dataset.model.predict(rows).tolist(), THRESHOLDS)
            verdicts += report.verdict == "drift"
            named.update(report.moved_features)
    return {"dataset": dataset.name, "runs": seeds, "drift_verdicts": verdicts, "features_named": len(named)}


def baseline_speed(rows: int, features: int, rounds: int) -> dict[str, Any]:
    generator = np.random.default_rng(0)
    frame = pd.DataFrame(generator.standard_normal((rows, features)), columns=[f"f{i}" for i in range(features)])
    labels = pd.Series(generator.integers(0, 3, rows), name="target")
    ours, theirs = [], []
    for _ in range(rounds):  # alternate, so a burst of foreign load hits both
        started = time.perf_counter()
        baseline = compute_baseline(frame, labels)
        ours.append(time.perf_counter() - started)
        started = time.perf_counter()
        frame.describe()
        theirs.append(time.perf_counter() - started)
    size = len(json.dumps(baseline.statistics_dict(), allow_nan=False))
    return {"rows": rows, "features": features, "rounds": rounds,
            "compute_baseline_s": round(min(ours), 3), "describe_s": round(min(theirs), 3),
            "ratio_to_describe": round(min(ours) / min(theirs), 2), "baseline_json_bytes": size}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--shift", type=float, default=2.0, help="the shift, in training standard deviations")
    parser.add_argument("--skip-speed", action="store_true", help="leave out the million-row baseline timing")
    parser.add_argument("--speed-rows", type=int, default=1_000_000)
    args = parser.parse_args()
    warnings.filterwarnings("ignore", category=UserWarning)
    started = time.perf_counter()
    phases: dict[str, float] = {}
    data = datasets()
    phases["datasets, models and baselines"] = time.perf_counter() - started
    rows = []
    with tempfile.TemporaryDirectory(prefix="monitor-bench-") as directory:
        for dataset in data:
            rows += run_scenarios(dataset, args.seeds, args.requests, args.shift, Path(directory))
    phases["undrifted and shifted runs"] = time.perf_counter() - started - sum(phases.values())
    print_table(
        f"Drift verdicts over {args.seeds} seeds of {args.requests} one-row requests (through capture files)",
        ["dataset", "features", "train/held-out", "scenario", "drift", "exactly the shifted", "other named",
         "predictions moved", "any test sig. (no floors)", "eff. rows", "ms/run"],
        [[r["dataset"], r["features"], f"{r['train_rows']}/{r['heldout_rows']}", r["scenario"],
          f"{r['drift_verdicts']}/{r['runs']}",
          "-" if r["exactly_the_shifted_feature"] is None else f"{r['exactly_the_shifted_feature']}/{r['runs']}",
          r["other_features_named"], f"{r['predicted_classes_moved']}/{r['runs']}",
          f"{r['any_test_significant_before_floors']}/{r['runs']}", r["median_effective_rows"],
          r["median_ms_per_run"]] for r in rows],
    )
    small = run_small_shift(data[2], args.seeds, 10_000, 0.2)
    print_table("The effect-size floor: a tiny shift on a large sample",
                ["dataset", "scenario", "KS significant (Holm)", "drift", "median PSI", "PSI floor"],
                [[small["dataset"], small["scenario"], f"{small['ks_significant_after_holm']}/{small['runs']}",
                  f"{small['drift_verdicts']}/{small['runs']}", small["median_psi"], small["psi_threshold"]]])
    phases["small shift runs"] = time.perf_counter() - started - sum(phases.values())
    naive = [run_without_repeat_counting(dataset, args.seeds, args.requests) for dataset in data]
    print_table("Ablation: the undrifted runs again, every replayed row counted as new evidence",
                ["dataset", "drift", "features named"],
                [[r["dataset"], f"{r['drift_verdicts']}/{r['runs']}", r["features_named"]] for r in naive])
    phases["ablation"] = time.perf_counter() - started - sum(phases.values())
    speed = None
    if not args.skip_speed:
        speed = baseline_speed(args.speed_rows, 20, rounds=2)
        print_table("compute_baseline against DataFrame.describe() (best of 2, same frame, same session)",
                    ["rows x features", "compute_baseline s", "describe s", "ratio", "baseline.json bytes"],
                    [[f"{speed['rows']:,} x {speed['features']}", speed["compute_baseline_s"], speed["describe_s"],
                      f"{speed['ratio_to_describe']}x", f"{speed['baseline_json_bytes']:,}"]])
        phases["baseline timing"] = time.perf_counter() - started - sum(phases.values())
    elapsed = time.perf_counter() - started
    print(f"\n{elapsed:.1f} s in all: " + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in phases.items()))
    path = write_result("monitor_false_alarms", {"arguments": vars(args), "thresholds": THRESHOLDS.to_dict(),
                                                 "scenarios": rows, "small_shift": small,
                                                 "ablation_repeats_counted_as_new_rows": naive, "baseline_speed": speed,
                                                 "seconds": round(elapsed, 1)})
    print(f"results: {path}")


if __name__ == "__main__":
    main()
