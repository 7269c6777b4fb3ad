"""The HTML run report: what a person opening a run's report.html reads, through the real CLI, and what a
real browser (headless Chromium) draws of it."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from pipeline.reporting.html_report import render_report, report_path
from pipeline.reporting.results import Results
from pipeline.reporting.run_story import verdict_of
from tests.conftest import Pipeline, stop_servers_under, train_job
from tests.served_models import ServedDifferentlyPipeline


# --------------------------------------------------------------------------- reading a page
class Page(HTMLParser):
    """The page as a person sees it: its text (tags stripped, entities decoded), plus every URL it would load."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.html = html
        self.chunks: list[str] = []
        self.loads: list[str] = []  # src, href, xlink:href, srcset, url(...) in attributes
        self.tags: list[str] = []
        self.feed(html)
        self.text = re.sub(r"\s+", " ", " ".join(self.chunks)).strip()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        for name, value in attrs:
            if name in ("src", "href", "xlink:href", "srcset", "action", "poster", "data") and value:
                self.loads.append(value)
            if value and "url(" in value:
                self.loads.append(value)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)

    def handle_data(self, data: str) -> None:
        if self.tags[-1:] not in (["style"], ["script"]):
            self.chunks.append(data)

    def section(self, section_id: str) -> str:
        """The text of one ``<section id=...>``."""
        match = re.search(rf'<section[^>]*id="{section_id}".*?</section>', self.html, re.S)
        assert match, f"no section {section_id!r}"
        return Page(match.group(0)).text


def assert_self_contained(page: Page) -> None:
    """Opens from a file or a GitLab artifact with no network: nothing loaded from anywhere."""
    inline = ("#", "url(#", "data:")  # a fragment of this page, or data inside it
    external = [url for url in page.loads if not url.startswith(inline)]
    assert external == [], external
    assert "<script" not in page.html and "<iframe" not in page.html and "<link" not in page.html
    assert "@import" not in page.html
    # the endpoint URL is shown as text, never as a link
    assert not re.search(r"<a\b", page.html)


def report_of(results: dict[str, Any], store: Path) -> Page:
    path = report_path(store, results["run_id"])
    assert path.is_file(), f"no report at {path}"
    assert not list(path.parent.glob(".*.tmp"))  # written atomically
    return Page(path.read_text())


def number(value: float, digits: int = 4) -> str:
    """How the page writes a number (4 decimals unless said otherwise, trailing zeros dropped)."""
    return f"{value:.{digits}f}".rstrip("0").rstrip(".")


# --------------------------------------------------------------------------- one deployed run, read twice
@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict[str, Any], Path, Path]]:
    """A default run through the CLI (deployed), with --report-html: its results, its store, its copy."""
    from pipeline.config import ENV_VARS

    root = tmp_path_factory.mktemp("deployed")
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.chdir(root)
        for name in [*ENV_VARS, "SMTP_HOST", "MLOPS_ENDPOINT_TOKEN"]:
            monkeypatch.delenv(name, raising=False)
        pipeline = Pipeline(root)
        try:
            result = pipeline("--report-html", str(root / "artifacts" / "report.html"))
            assert result.exit_code == 0, result.output
            results = pipeline.results()
        finally:
            stop_servers_under(root)
    yield results, root / ".mlops", root / "artifacts" / "report.html"


def test_deployed_run_report_says_deployed_first_then_the_numbers(deployed):
    results, store, copy = deployed
    page = report_of(results, store)
    assert copy.read_text() == page.html  # --report-html is the same page
    verdict = page.section("verdict")
    version = results["phases"]["deployment"]["deployment_results"]["version"]
    assert verdict.startswith(f"Deployed {version} now serves at endpoint iris-model")
    assert page.html.index('id="verdict"') < page.html.index('id="gate"') < page.html.index('id="endpoint-tests"')
    assert f"<title>Deployed - MLOps run {results['run_id']}</title>" in page.html
    gate = results["gate"]
    gate_text = page.section("gate")
    assert "Gate: deploy" in gate_text
    assert f"value {number(gate['value'])}" in gate_text
    assert f"95% interval {number(gate['interval'][0])} - {number(gate['interval'][1])}" in gate_text
    assert "threshold (deploy at or above) 0.95" in gate_text and "minimum (reject below) 0.9" in gate_text
    assert gate["reason"] in gate_text
    assert results["summary"]["endpoint_url"] in verdict  # as text


