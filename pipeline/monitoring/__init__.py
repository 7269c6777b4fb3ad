"""Model monitoring: what a model saw at training, what it sees live, and whether they differ.

- ``baseline``: per-feature statistics, decile buckets, the class distribution and a
  reference sample of the training rows, written as ``baseline.json`` (close to SageMaker
  Model Monitor's ``statistics.json``) with the thresholds in ``constraints.json``.
- ``capture``: one definition of a captured request (SageMaker's capture record shape),
  for the endpoint that writes it and the monitor that reads it back.
- ``drift``: live rows against the baseline, feature by feature, with the family-wise
  false-alarm rate of a whole monitor run held at ``drift_alpha``.
- ``quality``: captured predictions merged with labels that arrive later.

They take no config, store or CLI; ``baseline``, ``capture`` and ``quality`` read and write their own files.
``monitor`` and ``monitor_run`` are the ``monitor`` command's driver. See docs/MONITORING.md.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# Names are loaded on first use (PEP 562): the endpoint's workers import ``capture`` alone, and
# must not pay for scipy, which ``drift`` and ``baseline`` import, in their start-up time and memory.
_MODULE_OF = {
    **dict.fromkeys(("Baseline", "FeatureBaseline", "class_key", "compute_baseline", "read_baseline",
                     "write_baseline"), "baseline"),
    **dict.fromkeys(("CaptureRecords", "DecodedRecord", "capture_hour_directory", "capture_line", "capture_record",
                     "decode_rows", "iter_capture_records", "prediction_keys"), "capture"),
    **dict.fromkeys(("DriftReport", "LiveTraffic", "detect_drift"), "drift"),
    "DriftThresholds": "thresholds",
    **dict.fromkeys(("QualityReport", "live_quality", "read_labels"), "quality"),
}

if TYPE_CHECKING:
    from pipeline.monitoring.baseline import (
        Baseline,
        FeatureBaseline,
        class_key,
        compute_baseline,
        read_baseline,
        write_baseline,
    )
    from pipeline.monitoring.capture import (
        CaptureRecords,
        DecodedRecord,
        capture_hour_directory,
        capture_line,
        capture_record,
        decode_rows,
        iter_capture_records,
        prediction_keys,
    )
    from pipeline.monitoring.drift import DriftReport, LiveTraffic, detect_drift
    from pipeline.monitoring.quality import QualityReport, live_quality, read_labels
    from pipeline.monitoring.thresholds import DriftThresholds


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


__all__ = [
    "Baseline",
    "CaptureRecords",
    "DecodedRecord",
    "DriftReport",
    "DriftThresholds",
    "FeatureBaseline",
    "LiveTraffic",
    "QualityReport",
    "capture_hour_directory",
    "capture_line",
    "capture_record",
    "class_key",
    "compute_baseline",
    "decode_rows",
    "detect_drift",
    "iter_capture_records",
    "live_quality",
    "prediction_keys",
    "read_baseline",
    "read_labels",
    "write_baseline",
]
