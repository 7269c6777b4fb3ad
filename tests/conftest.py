"""Shared fixtures: an isolated working directory and store, the real CLI, and server clean-up.

Every test runs in its own temporary directory with the pipeline's environment
variables cleared, so a developer's shell settings never leak into a test. Any
endpoint server a test starts is found by its store path and stopped at
teardown, also when the test fails.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from pipeline.cli import cli
from pipeline.config import ENV_VARS, load_config
from pipeline.run.orchestrator import Orchestrator
from pipeline.state.processes import group_members
from pipeline.training.fitting import TrainingPipeline
from tests.unit_tier import UnitTierGuard

# The receivers for notification tests (Slack HTTP, aiosmtpd, moto SNS) and the SageMaker tests' fake AWS
# (credentials, moto with the container emulated) live in modules of their own.
pytest_plugins = ["tests.notification_fixtures", "tests.aws_fixtures", "tests.postgres_fixtures"]

REPO = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- the unit tier
def _guarded(item: pytest.Item) -> Iterator[None]:
    """Run one phase (setup, call, teardown) of a test; a test marked ``unit`` may open no socket and start no
    process in it, also in a fixture it uses (``tests/unit_tier.py``)."""
    if item.get_closest_marker("unit") is None:
        return (yield)
    with UnitTierGuard(item.nodeid) as guard:
        result = yield
    guard.check()
    return result


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Two tiers: a test is ``unit`` when marked so, and ``integration`` otherwise (``-m integration``)."""
    for item in items:
        if item.get_closest_marker("unit") is None:
            item.add_marker(pytest.mark.integration)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Iterator[None]:
    return (yield from _guarded(item))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    return (yield from _guarded(item))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    if nextitem is None or nextitem.parent is not item.parent:
        # The last test of its module, class or worker also tears down the module's and the session's fixtures
        # (a shared endpoint, the PostgreSQL server): their processes are not this test's doing.
        return (yield)
    return (yield from _guarded(item))

FAST_SETTINGS = ["--set", "performance_requests=40", "--set", "health_timeout_seconds=60", "--set", "cv_folds=3"]


def wait_for(condition: Any, seconds: float = 60.0, interval: float = 0.02) -> None:
    """Poll ``condition`` until it holds; fail the test (never hang it) after ``seconds``."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(interval)


def processes_mentioning(text: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if text.encode() in (entry / "cmdline").read_bytes():
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def stop_servers_under(path: Path) -> None:
    """Stop every process whose command line names ``path`` (the endpoint servers' pid files do)."""
    for pid in processes_mentioning(str(path)):
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + 5
    while processes_mentioning(str(path)) and time.monotonic() < deadline:
        for pid in processes_mentioning(str(path)):
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
        time.sleep(0.05)


def kill_server(pid: int) -> None:
    """SIGKILL a server's whole process group (master and workers), and wait until none of it runs."""
    os.killpg(pid, signal.SIGKILL)
    wait_for(lambda: not group_members(pid), seconds=30)


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A clean working directory, no pipeline env vars; servers started inside are stopped afterwards."""
    monkeypatch.chdir(tmp_path)
    for name in [*ENV_VARS, "SMTP_HOST", "MLOPS_ENDPOINT_TOKEN"]:
        monkeypatch.delenv(name, raising=False)
    yield tmp_path
    stop_servers_under(tmp_path)


class Pipeline:
    """Runs ``run_pipeline.py`` in-process through click, and reads what it wrote."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.runs = 0
        self.settings = list(FAST_SETTINGS)  # added to every run unless fast=False

    def __call__(self, *args: str, env: dict[str, str] | None = None, fast: bool = True) -> Result:
        self.runs += 1
        output = self.root / f"results-{self.runs}.json"
        argv = list(args)
        if not any(a in ("history", "status", "rollback", "cleanup") for a in argv[:1]):
            argv += ["--output-file", str(output), "--log-file", str(self.root / "pipeline.log")]
            if fast:
                argv += self.settings
        result = CliRunner().invoke(cli, argv, env=env, catch_exceptions=False)
        self.last_output = output
        return result

    def results(self) -> dict[str, Any]:
        return json.loads(self.last_output.read_text())


@pytest.fixture
def pipeline(workdir: Path) -> Pipeline:
    return Pipeline(workdir)


@dataclass
class SharedRun:
    """A run of the real CLI that tests only read from: its console output, its results, its endpoint."""

    root: Path
    output: str
    results_file: Path
    results: dict[str, Any]

    @property
    def url(self) -> str:
        return self.results["summary"]["endpoint_url"]


@contextmanager
def shared_run(root: Path, *args: str, env: dict[str, str] | None = None) -> Iterator[SharedRun]:
    """A run of the real CLI in ``root``, as ``workdir`` and ``pipeline`` would make it, for a fixture of a wider
    scope than one test; the servers it started are stopped at the end."""
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.chdir(root)
            for name in [*ENV_VARS, "SMTP_HOST", "MLOPS_ENDPOINT_TOKEN"]:
                patch.delenv(name, raising=False)
            run = Pipeline(root)
            result = run(*args, env=env)
            assert result.exit_code == 0, result.output
        yield SharedRun(root, result.output, run.last_output, run.results())
    finally:
        stop_servers_under(root)


@contextmanager
def shared_endpoint(root: Path, *args: str, env: dict[str, str] | None = None) -> Iterator[str]:
    """The URL of an endpoint deployed by ``shared_run``, for the tests of a module that only call it."""
    with shared_run(root, *args, env=env) as run:
        yield run.url


@pytest.fixture(scope="session")
def default_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SharedRun]:
    """A default run (it deploys iris) for every test that only reads what it printed and wrote or calls its
    endpoint: one per test session, so one per pytest-xdist worker."""
    with shared_run(tmp_path_factory.mktemp("default-run")) as run:
        yield run


