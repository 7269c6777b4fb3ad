"""The endpoint accuracy test over a training job's held-out rows (a child of bench/scale.py).

    PYTHONPATH=<project> python bench/scale_endpoint.py JOB_DIR URL VERSION [--server-pid PID]

Runs the endpoint tests a deployment runs (``EndpointTester.run_for``: held-out rows,
offline predictions, then the EndpointTester checks) against a running endpoint,
with a clock around ``check_predictions`` -- the accuracy test, every held-out row
sent through the endpoint in batches of ``test_batch_size`` -- and its CPU: this process's
(the tester: bodies, HTTP, answers) and, with ``--server-pid``, the server's process tree.
Rows per CPU-second of the two together is what the test costs whatever the foreign load;
on an otherwise idle 2-core machine the test cannot go faster than that rate x 2. Then, in
this process, the rate of parse + predict + serialize (``input_fn -> predict_fn -> output_fn``)
over the same batch bodies the tester sends, which bounds what any server can do.
"""
import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import add_timer, tree_cpu_seconds
from pipeline import testing
from pipeline.config import load_config
from pipeline.container import inference
from pipeline.serving.client import HttpEndpointClient
from pipeline.state.store import DeploymentStore
from pipeline.training.jobs import TrainingJob

TIMES: dict[str, float] = {}


def timed(owner: object, name: str) -> None:
    add_timer(TIMES, owner, name)


def inprocess_rate(model_dir: str, bodies: list[bytes], rows: int) -> dict[str, float]:
    model = inference.model_fn(model_dir)
    parse = predict = serialize = 0.0
    for body in bodies:
        t0 = time.perf_counter()
        matrix = inference.input_fn(body, "text/csv")
        t1 = time.perf_counter()
        prediction = inference.predict_fn(matrix, model)
        t2 = time.perf_counter()
        inference.output_fn(prediction, "application/json")
        t3 = time.perf_counter()
        parse, predict, serialize = parse + t1 - t0, predict + t2 - t1, serialize + t3 - t2
    total = parse + predict + serialize
    return {"rows_per_s": round(rows / total, 1), "seconds": round(total, 4), "parse_s": round(parse, 4),
            "predict_s": round(predict, 4), "serialize_s": round(serialize, 4),
            "bytes": sum(map(len, bodies))}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("job_dir")
    parser.add_argument("url")
    parser.add_argument("version")
    parser.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=JSON")
    parser.add_argument("--server-pid", type=int, help="the endpoint server's pid: its CPU during the test too")
    args = parser.parse_args()
    overrides = {key: json.loads(value) for key, value in (item.split("=", 1) for item in args.settings)}
    config, _ = load_config(None, {}, overrides, search_default_file=False)
    job_dir = Path(args.job_dir)
    job = TrainingJob.load(job_dir, DeploymentStore(job_dir.parent.parent).training_job(job_dir.name))
    for name in ("check_health", "check_performance", "check_robustness"):
        timed(testing.EndpointTester, name)
    cpu: dict[str, float] = {}
    checked = testing.EndpointTester.check_predictions

    def check_predictions(*args_: Any, **kwargs: Any) -> Any:  # its wall time and CPU, the server's included
        server_before = tree_cpu_seconds(args.server_pid) if args.server_pid else 0.0
        own_before, began = time.process_time(), time.perf_counter()
        try:
            return checked(*args_, **kwargs)
        finally:
            TIMES["check_predictions"] = time.perf_counter() - began
            cpu["tester"] = time.process_time() - own_before
            if args.server_pid:
                cpu["server"] = tree_cpu_seconds(args.server_pid) - server_before

    testing.EndpointTester.check_predictions = check_predictions  # type: ignore[method-assign]
    if hasattr(testing, "to_csv"):
        timed(testing, "to_csv")
    client = HttpEndpointClient(args.url, config.request_timeout_seconds)
    began = time.perf_counter()
    report = testing.EndpointTester(client, config, expected_version=args.version).run_for(job)
    test_phase = time.perf_counter() - began
    accuracy = report.checks.get("prediction_accuracy", {})
    rows = int(accuracy.get("rows") or 0)

    # The same batches, in this process: bodies exactly as the current tester builds them.
    features, _ = job.heldout()
    matrix = features.to_numpy(dtype=np.float64)
    batch = config.test_batch_size
    began = time.perf_counter()
    tester_bodies = [testing.to_csv(matrix[start:start + batch]) for start in range(0, len(matrix), batch)]
    format_seconds = time.perf_counter() - began
    # ...and bodies cut from the held-out file's own text (no float formatting at all).
    lines = job.heldout_path.read_text().splitlines()[1:]
    label_last = lines and job.label_column == job.heldout_path.read_text().split("\n", 1)[0].split(",")[-1]
    text_rows = [line.rpartition(",")[0] for line in lines] if label_last else []
    text_bodies = [("\n".join(text_rows[start:start + batch]) + "\n").encode()
                   for start in range(0, len(text_rows), batch)]
    model_dir = str(job.model_dir)
    result = {
        "passed": report.passed, "failures": report.failures, "rows": rows,
        "mismatches": accuracy.get("mismatches"), "batch_rows": batch,
        "check_predictions_s": TIMES.get("check_predictions"),
        "endpoint_rows_per_s": round(rows / TIMES["check_predictions"], 1) if rows else None,
        "cpu_s": {name: round(seconds, 4) for name, seconds in cpu.items()},
        "rows_per_cpu_s": round(rows / sum(cpu.values()), 1) if rows and cpu else None,
        "client_body_formatting_s": TIMES.get("to_csv"),
        "test_phase_s": test_phase, "checks_s": dict(TIMES),
        "inprocess_tester_bodies": inprocess_rate(model_dir, tester_bodies, len(matrix)),
        "tester_body_formatting_rows_per_s": round(len(matrix) / format_seconds, 1),
        "inprocess_text_bodies": inprocess_rate(model_dir, text_bodies, len(text_rows)) if text_bodies else None,
    }
    sys.stdout.write("BENCH_JSON " + json.dumps(result, default=str) + "\n")


if __name__ == "__main__":
    main()
