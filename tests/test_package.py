"""The project is a package: `pip install .` in a clean virtual environment gives a working console script."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import pytest

from tests.conftest import REPO


def _requirements() -> set[str]:
    lines = (REPO / "requirements.txt").read_text().splitlines()
    return {line.split("#")[0].strip() for line in lines if line.split("#")[0].strip()}


@pytest.mark.unit
def test_the_package_declares_exactly_the_requirements():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    declared = set(project["dependencies"]) | set(project["optional-dependencies"]["sagemaker"])
    assert declared == _requirements()
    assert project["scripts"]["mlops-pipeline"] == "pipeline.cli:main"
    assert "MIT License" in (REPO / "LICENSE").read_text()


@pytest.mark.timeout(600)
def test_pip_install_gives_a_console_script_that_runs_the_pipeline(tmp_path):
    source = tmp_path / "source"  # a copy: building writes egg-info and build/ beside the sources
    shutil.copytree(REPO / "pipeline", source / "pipeline", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(REPO / name, source / name)
    venv = tmp_path / "venv"
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", str(venv)], check=True, timeout=120)
    # The dependencies are the test environment's own (a .pth file): pip sees them installed and
    # installs the project itself, with its metadata and console script (only the build backend,
    # setuptools, comes from the package index pip is configured with).
    code = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    site = subprocess.run([str(venv / "bin" / "python"), "-c", code], check=True, capture_output=True,
                          text=True).stdout.strip()
    Path(site, "test-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    install = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", str(source)],
                             capture_output=True, text=True, timeout=400)
    assert install.returncode == 0, install.stdout + install.stderr
    script = venv / "bin" / "mlops-pipeline"
    help_text = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=120)
    assert help_text.returncode == 0 and "Usage: mlops-pipeline" in help_text.stdout
    # shell completion as README documents it: click's own, under the console script's name
    source = subprocess.run([str(script)], env={**os.environ, "_MLOPS_PIPELINE_COMPLETE": "bash_source"},
                            capture_output=True, text=True, timeout=120)
    assert source.returncode == 0 and "complete -o nosort -F _mlops_pipeline_completion mlops-pipeline" in source.stdout
    completing = {"_MLOPS_PIPELINE_COMPLETE": "bash_complete", "COMP_WORDS": "mlops-pipeline ru", "COMP_CWORD": "1"}
    completed = subprocess.run([str(script)], capture_output=True, text=True, timeout=120,
                               env={**os.environ, **completing})
    assert completed.stdout.split() == ["plain,runs"]
    work = tmp_path / "work"
    work.mkdir()
    try:
        run = subprocess.run([str(script), "--output-file", "results.json", "--set", "performance_requests=20"],
                             cwd=work, capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stdout + run.stderr
        results = json.loads((work / "results.json").read_text())
        assert results["summary"]["deployment_occurred"] is True and results["summary"]["testing_passed"] is True
        # the installed package carries the run report's template: the page is written, not an error line
        assert "report not written" not in run.stderr
        report = work / ".mlops" / "runs" / results["run_id"] / "report.html"
        assert "Deployed" in report.read_text() and "<svg" in report.read_text()  # charts drawn: pygal came along
    finally:
        subprocess.run([str(script), "cleanup", "--all"], cwd=work, capture_output=True, timeout=120)
    assert re.search(r"mlops_pipeline-0\.1\.0\.dist-info", " ".join(p.name for p in Path(site).iterdir()))
