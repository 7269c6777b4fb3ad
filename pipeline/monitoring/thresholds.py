"""The monitor's settings (``DriftThresholds``): the config keys that decide when traffic has drifted.

Written into every training job's ``constraints.json`` beside its baseline and read back from the config.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any


@dataclass(frozen=True)
class DriftThresholds:
    """The monitor's settings, named as the config keys that carry them."""

    monitor_min_rows: int = 100  # fewer captured rows than this: insufficient_data
    drift_alpha: float = 0.05  # family-wise false-alarm rate of one monitor run (Holm over every test)
    drift_psi_threshold: float = 0.1  # a distribution move counts from this PSI on (0.1: "moderate")
    drift_missing_rate_threshold: float = 0.05  # a missing-value rate change counts from this much
    drift_out_of_range_threshold: float = 0.05  # out-of-range values count from this share of the values
    drift_prediction_threshold: float = 0.1  # a predicted class's share must move this much (L-infinity)
    drift_wrong_width_threshold: float = 0.01  # more than this share of rows of the wrong width: a violation

    def __post_init__(self) -> None:
        if isinstance(self.monitor_min_rows, bool) or not isinstance(self.monitor_min_rows, int) \
                or self.monitor_min_rows < 1:
            raise ValueError(f"monitor_min_rows={self.monitor_min_rows!r}: expected a whole number of at least 1")
        if not 0.0 < self.drift_alpha < 1.0:
            raise ValueError(f"drift_alpha={self.drift_alpha!r}: expected a probability between 0 and 1, exclusive")
        if not (self.drift_psi_threshold >= 0.0 and math.isfinite(self.drift_psi_threshold)):
            raise ValueError(f"drift_psi_threshold={self.drift_psi_threshold!r}: expected a number of at least 0")
        for name in ("drift_missing_rate_threshold", "drift_out_of_range_threshold",
                     "drift_prediction_threshold", "drift_wrong_width_threshold"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name}={value!r}: expected a share between 0 and 1")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> DriftThresholds:
        """From a config (or a ``constraints.json``'s ``thresholds``): known keys only."""
        names = {f.name for f in fields(cls)}
        return cls(**{key: values[key] for key in names if key in values})
