"""``rollout status|promote|abort``: see a bake, or end it, while the baking run holds the endpoint's lock.

The verbs are Argo Rollouts'. ``promote`` and ``abort`` are requests recorded in the audit trail; the
baking run reads them within a second and acts: ``promote`` skips the remaining intervals, ``abort``
returns every request to the serving version (``kept_previous``), each recorded as the person's.
"""
from __future__ import annotations

import getpass
import json
import os
import sys

import click

from pipeline.cli.run_command import _endpoint_name, _fail, _operations, cli
from pipeline.errors import ExitCode, PipelineError


def acting_person(by: str | None) -> str:
    """Who acts: ``--by``, else the GitLab user of the CI job (``GITLAB_USER_LOGIN``), else the OS user."""
    return by or os.environ.get("GITLAB_USER_LOGIN") or getpass.getuser()


@cli.group()
def rollout() -> None:
    """See or end the bake (CANARY, LINEAR, SHADOW) running on an endpoint.

    Example: python3 run_pipeline.py rollout abort --endpoint-name iris-model --by alice
    """


@rollout.command("status")
@click.option("--endpoint-name", required=True, help="The endpoint that bakes.", callback=_endpoint_name)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def rollout_status(ctx: click.Context, endpoint_name: str, as_json: bool) -> None:
    """The bake running on an endpoint: versions, routing, the intervals judged so far (exit 1: none runs).

    Example: python3 run_pipeline.py rollout status --endpoint-name iris-model
    """
    try:
        status = _operations(ctx.parent or ctx).rollout_status(endpoint_name)
    except PipelineError as err:
        _fail(err, False)
        return
    if as_json:
        click.echo(json.dumps({"bake": status}, indent=2, default=str))
    elif status is None:
        click.echo(f"{endpoint_name}: no bake in progress")
    else:
        click.echo(f"{endpoint_name}: {status['version']} bakes beside {status['serving_version']} "
                   f"({status['traffic_routing']}, {status['baking_seconds']:g}s per interval, run {status['run_id']}, "
                   f"since {status['started_at'][:19]})")
        for interval in status["intervals"]:
            click.echo(f"  interval {interval['interval']} ({interval['candidate_percent']}%): {interval['verdict']}: "
                       f"{interval['reason']}")
        for request in status["requested"]:
            click.echo(f"  {request['action']} requested by {request['by']} at {request['at'][:19]}")
    sys.exit(ExitCode.SUCCESS if status is not None else ExitCode.FAILURE)


def _request(ctx: click.Context, endpoint_name: str, action: str, by: str | None) -> None:
    try:
        outcome = _operations(ctx.parent or ctx).rollout_request(endpoint_name, action, acting_person(by))
    except PipelineError as err:
        _fail(err, False)
        return
    if outcome["final_state"] in (None, "in_progress"):
        click.echo(f"{action} of {outcome['version']} requested: run {outcome['run_id']} has not acted on it yet "
                   f"(`rollout status --endpoint-name {endpoint_name}`)")
    else:
        click.echo(f"{outcome['version']}: {outcome['final_state']} ({outcome['reason']})")


@rollout.command("promote")
@click.option("--endpoint-name", required=True, help="The endpoint that bakes.", callback=_endpoint_name)
@click.option("--by", help="Who promotes (default: GITLAB_USER_LOGIN, else the OS user).")
@click.pass_context
def rollout_promote(ctx: click.Context, endpoint_name: str, by: str | None) -> None:
    """Skip the bake's remaining intervals: the candidate takes all traffic, recorded as promoted by you.

    Example: python3 run_pipeline.py rollout promote --endpoint-name iris-model
    """
    _request(ctx, endpoint_name, "promote", by)


@rollout.command("abort")
@click.option("--endpoint-name", required=True, help="The endpoint that bakes.", callback=_endpoint_name)
@click.option("--by", help="Who aborts (default: GITLAB_USER_LOGIN, else the OS user).")
@click.pass_context
def rollout_abort(ctx: click.Context, endpoint_name: str, by: str | None) -> None:
    """End the bake: every request back to the serving version, the run recorded kept_previous (aborted by you).

    Example: python3 run_pipeline.py rollout abort --endpoint-name iris-model --by alice
    """
    _request(ctx, endpoint_name, "abort", by)
