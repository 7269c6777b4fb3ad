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
inline, the charts are inline SVG drawn by matplotlib, and the page loads nothing (no script, no
external ``src``/``href``; the endpoint URL is shown as text). Every value is escaped by the
template engine (jinja2 with autoescape); only the SVG that matplotlib wrote goes in as markup, and
matplotlib escapes the text it puts there.

matplotlib is imported when the page is drawn, at the end of a run, never by ``status`` or
``history``: its import is most of the report's cost (docs/PERFORMANCE.md, "The HTML run report").
Importing it in a background thread from the run's start was measured too, and cost more: it competes
with training and the endpoint tests for the interpreter. Only the object-oriented ``Figure`` API is
used (no ``pyplot``, no GUI backend; the SVG backend draws), with fixed ``svg.hashsalt`` and no date in
the metadata, so the same results give the same page.
"""
from __future__ import annotations

import functools
import io
import logging
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jinja2 import Environment, Template, select_autoescape
from markupsafe import Markup

from pipeline.atomic_files import write_atomically
from pipeline.redaction import scrub_known_secrets
from pipeline.results_schema import Results

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

log = logging.getLogger(__name__)

REPORT_FILENAME = "report.html"
# The champion comparison's fields (``gate.champion``; its ``status`` and ``reason`` head the table), in words.
CHAMPION_ROWS = (("version", "champion version"), ("metric", "metric"), ("champion_value", "champion"),
                 ("candidate_value", "candidate"), ("difference", "difference (candidate - champion)"),
                 ("difference_interval", "95% interval of the difference"), ("p_value", "p-value"),
                 ("rows_compared", "rows compared"), ("rows_excluded", "rows excluded"),
                 ("candidate_only_correct", "rows only the candidate got right"),
                 ("champion_only_correct", "rows only the champion got right"))
WIDE = 13.0  # inches: an SVG inch is 72 CSS pixels, so about the page's width at 100% zoom
_CLASS_REPORT_SUMMARIES = ("accuracy", "macro avg", "weighted avg", "micro avg", "samples avg")
_COLOURS = {"good": "#1a7f37", "warn": "#9a6700", "bad": "#cf222e", "info": "#0969da", "muted": "#6e7781"}


def report_path(store_dir: str | os.PathLike[str], run_id: str) -> Path:
    """Where every run's report lives: ``<store_dir>/runs/<run_id>/report.html``."""
    return Path(store_dir).resolve() / "runs" / run_id / REPORT_FILENAME


class _ToRunLog(logging.Handler):
    """matplotlib's own warnings (a font cache being built, a temporary config directory) go to the
    run's log, in its format, instead of bare lines on stderr."""

    def emit(self, record: logging.LogRecord) -> None:
        log.log(record.levelno, "matplotlib: %s", record.getMessage())


def _import_matplotlib() -> Any:
    matplotlib_log = logging.getLogger("matplotlib")
    if not any(isinstance(handler, _ToRunLog) for handler in matplotlib_log.handlers):
        matplotlib_log.addHandler(_ToRunLog(logging.WARNING))
        matplotlib_log.propagate = False
    import matplotlib
    import matplotlib.backends.backend_svg  # what savefig(format="svg") loads
    import matplotlib.figure
    import matplotlib.ticker

    return matplotlib


# --------------------------------------------------------------------------- the verdict
@dataclass(frozen=True)
class Verdict:
    """The first thing the page says: one or two words, their tone, and why."""

    headline: str
    tone: str  # good | warn | bad | info
    reason: str | None
    detail: str | None = None


