"""What the model saw at training, kept so live traffic can be compared with it later.

A baseline is computed once per training job from its training rows and written as
``baseline.json``, in the shape of SageMaker Model Monitor's ``statistics.json``
(``version``, ``dataset.item_count``, ``features[].numerical_statistics`` with
``common.num_present/num_missing``, ``mean``, ``sum``, ``std_dev``, ``min``, ``max`` and
``distribution.kll.buckets``), with these deviations (docs/MONITORING.md lists them):

- the buckets are the training data's *deciles*, not KLL's equal-width buckets, and
  there is no KLL ``sketch``; exact ``quantiles`` are given instead. The first bucket's
  ``lower_bound`` is the minimum and the last one's ``upper_bound`` the maximum, as in
  SageMaker, but for comparisons both end buckets are open (-inf and +inf), so a live
  value beyond the training range still lands in a bucket and moves the PSI;
- a ``label`` entry holds the class distribution (SageMaker's categorical buckets shape);
- a ``reference_sample`` of training rows (seeded, at most ``sample_size``) for the
  two-sample Kolmogorov-Smirnov test: a binned CDF is too coarse for KS and a quantile
  grid has no valid p-value under ties, while a few thousand real rows give an exact test.

The thresholds go in ``constraints.json`` (SageMaker's ``monitoring_config`` shape).
"""
from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from pipeline.container.verified_files import FileChanged, read_verified, write_recorded
from pipeline.errors import PipelineError

if TYPE_CHECKING:
    from pipeline.monitoring.thresholds import DriftThresholds

BASELINE_FILE = "baseline.json"
CONSTRAINTS_FILE = "constraints.json"
FORMAT_VERSION = 1  # of our extensions; "version": 0 is SageMaker's schema version
DEFAULT_BINS = 10
DEFAULT_SAMPLE_SIZE = 2000
DEFAULT_SAMPLE_SEED = 0
QUANTILES = (0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99)


def class_key(value: Any) -> str:
    """One spelling per class, whichever way it travelled.

    A label is an ``int`` in the training frame, a JSON number in an endpoint's answer,
    the text ``"1"`` in a CSV answer or a labels file: all of them are the key ``"1"``.
    """
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, str):
        text = value.strip()
        if text.lower() in ("true", "false"):
            return text.capitalize()
        try:
            value = float(text)
        except ValueError:
            return text
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    return str(value)


