"""The run report for people: one self-contained HTML page per run.

CI machines read the dotenv, JUnit and metrics reports (``reports.py``); a person who opens a job's
artifacts, or ``.mlops/runs/<run_id>/report.html`` on the runner, wants the verdict in plain words
and the evidence behind it. The page is drawn from the typed results (``Results``) and the run's
events in the audit trail (their times make the deployment timeline), in this order: the verdict
and why; the gate (the metric, its interval against the threshold and minimum, the champion
comparison when the decision has one); the model's confusion matrix and per-class precision and
recall; the endpoint tests (latency histogram, percentiles, throughput, parity); the timeline; the
notifications delivered.

Self-contained, so it opens from a file or as a GitLab artifact with no network: the styles are
inline, the charts are inline SVG drawn by pygal, and the page loads nothing (no script: pygal's
tooltips are switched off; no external ``src``/``href``; the endpoint URL is shown as text). Every value
is escaped by the template engine (jinja2 with autoescape); only the SVG that pygal wrote goes in as
markup, and pygal builds it with ElementTree, which escapes the text it puts there. The confusion
matrix is a table with shaded cells: every count stays readable and copyable at any number of classes.

pygal is imported when the page is drawn, at the end of a run, never by ``status`` or ``history``.
pygal rather than matplotlib: matplotlib's import alone (0.5-0.8 s of CPU) is more than the report's whole
budget of 0.5 s (docs/PERFORMANCE.md, "The HTML run report"). Chart ids are fixed and pygal's comments (which
carry the date) are dropped, so the same results give the same page.
"""
from __future__ import annotations

import functools
import logging
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jinja2 import Environment, Template, select_autoescape
from markupsafe import Markup

from pipeline.container.verified_files import write_atomically
from pipeline.redaction import scrub_known_secrets
from pipeline.reporting.page_values import details, extra, finite, number, text
from pipeline.reporting.results import Results
from pipeline.reporting.run_story import timeline, verdict_of

if TYPE_CHECKING:
    from pygal.graph.graph import Graph

log = logging.getLogger(__name__)

REPORT_FILENAME = "report.html"
# The champion comparison's fields (``gate.champion``; its ``status`` and ``reason`` head the table), in words.
CHAMPION_ROWS = (("version", "champion version"), ("metric", "metric"), ("champion_value", "champion"),
                 ("candidate_value", "candidate"), ("difference", "difference (candidate - champion)"),
                 ("difference_interval", "95% interval of the difference"), ("p_value", "p-value"),
                 ("rows_compared", "rows compared"), ("rows_excluded", "rows excluded"),
                 ("candidate_only_correct", "rows only the candidate got right"),
                 ("champion_only_correct", "rows only the champion got right"))
WIDE = 940  # pixels: about the width of a section at 100% zoom (the SVG scales down with the page)
CHART_TITLES = {"gate": "The gate: the metric against the threshold and the minimum",
                "latency": "Endpoint test latency per request"}
CELL_EMPTY, CELL_FULL = "#f7fbff", "#08306b"  # a confusion matrix cell at 0 and at the largest count
_CLASS_REPORT_SUMMARIES = ("accuracy", "macro avg", "weighted avg", "micro avg", "samples avg")
_COLOURS = {"good": "#1a7f37", "warn": "#9a6700", "bad": "#cf222e", "info": "#0969da", "muted": "#6e7781"}


def report_path(store_dir: str | os.PathLike[str], run_id: str) -> Path:
    """Where every run's report lives: ``<store_dir>/runs/<run_id>/report.html``."""
    return Path(store_dir).resolve() / "runs" / run_id / REPORT_FILENAME


def _import_plotting() -> Any:
    import pygal
    import pygal.style

    return pygal


# --------------------------------------------------------------------------- the verdict
# --------------------------------------------------------------------------- charts
def _charts(results: Results) -> dict[str, Markup]:
    """The page's figures as inline SVG: the gate and the latency histogram."""
    if results.gate is None and results.phases.testing is None:
        return {}  # nothing to draw: no reason to import the plotting library
    _import_plotting()
    charts: dict[str, Markup] = {}
    for name, draw in (("gate", _gate_chart), ("latency", _latency_chart)):
        chart = draw(results)
        if chart is not None:
            charts[name] = _svg(chart, name)
    return charts