def verdict_of(results: Results) -> Verdict:
    """What happened to the model, in the words of the README's tables (gate decisions, final states)."""
    error, gate, deployment, rollback = results.error, results.gate, results.deployment, results.rollback
    state = deployment.final_state if deployment else None
    reason = (rollback.reason if rollback else None) or (deployment.reason if deployment else None)
    if state == "deployed" and error is not None:  # e.g. an undelivered notification with notify_strict on
        return Verdict("Deployed, run failed", "bad", error.message,
                       f"{deployment.version} now serves at endpoint {deployment.endpoint_name}")
    if state == "deployed":
        return Verdict("Deployed", "good", f"{deployment.version} now serves at endpoint {deployment.endpoint_name}",
                       f"The gate passed it ({gate.reason}) and every endpoint test passed." if gate else None)
    if state in ("kept_previous", "rolled_back", "removed"):
        serving = deployment.serving_version
        after = {"kept_previous": f"the previous version {serving} never stopped serving",
                 "rolled_back": f"the previous version {serving} serves again",
                 "removed": "it was the endpoint's first version, so the endpoint was removed"}[state]
        return Verdict("Rolled back", "bad", reason or (error.message if error else None),
                       f"{deployment.version} was not kept ({state}): {after}")
    if state == "rollback_failed":
        return Verdict("Rollback failed", "bad", reason or (error.message if error else None),
                       f"{deployment.version} failed and the previous version could not be verified"
                       + (f"; run: {results.resume_command}" if results.resume_command else ""))
    if state == "failed":
        return Verdict("Deployed, tests failed", "bad", reason,
                       f"{deployment.version} stays serving: rollback_on_failure is off")
    if error is not None and error.exit_code == 3:  # e.g. --mode deployment of a job the gate rejected
        return Verdict("Not deployed", "warn", error.message, error.hint)
    if error is not None:
        return Verdict("Failed", "bad", error.message, error.hint)
    if gate is not None and gate.decision in ("held", "rejected"):
        never = " A rejected model is never deployed." if gate.decision == "rejected" else ""
        return Verdict(gate.decision.capitalize(), "warn", gate.reason, f"Nothing was deployed.{never}")
    if gate is not None and gate.decision == "approved":
        return Verdict("Approved", "info", gate.reason, "Nothing was deployed: auto-deploy is off.")
    if gate is not None and results.mode == "training":
        return Verdict("Passed the gate", "good", gate.reason, "Training mode: nothing was deployed.")
    testing = results.phases.testing
    if results.mode == "testing" and testing is not None:
        passed = testing.overall_status == "passed"
        return Verdict("Endpoint tests passed" if passed else "Endpoint tests failed", "good" if passed else "bad",
                       "; ".join(testing.failures) or f"{results.summary.endpoint_version} at "
                                                      f"{results.summary.endpoint_name} passed every check")
    cleanup = results.phases.cleanup
    if cleanup is not None:
        return Verdict("Endpoint removed", "info", f"{cleanup.get('endpoint_name')} was stopped and removed "
                                                   f"(it served {cleanup.get('removed_version') or 'nothing'})")
    status = results.pipeline_status or "unknown"
    return Verdict(status.capitalize(), "good" if status == "success" else "bad", None)


# --------------------------------------------------------------------------- the timeline
@dataclass(frozen=True)
class Moment:
    at: datetime
    what: str
    detail: str
    tone: str = "info"


def timeline(results: Results, events: Iterable[Mapping[str, Any]]) -> list[Moment]:
    """The run's events from the audit trail, plus the endpoint tests' start and end, oldest first."""
    moments = []
    for event in events:
        if results.run_id and event.get("run_id") != results.run_id:
            continue
        at = _parse_time(event.get("at"))
        if at is not None:
            detail = event.get("detail") if isinstance(event.get("detail"), Mapping) else {}
            what, text, tone = _describe_event(str(event.get("kind")), detail)
            moments.append(Moment(at, what, text, tone))
    testing = results.phases.testing
    if testing is not None:
        started, finished = _parse_time(_extra(testing, "started_at")), _parse_time(_extra(testing, "finished_at"))
        if started is not None:
            moments.append(Moment(started, "endpoint tests started", _tested_version(results)))
        if finished is not None:
            passed = testing.overall_status == "passed"
            failed = [name for name, check in testing.checks.items() if not check.get("passed")]
            moments.append(Moment(finished, "endpoint tests passed" if passed else "endpoint tests failed",
                                  ", ".join(failed), "good" if passed else "bad"))  # the reasons are above
    return sorted(moments, key=lambda moment: moment.at)


def _tested_version(results: Results) -> str:
    deployment = results.deployment
    version = deployment.version if deployment else results.summary.endpoint_version
    return f"version {version}" if version else ""