def test_deployed_run_report_shows_the_model_and_the_endpoint_tests(deployed):
    results, store, _ = deployed
    page = report_of(results, store)
    evaluation = results["phases"]["training"]["evaluation_results"]
    model = page.section("model")
    assert f"cross-validated accuracy {number(evaluation['cv_mean_accuracy'])}" in model
    for label, scores in evaluation["classification_report"].items():
        if label not in ("accuracy", "macro avg", "weighted avg"):
            assert f"{label} {number(scores['precision'])} {number(scores['recall'])}" in model
    performance = results["phases"]["testing"]["checks"]["performance"]
    tests = page.section("endpoint-tests")
    assert "Endpoint tests: passed" in tests
    assert (f"p95 {number(performance['p95_latency_ms'], 2)} ms" in tests
            and f"{number(performance['throughput_rps'], 1)} requests/s" in tests)
    assert "parity: 0 of 30 predictions differ from the offline model" in tests
    # the latency histogram is kept as bins, not samples, and counts every request
    histogram = performance["latency_histogram"]
    assert sum(histogram["counts"]) == performance["requests"] == 40
    assert len(histogram["edges_ms"]) == len(histogram["counts"]) + 1 <= 30
    # the two charts, inline SVG; the confusion matrix a table
    for chart in ("gate-chart", "latency-chart"):
        assert re.search(rf'id="{chart}"><svg', page.html), chart
    assert page.html.count("<svg") == 2 and "<img" not in page.html
    assert 'id="confusion-matrix"' in page.html
    assert_self_contained(page)


def test_deployed_run_report_has_the_timeline_with_times(deployed):
    results, store, _ = deployed
    timeline = report_of(results, store).section("timeline")
    version = results["phases"]["deployment"]["deployment_results"]["version"]
    steps = ["run started", "trained", "gate: deploy", f"staged {version} (the endpoint's first version)",
             "endpoint started", "endpoint tests started", "endpoint tests passed", f"switched {version} serves",
             "run finished success, exit code 0"]
    positions = [timeline.find(step) for step in steps]
    assert -1 not in positions, list(zip(steps, positions))
    assert positions == sorted(positions)  # in the order they happened
    assert re.search(r"\+0\.00 s \d\d:\d\d:\d\d\.\d{3} run started", timeline)
    seconds = [float(value) for value in re.findall(r"\+(\d+\.\d\d) s", timeline)]
    assert seconds == sorted(seconds) and seconds[-1] > 0


def test_held_run_report_says_held_and_why_with_the_numbers(pipeline, workdir):
    result = pipeline("--accuracy-threshold", "1.0", "--minimum-accuracy", "0.5", "--set",
                      "gate_metric=cv_mean_accuracy")
    assert result.exit_code == 3
    results = pipeline.results()
    page = report_of(results, workdir / ".mlops")
    verdict = page.section("verdict")
    assert verdict.startswith(f"Held {results['gate']['reason']} Nothing was deployed.")
    assert "below the deploy threshold 100.00%" in verdict
    gate = page.section("gate")
    assert "Gate: held" in gate and "metric cv_mean_accuracy" in gate
    assert f"value {number(results['gate']['value'])}" in gate
    assert "threshold (deploy at or above) 1" in gate and "minimum (reject below) 0.5" in gate
    assert 'id="endpoint-tests"' not in page.html  # nothing was deployed, nothing tested
    assert page.html.count("<svg") == 1 and 'id="confusion-matrix"' in page.html  # the gate chart; the matrix
    timeline = page.section("timeline")
    assert "gate: held" in timeline and "staged" not in timeline
    assert "run finished held, exit code 3" in timeline
    assert_self_contained(page)