def _chart(kind: str, colours: Sequence[str], height: int, **config: Any) -> Graph:
    """A pygal chart as the page wants every chart: no script (pygal's tooltips load one), nothing cut
    short, the page's colours and font, transparent on the section's white."""
    import pygal
    from pygal.style import Style

    style = Style(background="transparent", plot_background="transparent", foreground="#1f2328",
                  foreground_strong="#1f2328", foreground_subtle="#d0d7de", font_family="sans-serif",
                  label_font_size=12, major_label_font_size=12, legend_font_size=12, value_font_size=12,
                  value_label_font_size=12, title_font_size=13, colors=tuple(colours), opacity="1",
                  opacity_hover="1", transition="none")
    return getattr(pygal, kind)(js=[], disable_xml_declaration=True, pretty_print=False, width=WIDE,
                                height=height, style=style, truncate_label=-1, truncate_legend=-1,
                                show_x_guides=False, **config)


def _svg(chart: Graph, name: str) -> Markup:
    chart.uuid = name  # the SVG's id (chart-<name>) and its CSS scope: unique on the page, the same every time
    chart.add_xml_filter(functools.partial(_page_ready, title=CHART_TITLES[name]))
    return Markup(chart.render(is_unicode=True))


def _page_ready(root: Any, title: str) -> Any:
    """pygal's tree as the page takes it: without the script pygal always writes (its tooltips' config;
    the page runs no script) or its comments (one carries today's date), and titled for screen readers."""
    for parent in list(root.iter()):
        for child in list(parent):
            if callable(child.tag) or _local_name(child.tag) == "script":  # a comment's tag is a function
                parent.remove(child)
            elif _local_name(child.tag) == "title" and parent is root:
                child.text = title
    return root


