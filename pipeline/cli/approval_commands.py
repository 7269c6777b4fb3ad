"""``approve JOB`` and ``reject JOB``: a person's decision about a model, with their name and reason, in the audit
trail (and SageMaker's Model Registry for a SageMaker job)."""
from __future__ import annotations

import click

from pipeline.cli.rollout_commands import acting_person
from pipeline.cli.run_command import _fail, _operations, cli
from pipeline.errors import PipelineError
from pipeline.gate.decision import ApprovalStatus


def _decide(ctx: click.Context, training_job: str, status: ApprovalStatus, reason: str, by: str | None) -> None:
    try:
        approval = _operations(ctx).decide_on_model(training_job, status, acting_person(by), reason)
    except PipelineError as err:
        _fail(err, False)
        return
    overrides = " (it overrides the gate, which had held it)" if approval.overrides_gate else ""
    click.echo(f"{training_job}: {approval.status} by {approval.by}{overrides}: {approval.reason} "
               f"(model sha256 {(approval.model_sha256 or '')[:12]})")


@cli.command()
@click.argument("training_job")
@click.option("--reason", required=True, help="Why: it goes into the audit trail with your name.")
@click.option("--by", help="Who approves (default: GITLAB_USER_LOGIN, else the OS user).")
@click.pass_context
def approve(ctx: click.Context, training_job: str, reason: str, by: str | None) -> None:
    """Approve a training job's model for deployment (approval_required asks for one). A model the gate rejected is
    never approved; approving one it held overrides the gate, and says so.

    Example: python3 run_pipeline.py approve iris-classifier-20261201-090000 --reason "reviewed the report" --by alice
    """
    _decide(ctx, training_job, ApprovalStatus.APPROVED, reason, by)


@cli.command()
@click.argument("training_job")
@click.option("--reason", required=True, help="Why: it goes into the audit trail with your name.")
@click.option("--by", help="Who rejects (default: GITLAB_USER_LOGIN, else the OS user).")
@click.pass_context
def reject(ctx: click.Context, training_job: str, reason: str, by: str | None) -> None:
    """Reject a training job's model: it is never deployed, and a deployment of it says who rejected it and why.

    Example: python3 run_pipeline.py reject iris-classifier-20261201-090000 --reason "trained on last week's bad data"
    """
    _decide(ctx, training_job, ApprovalStatus.REJECTED, reason, by)