def test_rolled_back_run_report_says_rolled_back_and_what_serves(pipeline, workdir):
    assert pipeline().exit_code == 0  # a good version serves
    first = pipeline.results()["summary"]["endpoint_version"]
    job = train_job(workdir, ServedDifferentlyPipeline)  # predicts differently once served
    result = pipeline("--mode", "deployment", "--training-job", job, "--set", "champion_policy=off",
                      "--report-html", str(workdir / "report.html"))
    assert result.exit_code == 1
    results = pipeline.results()
    page = report_of(results, workdir / ".mlops")
    assert (workdir / "report.html").read_text() == page.html
    version = results["phases"]["deployment"]["deployment_results"]["version"]
    verdict = page.section("verdict")
    assert verdict.startswith("Rolled back prediction_accuracy: 30 of 30 predictions differ from the offline model")
    assert f"{version} was not kept (kept_previous): the previous version {first} never stopped serving" in verdict
    assert f"serving now {first}" in verdict
    tests = page.section("endpoint-tests")
    assert "Endpoint tests: failed" in tests and "prediction_accuracy failed" in tests
    timeline = page.section("timeline")
    assert f"staged {version} (replacing {first})" in timeline
    assert timeline.index("endpoint tests failed") < timeline.index(f"rolled back before the switch; {first} kept "
                                                                    f"serving")
    assert "switched" not in timeline
    assert_self_contained(page)


@pytest.mark.unit
def test_a_run_that_fails_still_writes_its_report_with_the_error(pipeline, workdir):
    result = pipeline("--mode", "testing", "--endpoint-name", "nope")
    assert result.exit_code == 2
    results = pipeline.results()
    verdict = report_of(results, workdir / ".mlops").section("verdict")
    assert verdict.startswith("Failed endpoint 'nope' not found")


@pytest.mark.unit
def test_the_console_summary_says_where_the_run_report_is(pipeline, workdir):
    result = pipeline("--mode", "training")
    assert result.exit_code == 0
    page = report_path(workdir / ".mlops", pipeline.results()["run_id"])
    assert f"Run report: {page}" in result.output and page.is_file()


@pytest.mark.unit
def test_a_report_that_cannot_be_written_is_an_error_line_and_the_run_keeps_its_verdict(pipeline, workdir):
    # Writable when checked before the run; the run itself makes state.db a file, so the copy fails at the end.
    unwritable = workdir / ".mlops" / "state.db" / "report.html"
    result = pipeline("--mode", "training", "--report-html", str(unwritable))
    assert result.exit_code == 0
    assert f"report not written: --report-html {str(unwritable)!r}: cannot write" in result.stderr
    assert report_of(pipeline.results(), workdir / ".mlops").text  # the store's copy is written all the same


@pytest.mark.unit
@pytest.mark.parametrize(("args", "message"), [
    (["--report-html", "pipeline_config.json/report.html"], "'pipeline_config.json' is not a directory"),
    (["--report-html", "same.json", "--output-file", "same.json"], "and --report-html are the same file"),
])
def test_report_html_is_checked_before_the_run(workdir, args, message):
    from click.testing import CliRunner

    from pipeline.cli import cli

    (workdir / "pipeline_config.json").write_text("{}")  # a file, where a directory would be needed
    result = CliRunner().invoke(cli, ["--log-file", str(workdir / "log"), *args])
    assert result.exit_code == 2 and message in result.stderr
    assert not (workdir / ".mlops").exists()  # nothing ran


@pytest.mark.unit
def test_report_html_before_a_subcommand_is_refused(workdir):
    from click.testing import CliRunner

    from pipeline.cli import cli

    result = CliRunner().invoke(cli, ["--report-html", "r.html", "status"])
    assert result.exit_code == 2
    assert "--report-html is an option of a pipeline run, not of `status`" in result.stderr