@dataclass(frozen=True)
class FeatureBaseline:
    """One feature at training. ``bin_edges`` are the inner edges; a value ``x`` is in bin
    ``searchsorted(bin_edges, x, side="right")``, so the first and last bins are open."""

    name: str
    inferred_type: str  # "Integral" or "Fractional", as SageMaker names them
    count: int  # rows, present and missing
    missing: int
    sum: float
    mean: float | None
    std: float | None  # sample standard deviation (ddof=1), as pandas' describe()
    min: float | None
    max: float | None
    quantiles: tuple[tuple[float, float], ...]
    bin_edges: tuple[float, ...]
    bin_counts: tuple[int, ...]

    @property
    def present(self) -> int:
        return self.count - self.missing

    @property
    def missing_rate(self) -> float:
        return self.missing / self.count if self.count else 0.0

    def to_dict(self) -> dict[str, Any]:
        bounds = [self.min, *self.bin_edges, self.max]
        buckets = [
            {"lower_bound": bounds[i], "upper_bound": bounds[i + 1], "count": int(count)}
            for i, count in enumerate(self.bin_counts)
        ]
        return {
            "name": self.name,
            "inferred_type": self.inferred_type,
            "numerical_statistics": {
                "common": {"num_present": self.present, "num_missing": self.missing},
                "mean": self.mean,
                "sum": self.sum,
                "std_dev": self.std,
                "min": self.min,
                "max": self.max,
                "distribution": {"kll": {"buckets": buckets}},
                "quantiles": [{"quantile": q, "value": v} for q, v in self.quantiles],
            },
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureBaseline:
        stats = data["numerical_statistics"]
        common = stats["common"]
        buckets = stats["distribution"]["kll"]["buckets"]
        present, missing = int(common["num_present"]), int(common["num_missing"])
        return cls(
            name=str(data["name"]),
            inferred_type=str(data["inferred_type"]),
            count=present + missing,
            missing=missing,
            sum=float(stats["sum"]),
            mean=_optional_float(stats["mean"]),
            std=_optional_float(stats["std_dev"]),
            min=_optional_float(stats["min"]),
            max=_optional_float(stats["max"]),
            quantiles=tuple((float(q["quantile"]), float(q["value"])) for q in stats.get("quantiles", [])),
            bin_edges=tuple(float(bucket["upper_bound"]) for bucket in buckets[:-1]),
            bin_counts=tuple(int(bucket["count"]) for bucket in buckets),
        )


@dataclass(frozen=True)
class Baseline:
    features: tuple[FeatureBaseline, ...]
    label_name: str
    class_counts: dict[str, int]  # class_key -> training rows, in a stable order
    item_count: int
    reference_sample: np.ndarray  # (sample rows, features), NaN where a value was missing
    sample_seed: int
    bins: int

    @property
    def feature_names(self) -> list[str]:
        return [feature.name for feature in self.features]

    @property
    def width(self) -> int:
        return len(self.features)

    def statistics_dict(self) -> dict[str, Any]:
        """The content of ``baseline.json``: plain JSON (no NaN, no infinity)."""
        sample = [[None if math.isnan(v) else v for v in row] for row in self.reference_sample.tolist()]
        return {
            "version": 0,
            "mlops_baseline_format": FORMAT_VERSION,
            "dataset": {"item_count": self.item_count},
            "features": [feature.to_dict() for feature in self.features],
            "label": {
                "name": self.label_name,
                "inferred_type": "String",
                "string_statistics": {
                    "common": {"num_present": sum(self.class_counts.values()), "num_missing": 0},
                    "distinct_count": len(self.class_counts),
                    "distribution": {"categorical": {"buckets": [
                        {"value": key, "count": count} for key, count in self.class_counts.items()
                    ]}},
                },
            },
            "reference_sample": {"seed": self.sample_seed, "size": len(sample), "bins": self.bins,
                                 "rows": sample},
        }

    def constraints_dict(self, thresholds: DriftThresholds) -> dict[str, Any]:
        """The content of ``constraints.json``: per-feature constraints and the thresholds in force."""
        limits = thresholds.to_dict()
        return {
            "version": 0,
            "features": [
                {
                    "name": feature.name,
                    "inferred_type": feature.inferred_type,
                    "completeness": 1.0 - feature.missing_rate,
                    "num_constraints": {"is_non_negative": feature.min is not None and feature.min >= 0},
                }
                for feature in self.features
            ],
            "monitoring_config": {
                "evaluate_constraints": "Enabled",
                "emit_metrics": "Disabled",  # no CloudWatch here: the monitor writes a JSON report
                "distribution_constraints": {
                    "perform_comparison": "Enabled",
                    # Deviation: SageMaker's methods are "Simple" or "Robust" on an L-infinity
                    # distance; ours is PSI as an effect-size floor plus a KS test under Holm.
                    "comparison_method": "PSI+KS-Holm",
                    "comparison_threshold": limits["drift_psi_threshold"],
                    "categorical_drift_method": "ChiSquared",
                    "categorical_comparison_threshold": limits["drift_prediction_threshold"],
                },
                "thresholds": limits,
            },
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Baseline:
        """Read back what ``statistics_dict`` wrote; raises KeyError/ValueError/TypeError on anything else."""
        features = tuple(FeatureBaseline.from_dict(entry) for entry in data["features"])
        label = data["label"]
        buckets = label["string_statistics"]["distribution"]["categorical"]["buckets"]
        sample = data["reference_sample"]
        rows = sample["rows"]
        matrix = np.array([[np.nan if v is None else float(v) for v in row] for row in rows], dtype=np.float64)
        matrix = matrix.reshape(len(rows), len(features))
        for feature in features:
            if len(feature.bin_counts) != len(feature.bin_edges) + 1:
                raise ValueError(f"feature {feature.name!r}: buckets do not fit together")
        return cls(
            features=features,
            label_name=str(label["name"]),
            class_counts={str(bucket["value"]): int(bucket["count"]) for bucket in buckets},
            item_count=int(data["dataset"]["item_count"]),
            reference_sample=matrix,
            sample_seed=int(sample["seed"]),
            bins=int(sample.get("bins", DEFAULT_BINS)),
        )


def compute_baseline(
    features: pd.DataFrame,
    labels: pd.Series,
    bins: int = DEFAULT_BINS,
    sample_size: int = DEFAULT_SAMPLE_SIZE,
    seed: int = DEFAULT_SAMPLE_SEED,
) -> Baseline:
    """Statistics of the training rows: one sort per column gives the quantiles, the bucket
    counts, the minimum and the maximum (bench/monitor_false_alarms.py times a million rows
    of twenty features against pandas' ``describe()``, which computes less)."""
    if bins < 2:
        raise ValueError(f"bins={bins}: expected at least 2")
    if sample_size < 1:
        raise ValueError(f"sample_size={sample_size}: expected at least 1")
    if len(features) != len(labels):
        raise ValueError(f"{len(features)} feature rows but {len(labels)} labels")
    matrix = features.to_numpy(dtype=np.float64)
    if matrix.ndim != 2 or matrix.shape[0] == 0:
        raise ValueError("no training rows to compute a baseline from")
    n_rows = matrix.shape[0]
    edge_levels = [i / bins for i in range(1, bins)]
    levels = sorted(set(edge_levels) | set(QUANTILES))
    feature_stats = []
    for index, name in enumerate(features.columns):
        column = matrix[:, index]
        missing_mask = np.isnan(column)
        missing = int(missing_mask.sum())
        present = column[~missing_mask] if missing else column
        if np.isinf(present).any():
            raise ValueError(f"feature {name!r} has an infinite value")
        feature_stats.append(_feature_baseline(str(name), present, n_rows, missing, levels, edge_levels))
    generator = np.random.default_rng(seed)
    chosen = np.sort(generator.choice(n_rows, size=min(n_rows, sample_size), replace=False))
    class_counts: dict[str, int] = {}
    for value, count in pd.Series(labels).value_counts(sort=False, dropna=False).items():
        key = class_key(value)  # per distinct value: 1 and 1.0 are one class
        class_counts[key] = class_counts.get(key, 0) + int(count)
    ordered = dict(sorted(class_counts.items(), key=_class_order))
    return Baseline(
        features=tuple(feature_stats),
        label_name=str(labels.name) if labels.name is not None else "label",
        class_counts=ordered,
        item_count=n_rows,
        reference_sample=np.ascontiguousarray(matrix[chosen]),
        sample_seed=seed,
        bins=bins,
    )


def _feature_baseline(name: str, present: np.ndarray, n_rows: int, missing: int, levels: list[float],
                      edge_levels: list[float]) -> FeatureBaseline:
    if present.size == 0:
        return FeatureBaseline(name, "Fractional", n_rows, missing, 0.0, None, None, None, None, (), (), (0,))
    ordered = np.sort(present)  # one sort serves the quantiles, the bucket counts, min and max
    by_level = dict(zip(levels, np.quantile(ordered, levels).tolist()))
    # Ties (a feature with few distinct values) give equal deciles: one edge each.
    edges = np.unique(np.array([by_level[level] for level in edge_levels]))
    # Bucket i holds edges[i-1] <= x < edges[i], as searchsorted(edges, x, side="right") says.
    below = np.searchsorted(ordered, edges, side="left")
    counts = np.diff(np.concatenate([[0], below, [ordered.size]]))
    integral = bool(np.all(np.floor(ordered) == ordered))
    return FeatureBaseline(
        name=name,
        inferred_type="Integral" if integral else "Fractional",
        count=n_rows,
        missing=missing,
        sum=float(ordered.sum()),
        mean=float(ordered.mean()),
        std=float(ordered.std(ddof=1)) if ordered.size > 1 else 0.0,
        min=float(ordered[0]),
        max=float(ordered[-1]),
        quantiles=tuple((q, by_level[q]) for q in QUANTILES),
        bin_edges=tuple(float(edge) for edge in edges),
        bin_counts=tuple(int(count) for count in counts),
    )


def _class_order(item: tuple[str, int]) -> tuple[int, float, str]:
    """Numeric classes in numeric order, then the others alphabetically."""
    key = item[0]
    try:
        return (0, float(key), key)
    except ValueError:
        return (1, 0.0, key)


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)


def write_baseline(directory: Path, baseline: Baseline, thresholds: DriftThresholds) -> dict[str, str]:
    """Write ``baseline.json`` and ``constraints.json`` into a training job's directory
    (each atomically) and return their sha256 digests, for the job's manifest."""
    digests = {}
    for name, content in ((BASELINE_FILE, baseline.statistics_dict()),
                          (CONSTRAINTS_FILE, baseline.constraints_dict(thresholds))):
        digests[name] = write_recorded(Path(directory) / name, json.dumps(content, indent=1, allow_nan=False))
    return digests


def read_baseline(path: Path, sha256: str | None = None) -> Baseline:
    """A stored baseline, refused with one line naming the file when it is missing, altered
    (``sha256`` given and different) or not a baseline."""
    path = Path(path)
    try:
        data = path.read_bytes() if sha256 is None else read_verified(path, sha256)
    except FileNotFoundError:
        raise PipelineError(f"baseline {str(path)!r} not found: the training job predates monitoring "
                            f"or its files were removed; retrain to create one") from None
    except FileChanged:
        raise PipelineError(f"baseline {str(path)!r} does not match the sha256 recorded at training: "
                            f"refusing to compare against it") from None
    try:
        return Baseline.from_dict(json.loads(data))
    except (ValueError, KeyError, TypeError, AttributeError, IndexError, OverflowError, RecursionError) as err:
        detail = " ".join(str(err).split())[:200]
        raise PipelineError(f"baseline {str(path)!r} is not a readable baseline: {type(err).__name__}: {detail}") \
            from None
