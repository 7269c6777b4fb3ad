"""The results JSON has the documented shape: the example in docs/RESULTS_AND_REPORTS.md, key for key."""
from __future__ import annotations

import json
import re

from tests.conftest import REPO, SharedRun

# Maps whose keys are data (metric names, check names, config keys), not the document's structure.
_OPEN = {"evaluation_results", "config", "config_sources", "checks", "data_fingerprint"}


def _structure(value, path: str = "") -> set[str]:
    keys = set()
    if isinstance(value, dict):
        for key, item in value.items():
            keys.add(f"{path}{key}")
            if key not in _OPEN:
                keys |= _structure(item, f"{path}{key}.")
    return keys


def _documented_example() -> dict:
    page = (REPO / "docs" / "RESULTS_AND_REPORTS.md").read_text()
    section = page[page.index("## Results JSON"):]
    return json.loads(re.search(r"```json\n(.*?)```", section, re.S).group(1))


def test_a_default_run_writes_exactly_the_keys_of_the_documented_example(default_run: SharedRun):
    assert _structure(default_run.results) == _structure(_documented_example())


def test_a_run_that_stops_at_the_gate_keeps_every_top_level_and_summary_key(pipeline):
    assert pipeline("--accuracy-threshold", "1.0", "--minimum-accuracy", "0.5", "--set",
                    "gate_metric=cv_mean_accuracy").exit_code == 3
    results, example = pipeline.results(), _documented_example()
    assert set(results) == set(example) - {"reconciled"}
    assert set(results["summary"]) == set(example["summary"])
    assert results["pipeline_status"] in ("held", "rejected") and results["phases"].keys() == {"training"}
