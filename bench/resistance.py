"""Resistance: a well-behaved client's latency while idle and trickling clients hold connections.

    python -m bench.resistance            # 10 s per load run
    python -m bench.resistance --quick    # 3 s runs

The endpoint serves the logistic-regression model exactly as the pipeline starts it, with
``client_timeout_seconds`` at 30 so that no misbehaving connection is cut off during a run: what
is measured is whether they can stall anyone while they are there. The well-behaved client is wrk
(single-row JSON requests, 1 and then 8 connections), first alone, then with the attack attached:
100 idle connections, 20 connections trickling a request body one byte a second and 10 trickling
their headers the same way. Targets: p99 under 10 ms with the attack, no failed request, and no
request that waited anywhere near a client timeout (max latency under 1 s, against 30 s).
"""
from __future__ import annotations

import argparse
import json
import socket
import sys
import threading
import time
from typing import Any

from bench.common import (
    HOST,
    WRK_MISSING,
    load_generator_name,
    machine_info,
    print_table,
    project_root,
    run_load,
    temp_dir,
    wait_for_quiet,
    write_result,
    wrk_path,
)
from bench.serving import endpoint_server, fit_models

P99_TARGET_MS = 10.0
MAX_LATENCY_TARGET_MS = 1000.0
CLIENT_TIMEOUT_SECONDS = 30.0
ROW_BODY = b"5.1,3.5,1.4,0.2\n"


class Attack:
    """Idle connections and connections that trickle their request one byte a second."""

    def __init__(self, port: int, idle: int, trickling_bodies: int, trickling_headers: int) -> None:
        self.port = port
        self.counts = (idle, trickling_bodies, trickling_headers)
        self.idle: list[socket.socket] = []
        self.trickling: list[tuple[socket.socket, bytes]] = []
        self.stop = threading.Event()
        self.send_errors = 0
        self.thread = threading.Thread(target=self._trickle, daemon=True)

    def _connect(self) -> socket.socket:
        return socket.create_connection((HOST, self.port), timeout=10)

    def __enter__(self) -> Attack:
        idle, bodies, headers = self.counts
        self.idle = [self._connect() for _ in range(idle)]
        for _ in range(bodies):
            connection = self._connect()
            connection.sendall(b"POST /invocations HTTP/1.1\r\nHost: endpoint\r\nContent-Type: text/csv\r\n"
                               b"Content-Length: 1000\r\n\r\n")
            self.trickling.append((connection, ROW_BODY * 62))
        for _ in range(headers):
            connection = self._connect()
            connection.sendall(b"POST /invocations HTTP/1.1\r\n")
            self.trickling.append((connection, b"X-Padding: " + b"x" * 500))
        self.thread.start()
        return self

    def _trickle(self) -> None:
        sent = 0
        while not self.stop.wait(1.0) and sent < 500:
            for connection, payload in self.trickling:
                try:
                    connection.sendall(payload[sent:sent + 1])
                except OSError:
                    self.send_errors += 1
            sent += 1

    def still_open(self) -> int:
        """How many attack connections the server has neither answered nor closed."""
        count = 0
        for connection in self.idle + [c for c, _ in self.trickling]:
            connection.setblocking(False)
            try:
                connection.recv(1, socket.MSG_PEEK)
            except BlockingIOError:
                count += 1
            except OSError:
                pass
            finally:
                connection.setblocking(True)
        return count

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=5)
        for connection in self.idle + [c for c, _ in self.trickling]:
            connection.close()


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--quick", action="store_true", help="3 s runs")
    parser.add_argument("--patch", help="benchmark a copy of the project with this patch applied")
    parser.add_argument("--output", default="resistance")
    args = parser.parse_args(argv)
    if args.quick:
        args.duration = 3.0
    if not wrk_path():
        print(WRK_MISSING, file=sys.stderr)
    results: dict[str, Any] = {"benchmark": "resistance", "machine": machine_info(),
                               "load_generator": load_generator_name(), "duration_s": args.duration,
                               "client_timeout_seconds": CLIENT_TIMEOUT_SECONDS, "runs": []}
    with temp_dir("bench-resistance-") as workdir:
        root = project_root(args.patch, workdir)
        info = fit_models(workdir, ["logistic_regression"], with_mlflow=False)["logistic_regression"]
        pointer = json.loads(info["pointer"].read_text())
        info["pointer"].write_text(json.dumps({**pointer, "client_timeout_seconds": CLIENT_TIMEOUT_SECONDS}))
        body, content_type = info["bodies"]["single"]["endpoint"]
        server = endpoint_server(root, info["pointer"], workdir, "resistance", 2).start()
        try:
            server.wait_ready(timeout=180)
            run_load(server.port, "/invocations", body, content_type, 8, 1.0)  # warm-up
            for connections in (1, 8):
                for attacked in (False, True):
                    wait_for_quiet(0.3, 20.0)
                    if attacked:
                        with Attack(server.port, 100, 20, 10) as attack:
                            time.sleep(1.0)  # the attack is in place before the first measured request
                            measured = run_load(server.port, "/invocations", body, content_type, connections,
                                                args.duration)
                            measured["attack_connections_open_after"] = attack.still_open()
                            measured["attack_send_errors"] = attack.send_errors
                    else:
                        measured = run_load(server.port, "/invocations", body, content_type, connections,
                                            args.duration)
                    measured["attacked"] = attacked
                    results["runs"].append(measured)
                    print(f"  {connections} client(s) {'under attack' if attacked else 'alone':13s} "
                          f"{measured['rps']:>9,.0f} req/s  p99 {measured['p99_ms']:.2f} ms  "
                          f"max {measured['max_ms']:.1f} ms  errors {measured['errors']}", flush=True)
        finally:
            server.stop()
    attacked_runs = [r for r in results["runs"] if r["attacked"]]
    results["checks"] = [
        {"model": "logistic_regression", "metric": f"p99 ms under attack, {r['connections']} client(s)",
         "value": r["p99_ms"], "target": f"< {P99_TARGET_MS}", "met": r["p99_ms"] < P99_TARGET_MS}
        for r in attacked_runs] + [
        {"model": "logistic_regression", "metric": f"failed requests under attack, {r['connections']} client(s)",
         "value": r["errors"], "target": "0", "met": r["errors"] == 0} for r in attacked_runs] + [
        {"model": "logistic_regression", "metric": f"max latency ms under attack, {r['connections']} client(s)",
         "value": r["max_ms"], "target": f"< {MAX_LATENCY_TARGET_MS:g} (client timeout {CLIENT_TIMEOUT_SECONDS:g} s)",
         "met": r["max_ms"] < MAX_LATENCY_TARGET_MS} for r in attacked_runs] + [
        {"model": "logistic_regression", "metric": f"attack connections still open after the run "
         f"({r['connections']} client(s))", "value": r["attack_connections_open_after"], "target": "130",
         "met": r["attack_connections_open_after"] == 130} for r in attacked_runs]
    write_result(args.output, results)
    print_table(f"Resistance ({results['load_generator']}, {args.duration:g} s per run)",
                ["clients", "attack", "req/s", "p50 ms", "p99 ms", "max ms", "errors"],
                [[r["connections"], r["attacked"], r["rps"], r["p50_ms"], r["p99_ms"], r["max_ms"], r["errors"]]
                 for r in results["runs"]])
    print_table("Resistance: targets", ["metric", "value", "target", "met"],
                [[c["metric"], c["value"], c["target"], c["met"]] for c in results["checks"]])
    return results


if __name__ == "__main__":
    main()