# --------------------------------------------------------------------------- the page, from given results
def _results(**changes: Any) -> Results:
    document: dict[str, Any] = {
        "run_id": "20261126T030742Z-1a2b3c4d", "mode": "full", "backend": "local", "pipeline_status": "held",
        "exit_code": 3, "started_at": "2026-11-26T03:07:42+00:00",
        "summary": {"training_accuracy": 0.9333, "training_job": "iris-classifier-20261126-030742"},
        "phases": {"training": {"evaluation_results": {
            "accuracy": 0.9333, "confusion_matrix": [[10, 0], [2, 18]], "confusion_matrix_labels": ["a", "b"],
            "classification_report": {"a": {"precision": 0.8333, "recall": 1.0, "f1-score": 0.9091, "support": 10},
                                      "b": {"precision": 1.0, "recall": 0.9, "f1-score": 0.9474, "support": 20}}}}},
        "gate": {"decision": "held", "metric": "accuracy", "value": 0.9333, "threshold": 0.95, "minimum": 0.9,
                 "interval": [0.7868, 0.9815], "reason": "accuracy 93.33% is below the deploy threshold 95.00%"},
        "notifications": [{"channel": "slack", "event": "gate_decision", "delivered": True, "attempts": 1,
                           "error": None},
                          {"channel": "email", "event": "gate_decision", "delivered": False, "attempts": 3,
                           "error": "timed out"}],
    }
    document.update(changes)
    return Results.model_validate(document)


@pytest.mark.unit
def test_every_value_is_escaped():
    hostile = '<script>alert("x")</script><img src=http://evil.example/x.png>'
    champion = {"status": "compared", "version": hostile, "metric": "accuracy", "champion_value": 0.9}
    results = _results(summary={"training_job": hostile},
                       gate={**_results().gate.model_dump(), "reason": hostile, "champion": champion},
                       phases={"training": {"evaluation_results": {
                           "confusion_matrix": [[1, 0], [0, 1]], "confusion_matrix_labels": [hostile, "$x^2$"],
                           "classification_report": {hostile: {"precision": 1.0, "recall": 1.0}}}}})
    html = render_report(results)
    assert "<script" not in html and "<img" not in html
    assert "&lt;script&gt;alert(" in html  # shown, as text
    chart = re.search(r'id="gate-chart">(.*?)</div>', html, re.S)
    assert chart and "0.9 (&lt;script&gt;alert(" in chart.group(1)  # in the chart too, as text
    assert_self_contained(Page(html))
    assert "$x^2$" in Page(html).text or "$x^2$" in html  # a label is a label, not mathtext


@pytest.mark.unit
def test_champion_comparison_is_shown_when_the_gate_has_one():
    champion = {"status": "compared", "reason": "the candidate is right on 4 rows the champion gets wrong",
                "version": "iris-model-20261125-120000", "metric": "accuracy", "champion_value": 0.9,
                "candidate_value": 0.9333, "rows_compared": 30, "rows_excluded": 0, "candidate_only_correct": 4,
                "champion_only_correct": 1, "p_value": 0.375, "difference": 0.0333,
                "difference_interval": [-0.05, 0.12]}
    page = Page(render_report(_results(gate={**_results().gate.model_dump(), "champion": champion})))
    text = page.section("gate")
    assert "Champion comparison: compared" in text and champion["reason"] in text
    for fragment in ("champion version iris-model-20261125-120000", "champion 0.9", "candidate 0.9333",
                     "p-value 0.375", "rows compared 30", "rows only the candidate got right 4",
                     "rows only the champion got right 1", "95% interval of the difference [-0.05, 0.12]"):
        assert fragment in text, fragment
    assert "Champion comparison" not in Page(render_report(_results())).text


@pytest.mark.unit
def test_the_gate_chart_labels_the_champions_row_short_and_names_its_version_beside_the_point():
    champion = {"status": "compared", "version": "a-long-endpoint-name-model-20261125-120000", "metric": "accuracy",
                "champion_value": 0.9}
    page = Page(render_report(_results(gate={**_results().gate.model_dump(), "champion": champion})))
    chart = re.search(r'<div class="chart wide" id="gate-chart">(.*?)</div>', page.html, re.S)
    assert chart, "no gate chart"
    labels = [Page(text).text for text in re.findall(r"<text\b.*?</text>", chart.group(1), re.S)]
    assert "champion" in labels and "candidate" in labels  # row labels short enough for the margin
    assert "0.9 (a-long-endpoint-name-model-20261125-120000)" in labels


