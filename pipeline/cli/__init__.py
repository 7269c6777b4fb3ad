"""The command line. ``cli`` is the click group (a pipeline run, and every subcommand registered on it);
``main`` is the console script's entry point (``mlops-pipeline``, ``run_pipeline.py``)."""
from pipeline.cli import endpoint_commands, record_commands  # noqa: F401  (each registers its commands on cli)
from pipeline.cli.run_command import cli, main, print_summary

__all__ = ["cli", "main", "print_summary"]
