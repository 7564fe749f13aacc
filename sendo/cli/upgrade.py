"""`sendo upgrade rollback`: a data dir back to the snapshot written before its store was migrated."""
from __future__ import annotations

import os

import typer

from .defaults import DEFAULT_DATA_DIR
from .snapshot import console, fail

upgrade_app = typer.Typer(help="Upgrades: a newer sendo migrates the store on start, after a snapshot; "
                               "rollback returns to that snapshot.", no_args_is_help=True)


@upgrade_app.callback()
def _group() -> None:
    """Keep `rollback` a subcommand (typer runs a lone command as the group itself)."""


@upgrade_app.command("rollback")
def rollback(data_dir: str = typer.Option(DEFAULT_DATA_DIR, help="The data dir of the stopped server.")):
    """Put back the store as it was before the last migration (the server must be stopped); then
    start the older sendo on DATA_DIR. The migrated store is kept beside it."""
    from ..store import StoreError
    from ..store.schema import rollback as do_rollback
    try:
        r = do_rollback(os.path.abspath(data_dir))
    except StoreError as e:  # no record, a server running, the snapshot damaged or gone: one line
        fail(e)
    console.print(f"rolled back to {r.snapshot} (store schema {r.version}); the migrated store is kept in {r.kept}")
    print(r.snapshot, flush=True)