@pytest.mark.unit
def test_the_confusion_matrix_is_a_table_of_true_by_predicted_counts_shaded_by_count():
    page = Page(render_report(_results()))  # [[10, 0], [2, 18]] for classes a and b
    table = re.search(r'<table id="confusion-matrix".*?</table>', page.html, re.S)
    assert table, "no confusion matrix"
    assert "true \\ predicted a b a 10 0 b 2 18" in Page(table.group(0)).text
    shades = re.findall(r'background: (#[0-9a-f]{6}); color: (#[0-9a-f]+)">(\d+)<', table.group(0))
    by_count = {int(count): (background, colour) for background, colour, count in shades}
    assert by_count[18] == ("#08306b", "#fff") and by_count[0] == ("#f7fbff", "#1f2328")
    assert by_count[2][0] not in ("#08306b", "#f7fbff") and by_count[10][1] == "#fff"  # in between; over half


@pytest.mark.unit
def test_the_latency_chart_marks_the_percentiles_on_a_log_axis_in_ms():
    page = Page(render_report(_deployed_results()))
    chart = re.search(r'id="latency-chart">(.*?)</div>', page.html, re.S)
    assert chart, "no latency chart"
    texts = [Page(text).text for text in re.findall(r"<text\b.*?</text>", chart.group(1), re.S)]
    assert {"p50 1.5 ms", "p95 4 ms", "p99 9 ms"} <= set(texts)
    assert {"1", "2", "5", "10"} <= set(texts)  # ticks in ms on log10 positions
    assert "latency per request (ms, log scale)" in texts


def _deployed_results() -> Results:
    """A run whose endpoint tests sent 40 requests, between 1 and 20 ms."""
    edges = [round(10 ** (index / 8), 4) for index in range(12)]  # 1 ms to ~20 ms, equal steps on a log scale
    performance = {"passed": True, "requests": 40, "concurrency": 2, "success_rate": 1.0, "avg_latency_ms": 3.0,
                   "p50_latency_ms": 1.5, "p95_latency_ms": 4.0, "p99_latency_ms": 9.0, "throughput_rps": 300.0,
                   "latency_histogram": {"edges_ms": edges, "counts": [2, 6, 9, 8, 5, 3, 2, 2, 1, 1, 1]}}
    base = _results()
    return _results(pipeline_status="success", exit_code=0,
                    phases={**base.phases.model_dump(), "testing": {"overall_status": "passed",
                                                                    "checks": {"performance": performance}}})


@pytest.mark.unit
def test_notifications_delivered_and_not():
    text = Page(render_report(_results())).section("notifications")
    assert "gate_decision slack yes 1" in text and "gate_decision email no 3 timed out" in text


@pytest.mark.unit
def test_same_results_same_page():
    assert render_report(_results()) == render_report(_results())


@pytest.mark.unit
@pytest.mark.parametrize(("state", "headline", "detail"), [
    ("removed", "Rolled back", "it was the endpoint's first version, so the endpoint was removed"),
    ("rolled_back", "Rolled back", "the previous version v1 serves again"),
    ("rollback_failed", "Rollback failed", "the previous version could not be verified"),
    ("failed", "Deployed, tests failed", "stays serving: rollback_on_failure is off"),
])
def test_verdict_names_every_final_state(state, headline, detail):
    deployment = {"deployment_results": {"final_state": state, "version": "v2", "endpoint_name": "iris-model",
                                         "serving_version": "v2" if state == "failed" else
                                         (None if state in ("removed", "rollback_failed") else "v1")}}
    results = _results(pipeline_status="failed", exit_code=1, phases={"deployment": deployment},
                       rollback={"reason": "health: not healthy within 60s", "final_state": state},
                       gate={**_results().gate.model_dump(), "decision": "deploy"})
    verdict = verdict_of(results)
    assert verdict.headline == headline and verdict.tone == "bad"
    assert detail in verdict.detail
    assert (verdict.reason or "").startswith("health: not healthy within 60s")