def run_script(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 300):
    """Run a real script of the repo in a subprocess."""
    full_env = {k: v for k, v in os.environ.items() if k not in ENV_VARS}
    full_env.update(env or {})
    return subprocess.run([*args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout)


PYTHON = sys.executable


def train_job(workdir: Path, training: type[TrainingPipeline] = TrainingPipeline, **settings: Any) -> str:
    """Train a job in-process (``--mode training``) with a training pipeline of the test's choosing."""
    config, sources = load_config(env={}, flags={"cv_folds": 3, **settings}, search_default_file=False)
    return Orchestrator(config, sources, mode="training", training_pipeline=training(config)).run().training_job


class LiveTraffic:
    """A client of the endpoint that is not the pipeline: single rows, one after another, in a thread.

    Every answer is kept as (monotonic time, status, X-Model-Version); a request that raised is status 0.
    """

    ROWS = ("5.1,3.5,1.4,0.2", "6.2,2.9,4.3,1.3", "7.7,3.0,6.1,2.3", "5.9,3.0,5.1,1.8", "5.6,2.7,4.2,1.3")

    def __init__(self, url: str, rows: tuple[str, ...] = ROWS, pause: float = 0.0) -> None:
        import threading

        self.url = url
        self.rows = rows
        self.pause = pause
        self.answers: list[tuple[float, int, str | None]] = []
        self.sent_rows: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> LiveTraffic:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def stop(self, at_least: int = 0, seconds: float = 120.0) -> None:
        """Stop once ``at_least`` requests were answered (bounded by ``seconds``)."""
        deadline = time.monotonic() + seconds
        while len(self.answers) < at_least and time.monotonic() < deadline and self._thread.is_alive():
            time.sleep(0.05)
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        import requests

        session = requests.Session()
        index = 0
        while not self._stop.is_set():
            row = self.rows[index % len(self.rows)]
            index += 1
            try:
                reply = session.post(f"{self.url}/invocations", data=row, timeout=10,
                                     headers={"Content-Type": "text/csv"})
                self.answers.append((time.monotonic(), reply.status_code, reply.headers.get("X-Model-Version")))
            except Exception:  # a failed request is what the tests look for
                self.answers.append((time.monotonic(), 0, None))
            self.sent_rows.append(row)
            if self.pause:
                time.sleep(self.pause)

    def failures(self) -> list[tuple[float, int, str | None]]:
        return [answer for answer in self.answers if answer[1] != 200]

    def versions(self, before: float | None = None, after: float | None = None) -> set[str | None]:
        return {version for at, _, version in self.answers
                if (before is None or at < before) and (after is None or at > after)}


@pytest.fixture
def python_ctrl_c() -> Iterator[None]:
    """Ctrl-C as a fresh Python process has it: SIGINT unblocked in the main thread and raising
    KeyboardInterrupt. In the full suite an in-process test that ran earlier in the same worker may leave the
    pytest process with SIGINT blocked or handled otherwise; a pipeline command is a process of its own and starts
    with Python's defaults."""
    handler = signal.signal(signal.SIGINT, signal.default_int_handler)
    mask = signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGINT])
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        signal.signal(signal.SIGINT, handler)
