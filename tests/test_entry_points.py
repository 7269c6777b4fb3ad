"""The real entry points: the bash wrapper as a subprocess, and the CLI's documentation."""
from __future__ import annotations

import itertools
import json
import re
import shlex
from pathlib import Path

import click
import pytest
import requests
from click.testing import CliRunner

from pipeline.cli import cli
from pipeline.cli.run_command import flag_settings
from pipeline.config import load_config
from pipeline.errors import PipelineError
from pipeline.run.invocation import resolve_mode
from tests.conftest import PYTHON, REPO, run_script

WRAPPER = str(REPO / "run_mlops_pipeline.sh")
DOCUMENTED = Path(__file__).parent / "fixtures" / "documented_invocations.txt"


def test_wrapper_runs_the_full_pipeline_and_maps_accuracy(workdir):
    result = run_script(WRAPPER, "--accuracy", "0.96", "--output-file", "out.json", "--set",
                        "performance_requests=40", cwd=workdir)
    assert result.returncode == 0, result.stderr
    results = json.loads((workdir / "out.json").read_text())
    assert results["config"]["accuracy_threshold"] == 0.96
    assert results["config_sources"]["accuracy_threshold"] == "flag:--accuracy-threshold"
    assert "ENTERPRISE MLOPS PIPELINE COMPLETED" in result.stdout
    url = results["summary"]["endpoint_url"]
    assert requests.get(f"{url}/ping", timeout=5).status_code == 200  # still serving after the command


def test_wrapper_help_lists_its_flags(workdir):
    result = run_script(WRAPPER, "--help", cwd=workdir)
    assert result.returncode == 0
    for flag in ("--accuracy", "--minimum-accuracy", "--mode", "--training-job", "--endpoint-name",
                 "--instance-type", "--disable-auto-deploy", "--verbose", "--role-arn"):
        assert flag in result.stdout


def test_wrapper_refuses_an_unknown_flag_with_usage_and_exit_2(workdir):
    result = run_script(WRAPPER, "--no-such-flag", cwd=workdir)
    assert result.returncode == 2
    assert "No such option '--no-such-flag'" in result.stderr
    assert "Usage:" in result.stderr


def test_wrapper_passes_subcommands_through(workdir):
    result = run_script(WRAPPER, "history", "--json", cwd=workdir)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["deployments"] == []


@pytest.mark.unit
def test_help_documents_exit_codes_and_examples():
    output = CliRunner().invoke(cli, ["--help"]).output
    assert "Exit codes:" in output and "3  the accuracy gate held or rejected" in output
    assert "Examples:" in output


@pytest.mark.unit
def test_every_subcommand_is_documented_with_an_example():
    for name, command in cli.commands.items():
        assert command.help and "Example" in command.help, name


def _documented_invocations() -> list[list[str]]:
    """Every run_pipeline.py / run_mlops_pipeline.sh call of the first published README, as argv lists."""
    calls = []
    for line in DOCUMENTED.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        for marker in ("run_pipeline.py", "./run_mlops_pipeline.sh"):
            if marker in line:
                calls.append([marker, *shlex.split(line.split(marker, 1)[1].split("#")[0])])
                break
    return calls


def _wrapper_to_cli(argv: list[str]) -> list[str]:
    mapped = []
    for arg in argv:
        mapped.append("--accuracy-threshold" if arg == "--accuracy" else arg)
    return mapped


@pytest.mark.unit
def test_every_documented_invocation_parses():
    calls = _documented_invocations()
    assert len(calls) >= 10
    for marker, *argv in calls:
        argv = [a.replace("$ROLE_ARN", "arn:aws:iam::123456789012:role/SageMakerRole")
                 .replace("$ACCURACY_THRESHOLD", "0.95").replace("$AWS_REGION", "us-east-1")
                 .replace("$TRAINING_JOB_NAME", "iris-classifier-20250823-120000") for a in argv]
        if marker.endswith(".sh"):
            argv = _wrapper_to_cli(argv)
        context = cli.make_context("run_pipeline.py", list(argv), resilient_parsing=False)
        options = context.params
        # and none is refused as a contradiction (the checks a run makes before its work)
        config, sources = load_config(None, {}, flag_settings(options), settings=options["settings"],
                                      search_default_file=False)
        resolve_mode(options["mode"], deployment_only=options["deployment_only"], training_job=options["training_job"],
                     endpoint_name=options["endpoint_name"], config=config, sources=sources)


def _command_lines_of_the_docs() -> list[tuple[str, str]]:
    """Every run_pipeline.py / run_mlops_pipeline.sh / mlops-pipeline line of a shell block in README.md and
    docs/, as (page, the arguments as written)."""
    found = []
    for page in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        for block in re.findall(r"```(?:bash|sh)\n(.*?)```", page.read_text(), re.S):
            for line in block.splitlines():
                for marker in ("run_mlops_pipeline.sh", "run_pipeline.py", "mlops-pipeline"):
                    if marker in line:
                        found.append((page.name, line.split(marker, 1)[1].split("#")[0]))
                        break
    return found