@pytest.mark.unit
def test_verdict_of_a_refused_deployment_and_of_a_deployed_run_that_failed_after():
    refused = _results(mode="deployment", gate=None, pipeline_status="failed", exit_code=3,
                       error={"message": "training job 'j' was rejected by the gate when it was trained; a "
                                         "rejected model is never deployed", "exit_code": 3})
    assert verdict_of(refused).headline == "Not deployed" and "rejected" in verdict_of(refused).reason
    deployment = {"deployment_results": {"final_state": "deployed", "version": "v2", "endpoint_name": "iris-model"}}
    strict = _results(pipeline_status="failed", exit_code=1, phases={"deployment": deployment},
                      error={"message": "a notification was not delivered and notify_strict is on", "exit_code": 1})
    verdict = verdict_of(strict)
    assert (verdict.headline, verdict.tone) == ("Deployed, run failed", "bad")
    assert verdict.reason.startswith("a notification was not delivered")


@pytest.mark.unit
def test_latency_histogram_counts_every_request_on_log_bins():
    import numpy as np

    from pipeline.testing import latency_histogram

    latencies = np.concatenate([np.full(150, 4.0), np.full(45, 12.0), [90.0] * 5])
    histogram = latency_histogram(latencies)
    assert sum(histogram["counts"]) == 200 and len(histogram["counts"]) == 24
    assert histogram["edges_ms"][0] == 4.0 and histogram["edges_ms"][-1] == 90.0
    ratios = np.diff(np.log(histogram["edges_ms"]))
    assert np.allclose(ratios, ratios[0], rtol=1e-3)  # equal widths on a log scale
    assert latency_histogram(np.full(10, 5.0)) == {"edges_ms": [4.5, 5.5], "counts": [10]}
    assert latency_histogram(np.array([])) == {"edges_ms": [], "counts": []}


# --------------------------------------------------------------------------- in a real browser
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed (Debian: apt-get install chromium)")
def test_chromium_renders_the_deployed_report(deployed, tmp_path):
    import numpy as np
    from PIL import Image

    results, store, _ = deployed
    page = report_path(store, results["run_id"])
    screenshot = tmp_path / "report.png"
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={screenshot}", "--window-size=1200,2600",
               "--hide-scrollbars", page.as_uri()]
    env = {**os.environ, "HOME": str(tmp_path)}
    finished = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
    assert screenshot.is_file(), finished.stderr[-2000:]
    assert screenshot.stat().st_size > 30_000  # a page with text and charts, not an error page
    with Image.open(screenshot) as image:
        pixels = np.asarray(image.convert("RGB"), dtype=float) / 255
    assert pixels.shape[:2] == (2600, 1200)
    # The verdict's green (#1a7f37): the headline and the bar beside it, at the top
    assert _pixels_near(pixels, "#1a7f37")[:300].sum() > 2_000, "no green verdict at the top of the page"
    # The confusion matrix's fullest cell (#08306b, one table cell) and the latency histogram's bars (#8db4e2)
    for colour, what, least in (("#08306b", "confusion matrix", 1_000), ("#8db4e2", "latency histogram", 5_000)):
        assert _pixels_near(pixels, colour)[300:].sum() > least, f"no {what} drawn"
    distinct = len({tuple(row) for row in (pixels[::7, ::7] * 255).astype(int).reshape(-1, 3).tolist()})
    assert distinct > 50  # not a blank or single-colour image


def _pixels_near(pixels: Any, colour: str, tolerance: float = 0.06) -> Any:
    import numpy as np

    rgb = np.array([int(colour[i:i + 2], 16) / 255 for i in (1, 3, 5)])
    return (np.abs(pixels - rgb) < tolerance).all(axis=-1)