def _local_name(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _gate_chart(results: Results) -> Graph | None:
    """The gate's metric (with its interval) and the champion's against the threshold and the minimum."""
    gate = results.gate
    if gate is None or not finite(gate.value, gate.threshold, gate.minimum):
        return None
    champion = _champion(results)
    champion_value = champion.get("champion_value") if champion else None
    points = [gate.value, gate.threshold, gate.minimum, *(gate.interval or []),
              *([champion_value] if finite(champion_value) else [])]
    low = max(0.0, min(points) - 0.05)
    high = min(1.0, max(points) + 0.02) if max(points) <= 1.0 else max(points) + 0.02
    interval = gate.interval if gate.interval and finite(*gate.interval) else None
    rows = [("candidate", gate.value, interval, _COLOURS[_gate_tone(gate.decision)],
             f"{number(gate.value)} (95% interval {number(interval[0])}-{number(interval[1])})" if interval
             else number(gate.value))]
    if finite(champion_value):
        # the version goes beside the point: as a row label it would crowd the margin
        version = champion.get("version")
        rows.append(("champion", champion_value, None, _COLOURS["muted"],
                     number(champion_value) + (f" ({version})" if version else "")))
    top = len(rows) + 0.6
    # pygal writes a point's label to its right and cannot measure text: widen the axis past the data so the
    # longest label fits (about 7 px a character, a plot about 800 px wide), with ticks only over the data.
    from pygal.util import compute_scale

    room = min(0.6, max(len(shown) for *_, shown in rows) * 7 / 800)
    right = max(high, *(low + (value - low) / (1 - room) for _, value, *_ in rows))
    ticks = [tick for tick in compute_scale(low, high, False, None, 4, 12) if low <= tick <= high + 1e-9]
    chart = _chart("XY", [colour for *_, colour, _ in rows] + ["#444", "#444"], 130 + 45 * len(rows),
                   xrange=(low, right), range=(0.4, top), show_legend=False, print_labels=True,
                   x_title=gate.metric, show_y_guides=False, dots_size=6, stroke_style={"width": 3},
                   x_labels=[round(tick, 6) for tick in ticks], x_value_formatter=number,
                   y_labels=[{"label": label, "value": len(rows) - index} for index, (label, *_) in enumerate(rows)])
    for index, (label, value, bounds, _, shown) in enumerate(rows):
        y = len(rows) - index
        point = {"value": (value, y), "label": shown}
        if bounds:  # one series: the interval as a line, a dot on the metric only
            series = [{"value": (bounds[0], y), "node": {"r": 0}}, point, {"value": (bounds[1], y), "node": {"r": 0}}]
        else:
            series = [point]
        chart.add(label, series, stroke=bounds is not None)
    for label, x, dashes in (("threshold", gate.threshold, "8,4"), ("minimum", gate.minimum, "2,3")):
        chart.add(label, [{"value": (x, 0.4), "node": {"r": 0}},
                          {"value": (x, top), "node": {"r": 0}, "label": f"{label} {number(x)}"}],
                  stroke_style={"width": 1.5, "dasharray": dashes})
    return chart


def _latency_chart(results: Results) -> Graph | None:
    """The endpoint test's latencies on log-spaced bins, with p50, p95 and p99 marked."""
    testing = results.phases.testing
    performance = testing.checks.get("performance") if testing else None
    histogram = (performance or {}).get("latency_histogram") or {}
    edges, counts = histogram.get("edges_ms"), histogram.get("counts")
    if not isinstance(edges, list) or not isinstance(counts, list) or len(edges) != len(counts) + 1 or not counts:
        return None
    if not finite(*edges, *counts) or edges[0] <= 0:
        return None
    # Drawn on log10(ms) with the ticks labelled in ms: a log axis, with bins of equal width as measured.
    logs = [math.log10(edge) for edge in edges]
    ticks = [tick for power in range(math.floor(logs[0]), math.ceil(logs[-1]) + 1) for tick in
             (10.0 ** power, 2 * 10.0 ** power, 5 * 10.0 ** power) if logs[0] <= math.log10(tick) <= logs[-1]]
    if len(ticks) < 2:
        ticks = [edges[0], edges[-1]]
    peak = max(max(counts), 1)
    step = max(1, math.ceil(peak / 5))  # requests come whole: integer ticks only
    markers = [(label, performance.get(key), colour) for key, label, colour in (
        ("p50_latency_ms", "p50", _COLOURS["good"]), ("p95_latency_ms", "p95", _COLOURS["warn"]),
        ("p99_latency_ms", "p99", _COLOURS["bad"]))]
    markers = [(label, value, colour) for label, value, colour in markers if finite(value) and value > 0]
    chart = _chart("Histogram", ["#8db4e2", *(colour for *_, colour in markers)], 300,
                   x_title="latency per request (ms, log scale)", y_title="requests", legend_at_bottom=True,
                   legend_at_bottom_columns=4, xrange=(logs[0], logs[-1]),
                   x_labels=[{"label": f"{tick:.3g}", "value": math.log10(tick)} for tick in ticks],
                   y_labels=list(range(0, peak + step, step)))
    chart.add("requests", [(count, logs[index], logs[index + 1]) for index, count in enumerate(counts)])
    width = (logs[-1] - logs[0]) / 300 or 0.001  # a marker is a bar one pixel or so wide
    for label, value, _ in markers:
        x = math.log10(value)
        chart.add(f"{label} {number(value, 2)} ms", [(peak, x - width, x + width)])
    return chart


def _confusion(results: Results) -> dict[str, Any] | None:
    """The confusion matrix as table rows (true class by predicted class), each cell shaded by its count."""
    evaluation = results.evaluation
    matrix = evaluation.get("confusion_matrix")
    if not isinstance(matrix, list) or not matrix or not all(isinstance(row, list) for row in matrix):
        return None
    labels = [str(label) for label in evaluation.get("confusion_matrix_labels") or range(len(matrix))]
    if len(labels) != len(matrix) or len(matrix) > 30:  # over 30: the per-class table still lists every class
        return None
    peak = max((count for row in matrix for count in row if finite(count)), default=0) or 1
    rows = []
    for label, row in zip(labels, matrix, strict=True):
        cells = []
        for count in row:
            share = min(1.0, max(0.0, count / peak)) if finite(count) else 0.0
            cells.append({"count": text(count), "background": _blend(CELL_EMPTY, CELL_FULL, share),
                          "colour": "#fff" if share > 0.5 else "#1f2328"})
        rows.append({"label": label, "cells": cells})
    return {"labels": labels, "rows": rows}


def _blend(start: str, end: str, share: float) -> str:
    """The colour ``share`` of the way from ``start`` to ``end`` (both ``#rrggbb``)."""
    channels = [round(int(start[i:i + 2], 16) + share * (int(end[i:i + 2], 16) - int(start[i:i + 2], 16)))
                for i in (1, 3, 5)]
    return "#" + "".join(f"{channel:02x}" for channel in channels)


# --------------------------------------------------------------------------- the page
def render_report(results: Results, events: Iterable[Mapping[str, Any]] = ()) -> str:
    """The whole page as one string (charts inline)."""
    gate = results.gate
    testing = results.phases.testing
    moments = timeline(results, events)
    start = moments[0].at if moments else None  # the run_started event: started_at is to the second only
    context = {
        "results": results,
        "verdict": verdict_of(results),
        "colours": _COLOURS,
        "gate": gate,
        "gate_tone": _gate_tone(gate.decision) if gate else "info",
        "champion": _champion(results),
        "champion_rows": CHAMPION_ROWS,
        "evaluation": results.evaluation,
        "model_metrics": _model_metrics(results.evaluation),
        "per_class": _per_class(results.evaluation.get("classification_report")),
        "testing": testing,
        "check_rows": _check_rows(testing.checks) if testing else [],
        "deployment": results.deployment,
        "timeline": [(f"+{(moment.at - start).total_seconds():.2f} s" if start else "",
                      moment.at.strftime("%H:%M:%S.%f")[:-3], moment) for moment in moments],
        "notifications": results.notifications,
        "charts": _charts(results),
        "confusion": _confusion(results),
        "config_rows": sorted(results.config.items()),
        "sources": results.config_sources,
        "number": number,
        "text": text,
    }
    return scrub_known_secrets(_template().render(**context))


def write_html_report(results: Results, events: Iterable[Mapping[str, Any]], paths: Sequence[
                      tuple[str, str | os.PathLike[str]]]) -> list[str]:
    """Draw the page once and write it to each ``(label, path)``; one line per file not written.

    A report that cannot be drawn or written never changes the run's verdict: the caller logs the
    problems as errors, as it does for the CI reports.
    """
    try:
        page = render_report(results, events)
    except Exception as err:  # a bug here must not turn a deployed run into a failed one
        return [f"{label} {str(path)!r}: cannot render: {type(err).__name__}: {err}" for label, path in paths]
    problems = []
    for label, path in paths:
        try:
            write_atomically(path, page)
        except OSError as err:
            problems.append(f"{label} {str(path)!r}: cannot write: {err.strerror or err}")
    return problems


# --------------------------------------------------------------------------- helpers
def _check_rows(checks: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Each endpoint check with the numbers that say how it went, in words."""
    rows = []
    for name, check in checks.items():
        get = check.get
        if name == "health":
            numbers = f"{get('attempts')} attempt(s) in {number(get('seconds'), 2)} s" + \
                (f", version {get('version')}" if get("version") else "")
        elif name == "prediction_accuracy":
            recorded = get("recorded_accuracy")
            numbers = (f"accuracy {number(get('accuracy'))} on {get('rows')} held-out rows"
                       + (f" (recorded at training: {number(recorded)})" if recorded is not None else "")
                       + f"; parity: {get('mismatches')} of {get('rows')} predictions differ from the offline model")
        elif name == "performance":
            numbers = (f"{get('requests')} requests at concurrency {get('concurrency')}: success rate "
                       f"{number(get('success_rate'))}, avg {number(get('avg_latency_ms'), 2)} ms, p50 "
                       f"{number(get('p50_latency_ms'), 2)} ms, p95 {number(get('p95_latency_ms'), 2)} ms, p99 "
                       f"{number(get('p99_latency_ms'), 2)} ms, {number(get('throughput_rps'), 1)} requests/s")
        elif name == "robustness":
            numbers = "; ".join(f"{probe} -> {status}" for probe, status in (get("answers") or {}).items())
        else:
            numbers = details({key: value for key, value in check.items() if key not in ("passed", "reason")})
        rows.append({"name": name, "passed": bool(get("passed")), "numbers": numbers,
                     "reason": None if get("passed") else get("reason")})
    return rows


def _champion(results: Results) -> dict[str, Any] | None:
    champion = extra(results.gate, "champion") if results.gate else None
    if champion is None:
        return None
    if hasattr(champion, "model_dump"):
        champion = champion.model_dump()
    return dict(champion) if isinstance(champion, Mapping) else None


def _gate_tone(decision: str | None) -> str:
    return {"deploy": "good", "approved": "good", "held": "warn", "rejected": "bad"}.get(decision or "", "info")


def _model_metrics(evaluation: Mapping[str, Any]) -> list[tuple[str, str]]:
    rows = []
    for key, label in (("accuracy", "accuracy (held-out rows)"), ("accuracy_ci95", "95% interval of accuracy"),
                       ("balanced_accuracy", "balanced accuracy"), ("cv_mean_accuracy", "cross-validated accuracy"),
                       ("cv_std", "its standard deviation"), ("no_skill_accuracy", "no-skill baseline"),
                       ("precision_weighted", "precision (weighted)"), ("recall_weighted", "recall (weighted)"),
                       ("f1_weighted", "F1 (weighted)"), ("test_size", "held-out rows"),
                       ("train_size", "training rows")):
        if key in evaluation and evaluation[key] is not None:
            rows.append((label, text(evaluation[key])))
    return rows


def _per_class(report: Any) -> list[dict[str, str]]:
    if not isinstance(report, Mapping):
        return []
    rows = []
    for label, scores in report.items():
        if label in _CLASS_REPORT_SUMMARIES or not isinstance(scores, Mapping):
            continue
        rows.append({"label": str(label), **{key: text(scores.get(key))
                                             for key in ("precision", "recall", "f1-score", "support")}})
    return rows


TEMPLATE = Path(__file__).with_name("html_report.html.j2")


@functools.cache
def _template() -> Template:
    environment = Environment(autoescape=select_autoescape(default=True, default_for_string=True),
                              trim_blocks=True, lstrip_blocks=True)
    return environment.from_string(TEMPLATE.read_text(encoding="utf-8"))