def _with_and_without_optional_parts(arguments: str) -> list[list[str]]:
    """``[--limit 20]`` in a usage line is optional: each combination, with the placeholders filled in."""
    parts = re.split(r"(\[[^\]]*\])", arguments.replace("RUN_ID", "20261126T030742Z-1a2b3c4d")
                     .replace("VERSION", "iris-model-20261126-030743"))
    choices = [["", part[1:-1]] if part.startswith("[") else [part] for part in parts]
    return [_wrapper_to_cli(shlex.split("".join(combination))) for combination in itertools.product(*choices)]


def _parses(argv: list[str]) -> None:
    """Parse ``argv`` as the CLI does, running nothing: a subcommand's own options and arguments, and for a
    run the checks it makes before any work (settings, contradicting flags)."""
    takes_a_value = {opt for param in cli.params if isinstance(param, click.Option) and not param.is_flag
                     for opt in param.opts}
    at, i = None, 0
    while i < len(argv) and at is None:
        if argv[i] in cli.commands:
            at = i
        i += 2 if argv[i] in takes_a_value else 1  # `--mode cleanup`: a value, not the subcommand
    if at is None:
        options = cli.make_context("run_pipeline.py", list(argv), resilient_parsing=False).params
        config, sources = load_config(None, {}, flag_settings(options), settings=options["settings"],
                                      search_default_file=False)
        resolve_mode(options["mode"], deployment_only=options["deployment_only"], training_job=options["training_job"],
                     endpoint_name=options["endpoint_name"], config=config, sources=sources)
        return
    parent = cli.make_context("run_pipeline.py", argv[:at], resilient_parsing=False)
    name, rest = argv[at], argv[at + 1:]
    command = cli.commands[name]
    if isinstance(command, click.Group) and rest and rest[0] in command.commands:
        parent, command, name, rest = (command.make_context(name, rest[:1], parent=parent), command.commands[rest[0]],
                                       rest[0], rest[1:])
    command.make_context(name, rest, parent=parent)


@pytest.mark.unit
def test_every_command_line_in_the_readme_and_docs_parses():
    lines = _command_lines_of_the_docs()
    assert len(lines) >= 30 and {page for page, _ in lines} >= {"README.md", "CONFIGURATION.md", "SAGEMAKER.md"}
    for page, arguments in lines:
        for argv in _with_and_without_optional_parts(arguments):
            if "--help" in argv:
                continue  # prints and exits: the help commands have tests of their own
            try:
                _parses(argv)
            except (click.ClickException, PipelineError) as err:
                raise AssertionError(f"{page}: {arguments.strip()}: {err}") from err


def test_the_local_pipeline_imports_neither_boto3_nor_the_sagemaker_sdk(workdir):
    code = (  # what run_pipeline.py runs, short of its final os._exit, then the modules it loaded
        "import sys\n"
        f"sys.path.insert(0, {str(REPO)!r})\n"
        "from pipeline.cli import cli\n"
        "try:\n"
        "    cli(['--output-file', 'o.json', '--set', 'performance_requests=20'], prog_name='run_pipeline.py')\n"
        "except SystemExit as exit:\n"
        "    assert exit.code == 0, exit.code\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'boto3', 'botocore', 'sagemaker'}))\n"
    )
    result = run_script(PYTHON, "-c", code, cwd=workdir)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"
    assert json.loads((workdir / "o.json").read_text())["summary"]["deployment_occurred"] is True


def test_the_commands_that_read_the_store_load_no_data_library(workdir):
    # history, runs, jobs and status answer from the store: scikit-learn, scipy and pandas would cost them
    # about two seconds of imports (docs/PERFORMANCE.md, "shared store").
    code = (
        "import sys\n"
        f"sys.path.insert(0, {str(REPO)!r})\n"
        "from pipeline.cli import cli\n"
        "for command in (['history'], ['history', '--verify'], ['runs'], ['jobs'], ['status']):\n"
        "    try:\n"
        "        cli(command, prog_name='run_pipeline.py')\n"
        "    except SystemExit as exit:\n"
        "        assert not exit.code, (command, exit.code)\n"
        "    heavy = {m.split('.')[0] for m in sys.modules} & {'sklearn', 'scipy', 'pandas', 'joblib', 'boto3'}\n"
        "    print(' '.join(command), sorted(heavy))\n"
    )
    result = run_script(PYTHON, "-c", code, cwd=workdir)
    assert result.returncode == 0, result.stderr
    assert [line for line in result.stdout.splitlines() if line.endswith("]")] == [
        "history []", "history --verify []", "runs []", "jobs []", "status []"]


def test_wrapper_passes_a_subcommand_help_through(workdir):
    result = run_script(WRAPPER, "rollback", "--help", cwd=workdir)
    assert result.returncode == 0
    assert "Serve an earlier version again" in result.stdout