def _describe_event(kind: str, detail: Mapping[str, Any]) -> tuple[str, str, str]:
    """A label, a line of detail and a tone for one audit-trail event."""
    get = detail.get
    if kind == "run_started":
        return "run started", f"mode {get('mode')}, backend {get('backend')}", "info"
    if kind == "training_completed":
        return "trained", f"{get('training_job')}: accuracy {_number(get('accuracy'))}", "info"
    if kind == "gate_decision":
        decision = str(get("decision"))
        tone = "good" if decision in ("deploy", "approved") else "warn"
        return f"gate: {decision}", str(get("reason") or ""), tone
    if kind == "deployment_started":
        previous = get("from_version")
        return "staged", f"{get('to_version')} (replacing {previous})" if previous else \
            f"{get('to_version')} (the endpoint's first version)", "info"
    if kind == "endpoint_started":
        return "endpoint started", f"{get('version')} at {get('url')}", "info"
    if kind == "endpoint_restarted":
        return "endpoint restarted", f"on {get('version')} (its process had died)", "warn"
    if kind.startswith("deployment_"):
        state = kind.removeprefix("deployment_")
        serving = get("serving_version")
        reason = f": {get('reason')}" if get("reason") else ""
        described = {
            "deployed": ("switched", f"{serving} serves", "good"),
            "kept_previous": ("rolled back", f"before the switch; {serving} kept serving{reason}", "bad"),
            "rolled_back": ("rolled back", f"{serving} serves again{reason}", "bad"),
            "removed": ("rolled back", f"the endpoint was removed (nothing served before){reason}", "bad"),
            "rollback_failed": ("rollback failed", f"{get('detail') or ''}{reason}", "bad"),
            "failed": ("kept, tests failed", f"{serving} stays serving{reason}", "bad"),
            "interrupted": ("interrupted", f"{get('detail') or ''}{reason}", "warn"),
        }
        return described.get(state, (state.replace("_", " "), _details(detail), "info"))
    if kind == "bake_interval":
        verdict = str(get("verdict"))
        tone = {"pass": "good", "breach": "bad"}.get(verdict, "warn")
        return f"bake interval {get('interval')}: {verdict.replace('_', ' ')}", str(get("reason") or ""), tone
    if kind.startswith("manual_"):
        return f"manual {kind.removeprefix('manual_').replace('_', ' ')}", \
            f"{get('from_version')} -> {get('to_version')}", "warn"
    if kind == "run_finished":
        status = str(get("status"))
        return "run finished", f"{status}, exit code {get('exit_code')}", "good" if status == "success" else "bad"
    return kind.replace("_", " "), _details(detail), "info"


# --------------------------------------------------------------------------- charts
def _charts(results: Results) -> dict[str, Markup]:
    """The page's figures as inline SVG: the gate, the confusion matrix, the latency histogram."""
    matplotlib = _import_matplotlib()

    settings = {"svg.hashsalt": "mlops-run-report", "svg.fonttype": "none", "text.parse_math": False,
                "font.family": "sans-serif", "font.size": 9, "axes.spines.top": False,
                "axes.spines.right": False}
    charts: dict[str, Markup] = {}
    with matplotlib.rc_context(settings):
        for name, draw in (("gate", _gate_chart), ("confusion", _confusion_chart), ("latency", _latency_chart)):
            figure = draw(results)
            if figure is not None:
                matplotlib.rcParams["svg.hashsalt"] = f"mlops-run-report-{name}"  # ids unique across the page
                charts[name] = _svg(figure)
    return charts


