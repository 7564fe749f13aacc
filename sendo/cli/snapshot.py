"""`sendo snapshot save|ls|restore|prune`: snapshots of a cluster's store (sendo/store/snapshot.py)."""
from __future__ import annotations

import datetime as dt
import os
from typing import Optional

import typer
from rich.console import Console

from .defaults import DEFAULT_DATA_DIR

snapshot_app = typer.Typer(help="Save, list, restore and prune snapshots of the cluster's store.",
                           no_args_is_help=True)
console = Console(stderr=True, highlight=False, soft_wrap=True)  # an error is one line, however long
_DATASTORE_HELP = ("The store to snapshot, e.g. etcd://127.0.0.1:2379. Default: the one the server of "
                   "DATA_DIR uses (its SQLite file unless it was started with --datastore).")


def fail(e: Exception) -> None:
    console.print(f"[red]error:[/] {e}")
    raise typer.Exit(1)


@snapshot_app.command("save")
def save(file: Optional[str] = typer.Argument(None, help="Where to write it. Default: DATA_DIR/snapshots/."),
         data_dir: str = typer.Option(DEFAULT_DATA_DIR, help="The server's data dir."),
         datastore: Optional[str] = typer.Option(None, help=_DATASTORE_HELP, show_default=False)):
    """Snapshot the store while the cluster runs; the snapshot's path is the last line printed."""
    from ..store.snapshot import SnapshotError, save as do_save
    try:
        info = do_save(os.path.abspath(data_dir), datastore, os.path.abspath(file) if file else None)
    except SnapshotError as e:
        fail(e)
    console.print(f"{info.kind} snapshot at revision {info.revision}: {info.keys} keys, {info.size} bytes")
    print(info.path, flush=True)


@snapshot_app.command("ls")
def ls(data_dir: str = typer.Option(DEFAULT_DATA_DIR, help="The server's data dir.")):
    """The snapshots kept under DATA_DIR/snapshots, oldest first."""
    from ..store.snapshot import listing
    for s in listing(os.path.abspath(data_dir)):
        when = dt.datetime.fromtimestamp(os.path.getmtime(s.path), dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")
        print(f"{s.path}\t{s.kind}\t{s.size}\t{when}")


@snapshot_app.command("prune")
def prune(data_dir: str = typer.Option(DEFAULT_DATA_DIR, help="The server's data dir."),
          retention: int = typer.Option(5, help="How many of the newest snapshots to keep.")):
    """Delete all but the newest RETENTION snapshots under DATA_DIR/snapshots."""
    from ..store.snapshot import SnapshotError, prune as do_prune
    try:
        for p in do_prune(os.path.abspath(data_dir), retention):
            print(f"deleted {p}")
    except SnapshotError as e:
        fail(e)


@snapshot_app.command("restore")
def restore(file: str = typer.Argument(..., help="A snapshot `sendo snapshot save` wrote."),
            data_dir: str = typer.Option(..., help="A new data dir to prepare (nothing in it is overwritten)."),
            etcd_name: str = typer.Option("default", help="etcd snapshots: the name of the member to start."),
            etcd_peer_url: str = typer.Option("http://127.0.0.1:2380", help="etcd snapshots: its peer URL.")):
    """Prepare a data dir a server starts from with every object of the snapshot."""
    from ..store.snapshot import SnapshotError, restore as do_restore
    try:
        r = do_restore(os.path.abspath(file), data_dir, etcd_name, etcd_peer_url)
    except SnapshotError as e:
        fail(e)
    console.print(f"restored {r.info.keys} keys at revision {r.info.revision} into {r.store_path}")
    if r.info.kind == "sqlite":
        console.print(f"start it:  sendo up --data-dir {r.data_dir}   (or sendo server --data-dir {r.data_dir})")
    else:
        console.print(f"start etcd on it:  etcd --name {etcd_name} --data-dir {r.store_path} "
                      f"--listen-peer-urls {etcd_peer_url} --initial-advertise-peer-urls {etcd_peer_url} "
                      f"--initial-cluster {etcd_name}={etcd_peer_url} --listen-client-urls http://127.0.0.1:2379 "
                      f"--advertise-client-urls http://127.0.0.1:2379\n"
                      f"then:  sendo server --data-dir {r.data_dir} --datastore etcd://127.0.0.1:2379")
    print(r.store_path, flush=True)
