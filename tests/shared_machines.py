"""Machines that share one store: each a directory of its own and a host name of its own, running the real CLI.

``Machine`` runs ``pipeline.cli.cli`` in-process (click's CliRunner) from its directory, with ``socket.gethostname``
answering its name, and the shared ``store_url`` on the command line: what three CI runners, or three people's
laptops, pointed at one PostgreSQL database would do. Nothing a machine wrote is visible to another except through
the store and the artifact store (a test may delete a machine's directory to make sure of it).
"""
from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from pipeline.cli import cli
from tests.conftest import FAST_SETTINGS

RUN_SETTINGS = [*FAST_SETTINGS, "--set", "max_p95_latency_ms=null"]  # moto's latency is not the subject here


class Machine:
    def __init__(self, root: Path, host: str, store_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
        self.root = root
        self.host = host
        self.store_url = store_url
        self.monkeypatch = monkeypatch
        self.runs = 0
        self.last_output: Path | None = None
        root.mkdir(parents=True, exist_ok=True)

    def _here(self) -> None:
        self.monkeypatch.chdir(self.root)
        self.monkeypatch.setattr(socket, "gethostname", lambda: self.host)

    def run(self, *args: str) -> Result:
        """A pipeline run: its results file and log in this machine's directory."""
        self.runs += 1
        self.last_output = self.root / f"results-{self.runs}.json"
        return self.command(*args, "--output-file", str(self.last_output), "--log-file",
                            str(self.root / "pipeline.log"), *RUN_SETTINGS)

    def command(self, *args: str) -> Result:
        """Any command line, after ``--store-url``."""
        self._here()
        return CliRunner().invoke(cli, ["--store-url", self.store_url, *args], catch_exceptions=False)

    def results(self) -> dict[str, Any]:
        assert self.last_output is not None
        return json.loads(self.last_output.read_text())


def machines(root: Path, store_url: str, monkeypatch: pytest.MonkeyPatch, names: str = "abc") -> list[Machine]:
    return [Machine(root / f"machine-{name}", f"machine-{name}", store_url, monkeypatch) for name in names]