def _figure(width: float, height: float, margins: tuple[float, float, float, float]) -> tuple[Figure, Axes]:
    """A figure with one axes placed by fixed margins in inches (left, bottom, right, top): a layout
    engine would measure every label first and double the cost of drawing."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height))
    left, bottom, right, top = margins
    axes = figure.add_axes((left / width, bottom / height, 1 - (left + right) / width, 1 - (bottom + top) / height))
    return figure, axes


def _svg(figure: Figure) -> Markup:
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", metadata={"Date": None})
    text = buffer.getvalue()
    return Markup(text[text.index("<svg"):])  # no XML declaration or DOCTYPE inside an HTML page


def _gate_chart(results: Results) -> Figure | None:
    gate = results.gate
    if gate is None or not _finite(gate.value, gate.threshold, gate.minimum):
        return None
    champion = _champion(results)
    champion_value = champion.get("champion_value") if champion else None
    points = [gate.value, gate.threshold, gate.minimum, *(gate.interval or []),
              *([champion_value] if _finite(champion_value) else [])]
    low = max(0.0, min(points) - 0.05)
    high = min(1.0, max(points) + 0.02) if max(points) <= 1.0 else max(points) + 0.02
    rows = [("candidate", gate.value, gate.interval, _COLOURS[_gate_tone(gate.decision)], "")]
    if _finite(champion_value):
        # the version goes beside the point: as a row label it is too long for the margin (the browser draws
        # the text, in a font matplotlib cannot measure)
        version = champion.get("version")
        rows.append(("champion", champion_value, None, _COLOURS["muted"], f"  ({version})" if version else ""))
    figure, ax = _figure(WIDE, 1.3 + 0.4 * len(rows), (0.9, 0.45, 0.2, 0.1))
    ax.axvspan(low, gate.minimum, color=_COLOURS["bad"], alpha=0.10, lw=0)
    ax.axvspan(gate.minimum, gate.threshold, color=_COLOURS["warn"], alpha=0.12, lw=0)
    ax.axvspan(gate.threshold, high, color=_COLOURS["good"], alpha=0.10, lw=0)
    for x, label in ((gate.minimum, "minimum"), (gate.threshold, "threshold")):
        ax.axvline(x, color="#444", lw=1, ls="--")
        near_the_end = x > low + 0.9 * (high - low)  # written on the line's left, inside the axes
        ax.annotate(f"{label} {_number(x)}", (x, 1.0), xycoords=("data", "axes fraction"),
                    xytext=(-3 if near_the_end else 3, -2), textcoords="offset points", va="top",
                    ha="right" if near_the_end else "left", fontsize=8, color="#444")
    for y, (_, value, interval, colour, note) in enumerate(reversed(rows)):
        if interval and _finite(*interval):
            ax.errorbar([value], [y], xerr=[[value - interval[0]], [interval[1] - value]], fmt="o", color=colour,
                        capsize=4, ms=7, lw=2)
            shown = f"{_number(value)}  (95% interval {_number(interval[0])}-{_number(interval[1])})"
        else:
            ax.plot([value], [y], "o", color=colour, ms=7)
            shown = _number(value) + note
        right_half = value > (low + high) / 2  # keep the label inside the axes
        ax.annotate(shown, (value, y), xytext=(-6 if right_half else 6, 9), textcoords="offset points",
                    ha="right" if right_half else "left", fontsize=8)
    ax.set_yticks(range(len(rows)), labels=[label for label, *_ in reversed(rows)])
    ax.set_ylim(-0.7, len(rows) - 0.3)
    ax.set_xlim(low, high)
    ax.set_xlabel(gate.metric)
    return figure


def _confusion_chart(results: Results) -> Figure | None:
    evaluation = results.evaluation
    matrix = evaluation.get("confusion_matrix")
    if not isinstance(matrix, list) or not matrix or not all(isinstance(row, list) for row in matrix):
        return None
    labels = [str(label) for label in evaluation.get("confusion_matrix_labels") or range(len(matrix))]
    size = len(matrix)
    if size > 30:  # unreadable as a picture; the per-class table still lists every class
        return None
    longest = max(len(label) for label in labels)
    label_room = min(2.0, 0.3 + 0.07 * longest)
    side = min(6.0, 1.6 + 0.4 * size)
    figure, ax = _figure(side + label_room + 0.5, side + label_room + 0.3,
                         (label_room + 0.3, label_room + 0.2 if size > 5 else 0.6, 0.2, 0.15))
    ax.pcolormesh(matrix, cmap="Blues", vmin=0, edgecolors="white", linewidth=0.5)  # vector cells, crisp
    ax.set_aspect("equal")
    ax.invert_yaxis()  # row 0 on top, as the matrix is written
    peak = max((max(row) for row in matrix if row), default=0) or 1
    if size <= 15:
        for i, row in enumerate(matrix):
            for j, count in enumerate(row):
                ax.text(j + 0.5, i + 0.5, str(count), ha="center", va="center", fontsize=9,
                        color="white" if count > peak / 2 else "#222")
    centres = [index + 0.5 for index in range(size)]
    ax.set_xticks(centres, labels=labels, rotation=45 if size > 5 else 0, ha="right" if size > 5 else "center")
    ax.set_yticks(centres, labels=labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.spines[:].set_visible(False)
    return figure  # no colour bar: every cell is labelled with its count


def _latency_chart(results: Results) -> Figure | None:
    testing = results.phases.testing
    performance = testing.checks.get("performance") if testing else None
    histogram = (performance or {}).get("latency_histogram") or {}
    edges, counts = histogram.get("edges_ms"), histogram.get("counts")
    if not isinstance(edges, list) or not isinstance(counts, list) or len(edges) != len(counts) + 1 or not counts:
        return None
    if not _finite(*edges) or edges[0] <= 0:
        return None
    figure, ax = _figure(WIDE, 2.8, (0.6, 0.5, 1.3, 0.15))  # the legend on the right, beside the bars
    from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullLocator

    ax.stairs(counts, edges, fill=True, color="#8db4e2", edgecolor="#4a78b0", lw=0.6)  # one patch, not one per bin
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))  # 20, not 2x10^1
    ax.xaxis.set_minor_locator(NullLocator())
    for key, label, colour in (("p50_latency_ms", "p50", _COLOURS["good"]), ("p95_latency_ms", "p95", _COLOURS["warn"]),
                               ("p99_latency_ms", "p99", _COLOURS["bad"])):
        value = performance.get(key)
        if _finite(value) and value > 0:
            ax.axvline(value, color=colour, lw=1.4, label=f"{label} {_number(value, 2)} ms")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))  # requests come whole
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)
    ax.set_xlim(edges[0], edges[-1])
    ax.set_xlabel("latency per request (ms, log scale)")
    ax.set_ylabel("requests")
    return figure


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
        "config_rows": sorted(results.config.items()),
        "sources": results.config_sources,
        "number": _number,
        "text": _text,
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
            numbers = f"{get('attempts')} attempt(s) in {_number(get('seconds'), 2)} s" + \
                (f", version {get('version')}" if get("version") else "")
        elif name == "prediction_accuracy":
            recorded = get("recorded_accuracy")
            numbers = (f"accuracy {_number(get('accuracy'))} on {get('rows')} held-out rows"
                       + (f" (recorded at training: {_number(recorded)})" if recorded is not None else "")
                       + f"; parity: {get('mismatches')} of {get('rows')} predictions differ from the offline model")
        elif name == "performance":
            numbers = (f"{get('requests')} requests at concurrency {get('concurrency')}: success rate "
                       f"{_number(get('success_rate'))}, avg {_number(get('avg_latency_ms'), 2)} ms, p50 "
                       f"{_number(get('p50_latency_ms'), 2)} ms, p95 {_number(get('p95_latency_ms'), 2)} ms, p99 "
                       f"{_number(get('p99_latency_ms'), 2)} ms, {_number(get('throughput_rps'), 1)} requests/s")
        elif name == "robustness":
            numbers = "; ".join(f"{probe} -> {status}" for probe, status in (get("answers") or {}).items())
        else:
            numbers = _details({key: value for key, value in check.items() if key not in ("passed", "reason")})
        rows.append({"name": name, "passed": bool(get("passed")), "numbers": numbers,
                     "reason": None if get("passed") else get("reason")})
    return rows


def _champion(results: Results) -> dict[str, Any] | None:
    champion = _extra(results.gate, "champion") if results.gate else None
    if champion is None:
        return None
    if hasattr(champion, "model_dump"):
        champion = champion.model_dump()
    return dict(champion) if isinstance(champion, Mapping) else None


def _extra(model: Any, name: str) -> Any:
    """A field the schema may not declare yet (``extra="allow"`` keeps it)."""
    value = getattr(model, name, None)
    if value is None and getattr(model, "model_extra", None):
        value = model.model_extra.get(name)
    return value


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
            rows.append((label, _text(evaluation[key])))
    return rows


def _per_class(report: Any) -> list[dict[str, str]]:
    if not isinstance(report, Mapping):
        return []
    rows = []
    for label, scores in report.items():
        if label in _CLASS_REPORT_SUMMARIES or not isinstance(scores, Mapping):
            continue
        rows.append({"label": str(label), **{key: _text(scores.get(key))
                                             for key in ("precision", "recall", "f1-score", "support")}})
    return rows


def _finite(*values: Any) -> bool:
    return all(isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
               for value in values)


def _number(value: Any, digits: int = 4) -> str:
    """Numbers as people read them: ``0.9667``, ``1``, ``42``; anything else as text."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "" if value is None else str(value)
    if isinstance(value, int) or not math.isfinite(value):
        return str(value)
    return f"{value:.{digits}f}".rstrip("0").rstrip(".") if value != int(value) else str(int(value))


def _text(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, float)):
        return _number(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_text(item) for item in value) + "]"
    if isinstance(value, Mapping):
        return ", ".join(f"{key} {_text(item)}" for key, item in value.items())
    return str(value)


def _details(detail: Mapping[str, Any]) -> str:
    return ", ".join(f"{key} {_text(value)}" for key, value in detail.items() if value not in (None, "", [], {}))


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


TEMPLATE = Path(__file__).with_name("html_report.html.j2")


@functools.cache
def _template() -> Template:
    environment = Environment(autoescape=select_autoescape(default=True, default_for_string=True),
                              trim_blocks=True, lstrip_blocks=True)
    return environment.from_string(TEMPLATE.read_text(encoding="utf-8"))
