"""Commands on endpoints: ``history``, ``status``, ``rollback``, ``cleanup``."""
from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from typing import Any

import click

from pipeline.cli.run_command import _endpoint_name, _fail, _operations, cli
from pipeline.errors import ExitCode, PipelineError
from pipeline.outcomes import FinalState


@cli.command()
@click.option("--endpoint-name", help="Only this endpoint's history.", callback=_endpoint_name)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--at", "at_time", help="Which version served --endpoint-name at this ISO time (UTC).")
@click.option("--verify", is_flag=True, help="Check the audit trail's hash chain; exit 1 if it was edited.")
@click.pass_context
def history(ctx: click.Context, endpoint_name: str | None, as_json: bool, at_time: str | None,
            verify: bool) -> None:
    """Deployments and rollbacks, newest first.

    Example: python3 run_pipeline.py history --endpoint-name iris-model --at 2026-11-26T10:00:00
    """
    operations = _operations(ctx)
    try:
        if verify and (endpoint_name or at_time):
            raise PipelineError(f"history --verify checks the whole audit trail: it takes no "
                                f"{'--endpoint-name' if endpoint_name else '--at'}")
        if verify:
            problems = operations.verify_audit_trail()
            for problem in problems:
                click.echo(f"Error: audit trail: {problem}", err=True)
            if problems:
                sys.exit(int(ExitCode.FAILURE))
            click.echo("audit trail intact")
            return
        if at_time:
            if not endpoint_name:
                raise PipelineError("history --at needs --endpoint-name")
            version, approval = operations.serving_at(endpoint_name, at_time)
            if as_json:
                click.echo(json.dumps({"endpoint_name": endpoint_name, "at": at_time, "serving_version": version,
                                       "approval": approval}))
            elif version is None:
                click.echo("nothing was serving")
            elif approval is None:
                click.echo(f"{version} (no approval of its model recorded)")
            else:
                click.echo(f"{version} ({approval['status']} by {approval['by']} at {approval['at'][:19]}: "
                           f"{approval['reason']})")
            return
        history = operations.history(endpoint_name)
    except PipelineError as err:
        _fail(err, False)
        return
    if as_json:
        click.echo(json.dumps({"deployments": history.deployments, "rollbacks": history.rollbacks,
                               "approvals": history.approvals, "runs": history.runs}, indent=2, default=str))
        return
    lines = [(row["started_at"], f"deployment  {row['endpoint_name']}  {row['from_version'] or '-'} -> "
              f"{row['to_version']}  {row['status']}" + (f"  ({row['reason']})" if row["reason"] else ""))
             for row in history.deployments]
    lines += [(event["at"], f"rollback    {event['endpoint_name']}  {event['detail'].get('from_version') or '-'} -> "
               f"{event['detail'].get('to_version')}  {event['kind'].removeprefix('manual_')}")
              for event in history.rollbacks]
    lines += [(event["at"], f"{event['kind'].removeprefix('model_'):<11} {event['detail'].get('training_job')}  by "
               f"{event['detail'].get('by')}: {event['detail'].get('reason')}") for event in history.approvals]
    if not endpoint_name:
        lines += [(run["started_at"], f"run         {run['run_id']}  {run['mode']}  {run['backend']}  "
                   f"{run['status']}" + (f"  exit {run['exit_code']}" if run["exit_code"] is not None else ""))
                  for run in history.runs]
    for at, text in sorted(lines, key=lambda item: item[0], reverse=True):
        click.echo(f"{at[:19]}  {text}")


@cli.command()
@click.option("--endpoint-name", help="Only this endpoint.", callback=_endpoint_name)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def status(ctx: click.Context, endpoint_name: str | None, as_json: bool) -> None:
    """Each endpoint: URL, serving version, health, whether its process is alive, and a bake's traffic split.

    Exit 1 when any endpoint listed is unhealthy or its process is dead, so it serves as a health
    check; 0 when all are healthy (or there are none).

    Example: python3 run_pipeline.py status
    """
    try:
        report = _operations(ctx).status(endpoint_name)
    except PipelineError as err:
        _fail(err, bool(ctx.obj.get("verbose")))
        return
    if as_json:
        click.echo(json.dumps({"endpoints": report.endpoints, "unrecorded_servers": report.unrecorded_servers},
                              indent=2, default=str))
    else:
        if not report.endpoints and not report.unrecorded_servers:
            click.echo("no endpoints")
        for row in report.endpoints:
            health = "healthy" if row.get("healthy") else "UNHEALTHY"
            alive = "" if row.get("process_alive", True) else \
                "  process DEAD: the next deployment or rollback restarts it"
            split = row.get("traffic_split")
            if split:  # a bake in progress: who answers what, and how far it is
                alive += f"  BAKING: {_describe_bake(split)}"
            click.echo(f"{row['name']}  {row['url']}  {row['serving_version']}  {health}{alive}")
        for name, servers in report.unrecorded_servers.items():
            click.echo(f"{name}  NOT IN THE STORE: {', '.join(servers)} still running; "
                       f"`run_pipeline.py cleanup --endpoint-name {name}` stops them")
    if not report.healthy:
        sys.exit(int(ExitCode.FAILURE))


