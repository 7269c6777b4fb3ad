"""``db upgrade`` and ``db revision``: the store's schema, which a shared store upgrades only when asked."""
from __future__ import annotations

import click

from pipeline.cli.run_command import _fail, _subcommand_config, cli
from pipeline.errors import PipelineError
from pipeline.state import database


@cli.group()
def db() -> None:
    """The store's schema revision (SQLite in --store-dir, or the shared --store-url).

    Example: python3 run_pipeline.py --store-url postgresql://mlops@db.example:5432/mlops db upgrade
    """


def _url(ctx: click.Context, create: bool = False) -> str:
    """The store's URL; with ``create``, a SQLite store's directory is made first (``db upgrade`` on a fresh
    checkout creates the store there, as any first command does)."""
    config = _subcommand_config(ctx.parent or ctx)
    if config.shared_store_url:
        return config.shared_store_url
    directory = database.store_path(config.store_dir)
    if create:
        directory.mkdir(parents=True, exist_ok=True)
    return database.sqlite_url(directory)


@db.command("revision")
@click.pass_context
def db_revision(ctx: click.Context) -> None:
    """The store's schema revision and this tool's.

    Example: python3 run_pipeline.py db revision
    """
    url = _url(ctx)
    try:
        found = database.revision_of(url) if url.startswith("postgres") or database.sqlite_path(url).is_file() \
            else None
    except PipelineError as err:
        _fail(err, False)
        return
    click.echo(f"{database.redacted(url)}: revision {found or 'none (empty)'}; this tool's: {database.HEAD}")


@db.command("upgrade")
@click.pass_context
def db_upgrade(ctx: click.Context) -> None:
    """Upgrade the store's schema to this tool's revision, under the lock every first use takes. A shared store is
    upgraded only so: after it, every machine that uses the store needs this tool's version or newer.

    Example: python3 run_pipeline.py --store-url postgresql://mlops@db.example:5432/mlops db upgrade
    """
    url = _url(ctx, create=True)
    try:
        before, after = database.upgrade(url)
    except PipelineError as err:
        _fail(err, False)
        return
    if before == after:
        click.echo(f"{database.redacted(url)}: already at revision {after}")
    else:
        click.echo(f"{database.redacted(url)}: upgraded from revision {before or 'none (empty)'} to {after}")
