"""The command line. ``cli`` is the click group (a pipeline run, and every subcommand registered on it);
``main`` is the console script's entry point (``mlops-pipeline``, ``run_pipeline.py``)."""
# Each module registers its commands on cli when imported.
from pipeline.cli import (  # noqa: F401
    approval_commands,
    endpoint_commands,
    model_commands,
    record_commands,
    rollout_commands,
    store_commands,
)
from pipeline.cli.run_command import cli, main, print_summary

__all__ = ["cli", "main", "print_summary"]
