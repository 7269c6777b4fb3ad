"""Run ``run_pipeline.py`` (the real CLI, in this process) with a timer around every phase.

    python bench/pipeline_driver.py TIMINGS.json -- [run_pipeline.py arguments]

The wrappers only read the clock; the work done is exactly the CLI's. Timings are
written to TIMINGS.json as {"t0_wall", "imports", "phases": [[name, depth, seconds], ...]}.
Run with the benchmarked project first on PYTHONPATH.
"""
import time

T0 = time.perf_counter()
T0_WALL = time.time()

import functools  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402

import pipeline.cli.run_command as cli  # noqa: E402
import pipeline.run.orchestrator as orchestrator  # noqa: E402  (run_pipeline imports it lazily; same cost)

IMPORTED = time.perf_counter()

RECORDS: list[list] = []
_DEPTH = [0]


def timed(owner: object, name: str, label: str) -> None:
    """A clock around ``owner.name``; a step the pipeline no longer has by that name is said and left untimed."""
    original = getattr(owner, name, None)
    if original is None:
        print(f"pipeline_driver: {getattr(owner, '__name__', owner)}.{name} not found: {label!r} untimed",
              file=sys.stderr)
        return

    @functools.wraps(original)
    def wrapper(*args, **kwargs):
        depth = _DEPTH[0]
        _DEPTH[0] += 1
        began = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            _DEPTH[0] = depth
            RECORDS.append([label, depth, time.perf_counter() - began, began - T0])

    setattr(owner, name, wrapper)


def before_first_call(owner: object, name: str, label: str, prepare) -> None:
    """Run ``prepare`` (timed as ``label``) the first time ``owner.name`` is called: the phases import their
    modules when they run, so their steps are wrapped then, and the import is timed on its own."""
    original = getattr(owner, name)
    done = [False]

    @functools.wraps(original)
    def wrapper(*args, **kwargs):
        if not done[0]:
            done[0] = True
            began = time.perf_counter()
            prepare()
            RECORDS.append([label, _DEPTH[0], time.perf_counter() - began, began - T0])
        return original(*args, **kwargs)

    setattr(owner, name, wrapper)


def _wrap_training() -> None:
    from pipeline.training import fitting as training

    for name in ("load_data", "split_data", "train_local_model", "evaluate_model", "save"):
        timed(training.TrainingPipeline, name, f"train: {name}")


def _wrap_testing() -> None:
    from pipeline import testing

    timed(testing.EndpointTester, "run_for", "test: load held-out + offline predictions + checks")
    for name in ("check_health", "check_predictions", "check_performance", "check_robustness"):
        timed(testing.EndpointTester, name, f"test: {name}")


def install() -> None:
    from pipeline.backends.local import backend as local
    from pipeline.reporting import ci_reports
    from pipeline.run import launch
    from pipeline.state.store import DeploymentStore

    Orchestrator = orchestrator.Orchestrator
    timed(launch, "configure_logging", "logging setup")
    timed(cli, "_build_config", "config")
    timed(Orchestrator, "__init__", "orchestrator init (store, backend, notifier)")
    timed(local.LocalBackend, "prestart", "prestart the endpoint's server")
    before_first_call(Orchestrator, "train", "imports of training (scikit-learn, pandas)", _wrap_training)
    timed(Orchestrator, "train", "train")
    timed(Orchestrator, "gate", "gate")
    timed(Orchestrator, "deploy", "deploy (stage)")
    before_first_call(Orchestrator, "test", "imports of the endpoint tests", _wrap_testing)
    timed(Orchestrator, "test", "test")
    timed(Orchestrator, "keep", "keep (promote + verify)")
    timed(Orchestrator, "roll_back", "roll back")
    timed(Orchestrator, "finish", "finish (record, notify)")
    timed(Orchestrator, "notify", "notify")
    timed(DeploymentStore, "write_run_file", "write results")
    timed(ci_reports, "write_reports", "write CI reports")
    timed(launch, "_write_run_report", "write the HTML run report")
    timed(cli, "print_summary", "print summary")
    timed(local.LocalBackend, "_start_server", "deploy: spawn gunicorn")
    timed(local.LocalBackend, "_verify", "verify (/ping x N)")


def main() -> int:
    out = sys.argv[1]
    argv = sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else []
    install()
    code = 0
    sys.argv = ["run_pipeline.py", *argv]
    try:
        cli.cli(prog_name="run_pipeline.py")  # what cli.main() runs, before its os._exit
    except SystemExit as stop:
        code = int(stop.code or 0)
    finally:
        ended = time.perf_counter()
        with open(out, "w") as handle:
            json.dump({"t0_wall": T0_WALL, "imports": IMPORTED - T0, "main_end": ended - T0,
                       "records": RECORDS, "exit_code": code}, handle)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # as cli.main() leaves: no interpreter teardown


if __name__ == "__main__":
    sys.exit(main())