@cli.command()
@click.option("--endpoint-name", required=True, help="Endpoint to roll back.", callback=_endpoint_name)
@click.option("--to-version", help="Version to serve again (default: the one deployed before the current one).")
@click.pass_context
def rollback(ctx: click.Context, endpoint_name: str, to_version: str | None) -> None:
    """Serve an earlier version again, verified by health check and version header.

    Example: python3 run_pipeline.py rollback --endpoint-name iris-model
    """
    try:
        outcome = _operations(ctx).rollback(endpoint_name, to_version)
    except PipelineError as err:
        _fail(err, bool(ctx.obj.get("verbose")))
        return
    if outcome.status != FinalState.ROLLED_BACK:
        click.echo(f"Error: rollback of {endpoint_name!r} failed: {outcome.detail}", err=True)
        click.echo(f"Check `python3 run_pipeline.py status --endpoint-name {endpoint_name}`, then run "
                   f"`python3 run_pipeline.py rollback --endpoint-name {endpoint_name} --to-version VERSION`.",
                   err=True)
        sys.exit(int(ExitCode.FAILURE))
    click.echo(f"rolled_back: {endpoint_name} serves {outcome.serving_version} ({outcome.detail})")


@cli.command()
@click.option("--endpoint-name", help="Stop and remove this endpoint.", callback=_endpoint_name)
@click.option("--prefix", help="Stop and remove every endpoint whose name starts with this.")
@click.option("--all", "everything", is_flag=True, help="Stop and remove every endpoint of the store, and any "
              "server of its endpoint directories the store does not know.")
@click.option("--prune", is_flag=True, help="Keep the endpoints; delete the artifacts of old versions.")
@click.option("--keep", type=int, help="With --prune: versions to keep per endpoint (default retain_versions).")
@click.pass_context
def cleanup(ctx: click.Context, endpoint_name: str | None, prefix: str | None, everything: bool, prune: bool,
            keep: int | None) -> None:
    """Stop and remove endpoints by name or prefix (or all), or prune old versions' artifacts.

    Servers running from the store's endpoint directories that the store does not know (its
    state file was lost) are stopped too when their endpoint's name matches.

    Example: python3 run_pipeline.py cleanup --prefix iris-
    """
    try:
        report = _operations(ctx).cleanup(endpoint_name=endpoint_name, prefix=prefix, everything=everything,
                                          prune=prune, keep=keep)
    except PipelineError as err:
        _fail(err, bool(ctx.obj.get("verbose")))
        return
    for name in report.removed:
        click.echo(f"removed endpoint {name}")
    for name in report.unrecorded_stopped:
        click.echo(f"stopped the servers of {name}, which the store did not know")
    for kind, deleted in report.deleted.items():
        for name in deleted:
            click.echo(f"deleted {kind} {name}")
    for name, pruned in report.pruned.items():
        click.echo(f"{name}: pruned {len(pruned)} old version(s)")
    if not report.removed and not report.unrecorded_stopped and not prune:
        click.echo("no endpoints matched")


def _describe_bake(split: dict[str, Any]) -> str:
    """``v2 gets 10% of requests, interval 2 of 9, 40s of 60s left`` (as much as the split recorded)."""
    share = "a shadow copy of every request" if split.get("mode") == "shadow" else \
        f"{split.get('percent')}% of requests"
    text = f"{split.get('candidate_version')} gets {share}"
    if split.get("interval") and split.get("intervals"):
        text += f", interval {split['interval']} of {split['intervals']}"
    try:
        elapsed = (datetime.now(UTC) - datetime.fromisoformat(split["since"])).total_seconds()
        text += f", {max(0.0, float(split['seconds']) - elapsed):.0f}s of {float(split['seconds']):g}s left"
    except (KeyError, TypeError, ValueError):  # a split written before these were recorded
        pass
    return text


