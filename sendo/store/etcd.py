"""etcd v3 store: one etcd key per object, resourceVersion = the key's mod revision.

``etcd://h1:2379,h2:2379[/prefix][?cacert=…&cert=…&key=…&compact_interval=300]``.
Keys are sendo's (``/registry/<resource>/<ns>/<name>``, as Kubernetes lays them out),
behind an optional prefix so several clusters can share one etcd. Every write is one
etcd transaction that compares the key's create or mod revision (the compare-and-swap
the API's optimistic concurrency needs); the revision etcd gives the write becomes the
object's resourceVersion when it is read (``versioner.py``), so any number of servers
can write to one etcd.

The gRPC protocol and the multiplexed watch stream come from ``aetcd``; the channel is
made here, so one URL can name several members (gRPC fails over between them) and can
ask for TLS. Each server follows every write under the prefix with one "feed" watch,
so ``revision`` is the cluster's, not only this server's; an API watch is its own etcd
watch from its revision, and a revision older than etcd's compaction point ends it with
``Compacted`` (the API's 410 Gone). Compaction runs periodically: each server compacts
to the revision it saw one interval earlier, so every watcher has at least an interval
of history.
"""
from __future__ import annotations

import asyncio
import collections
import logging
import socket
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import aetcd.exceptions as etcd_errors
import grpc
from aetcd import rpc
from aetcd.utils import prefix_range_end
from aetcd.watcher import Watcher

from ..tasks import stop_tasks
from .encryption import IDENTITY, Transformer
from .base import KV, Compacted, Conflict, DatastoreURLError, Event, KeyExists, KeyNotFound, StoreError

log = logging.getLogger(__name__)

COMPACT_KEY = "compact_rev_key"  # outside every /… key: the last compaction point, as kube-apiserver keeps it
LIST_PAGE = 1000  # keys per range request of a list (one gRPC message stays small)
WATCH_QUEUE_LIMIT = 50_000  # a watcher further behind than this is closed; its client re-lists
WATCH_QUEUE_BYTES = 64 << 20
REQUEST_TIMEOUT = 30.0  # seconds an etcd request may take before it fails (an etcd that does not answer)
_OPTIONS = {"compact_interval", "cacert", "cert", "key", "timeout"}


@dataclass
class EtcdConfig:
    endpoints: list[tuple[str, int]]
    prefix: str = ""
    cacert: str | None = None
    cert: str | None = None
    key: str | None = None
    compact_interval: float = 300.0
    timeout: float = REQUEST_TIMEOUT

    @classmethod
    def parse(cls, url: str) -> "EtcdConfig":
        parts = urlsplit(url)
        endpoints = []
        for hp in filter(None, parts.netloc.split(",")):
            host, _, port = hp.rpartition(":")
            if not host or not port.isdigit():
                raise DatastoreURLError(f"{url!r}: each etcd endpoint is host:port (e.g. etcd://127.0.0.1:2379)")
            endpoints.append((host.strip("[]"), int(port)))
        if not endpoints:
            raise DatastoreURLError(f"{url!r}: name at least one etcd endpoint, e.g. etcd://127.0.0.1:2379")
        q = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        unknown = set(q) - _OPTIONS
        if unknown:
            raise DatastoreURLError(f"{url!r}: unknown option {sorted(unknown)[0]!r} "
                                    f"(known: {', '.join(sorted(_OPTIONS))})")
        cfg = cls(endpoints, unquote(parts.path).rstrip("/"), q.get("cacert"), q.get("cert"), q.get("key"))
        for name in ("compact_interval", "timeout"):
            if name in q:
                try:
                    setattr(cfg, name, float(q[name]))
                except ValueError:
                    raise DatastoreURLError(f"{url!r}: {name} is a number of seconds") from None
        if bool(cfg.cert) != bool(cfg.key):
            raise DatastoreURLError(f"{url!r}: a client certificate needs both cert= and key=")
        return cfg

    @property
    def tls(self) -> bool:
        return bool(self.cacert or self.cert)

    def target(self) -> tuple[str, list[tuple[str, Any]]]:
        """The gRPC target for every endpoint (addresses resolved now) and the channel options."""
        addrs = []
        for host, port in self.endpoints:
            try:
                infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            except socket.gaierror as e:
                raise StoreError(f"etcd endpoint {host}:{port}: {e}") from None
            ip = infos[0][4][0]
            addrs.append(f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}")
        scheme = "ipv6" if all(a.startswith("[") for a in addrs) else "ipv4"
        options: list[tuple[str, Any]] = [("grpc.max_receive_message_length", 256 << 20),
                                          ("grpc.max_send_message_length", 256 << 20),
                                          ("grpc.keepalive_time_ms", 10_000),
                                          ("grpc.keepalive_timeout_ms", 5_000),
                                          ("grpc.keepalive_permit_without_calls", 1),
                                          ("grpc.initial_reconnect_backoff_ms", 200),
                                          ("grpc.max_reconnect_backoff_ms", 2_000)]
        host = self.endpoints[0][0]
        if self.tls and not _is_ip(host):
            options.append(("grpc.ssl_target_name_override", host))
        return f"{scheme}:{','.join(addrs)}", options

    def channel(self) -> grpc.aio.Channel:
        target, options = self.target()
        if not self.tls:
            return grpc.aio.insecure_channel(target, options=options)

        def read(path: str | None) -> bytes | None:
            if not path:
                return None
            try:
                with open(path, "rb") as f:
                    return f.read()
            except OSError as e:
                raise StoreError(f"etcd TLS file {path}: {e.strerror}") from None
        creds = grpc.ssl_channel_credentials(read(self.cacert), read(self.key), read(self.cert))
        return grpc.aio.secure_channel(target, creds, options=options)


def _is_ip(host: str) -> bool:
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
        return True
    except OSError:
        return False


def _kv(t: Transformer, key: str, pkv: Any, mod_rev: int | None = None) -> KV:
    """A KV from etcd's, its value opened by the store's transformer (a sealed Secret)."""
    return KV.stored(key, t.from_disk(key, bytes(pkv.value)), mod_rev or pkv.mod_revision, pkv.create_revision)


@dataclass(eq=False)
class EtcdWatch:
    """A subscription: events under prefix with revision > after, from etcd's watch stream."""

    store: "EtcdStore"
    prefix: str
    after: int
    queue: asyncio.Queue = field(default_factory=asyncio.Queue)
    queued_bytes: int = 0
    closed: bool = False
    error: Exception | None = None
    watch_id: int | None = None
    _starting: asyncio.Task | None = None

    def __aiter__(self):
        return self

    async def __anext__(self) -> Event:
        if self._starting is None and not self.closed:
            self._starting = asyncio.create_task(self._start())
        item = await self.queue.get()
        if item is None:
            self.queue.put_nowait(None)  # every later call ends too
            if self.error:
                raise self.error
            raise StopAsyncIteration
        self.queued_bytes -= item.kv.size
        self.after = item.kv.mod_rev
        return item

    @property
    def progress(self) -> int:
        """Every event under the prefix up to this revision has been delivered."""
        return self.after

    async def _start(self) -> None:
        store = self.store
        try:
            cb = await store._watcher.add_callback(
                store._k(self.prefix), self._on_event, range_end=prefix_range_end(store._k(self.prefix)),
                start_revision=self.after + 1, prev_kv=True)
        except Exception as e:
            self._fail(store._error(e, self.after + 1))
            return
        self.watch_id = cb.watch_id
        if self.closed:
            await store._cancel_watch(self.watch_id)

    async def _on_event(self, ev: Any) -> None:
        if self.closed:
            return
        if isinstance(ev, Exception) or ev is None:
            self._fail(self.store._error(ev, self.after + 1) if ev is not None else StoreError("etcd watch ended"))
            return
        key = ev.kv.key.decode()[len(self.store.prefix):]
        if ev.kind == "DELETE":
            prev = _kv(self.store.transformer, key, ev.prev_kv) if ev.prev_kv is not None else None
            if prev is None:  # its last value was compacted away: the delete still says which key went
                kv = KV.stored(key, b"{}", ev.kv.mod_revision, 0)
            else:
                kv = KV.stored(key, prev.data, ev.kv.mod_revision, prev.create_rev)
            out = Event("delete", kv, prev)
        else:
            t = self.store.transformer
            out = Event("create" if ev.kv.version == 1 else "update", _kv(t, key, ev.kv),
                        _kv(t, key, ev.prev_kv) if ev.prev_kv is not None else None)
        if self.queue.qsize() >= WATCH_QUEUE_LIMIT or self.queued_bytes + out.kv.size > self.store.watch_queue_bytes:
            while not self.queue.empty():
                self.queue.get_nowait()
            self.queued_bytes = 0
            self._fail(StoreError("watcher fell too far behind"))
            return
        self.queued_bytes += out.kv.size
        self.queue.put_nowait(out)

    def _fail(self, err: Exception) -> None:
        if not self.closed:
            self.error = err
            self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.queue.put_nowait(None)
        self.store._watches.discard(self)
        if self.watch_id is not None:
            self.store._spawn(self.store._cancel_watch(self.watch_id))


class EtcdStore:
    def __init__(self, cfg: EtcdConfig, *, watch_queue_bytes: int = WATCH_QUEUE_BYTES):
        self.cfg = cfg
        self.prefix = cfg.prefix
        self.watch_queue_bytes = watch_queue_bytes
        # what values go through on their way to and from etcd (Secrets sealed: encryption.py)
        self.transformer: Transformer = IDENTITY
        self._rev = 0
        self._compact_rev = 0
        self._channel: grpc.aio.Channel | None = None
        self._kv: Any = None
        self._watcher: Any = None
        self._maint: Any = None
        self._tasks: list[asyncio.Task] = []
        self._bg: set[asyncio.Task] = set()
        self._watches: set[EtcdWatch] = set()
        self._seen: collections.deque[tuple[float, int]] = collections.deque()  # (time, revision) for compaction

    @classmethod
    def from_url(cls, url: str) -> "EtcdStore":
        return cls(EtcdConfig.parse(url))

    def _k(self, key: str) -> bytes:
        return (self.prefix + key).encode()

    # ----------------------------------------------------------------- lifecycle
    async def start(self) -> None:
        self._channel = self.cfg.channel()
        self._kv = rpc.KVStub(self._channel)
        self._maint = rpc.MaintenanceStub(self._channel)
        self._watcher = Watcher(rpc.WatchStub(self._channel), timeout=self.cfg.timeout)
        resp = await self._call(self._kv.Range, rpc.RangeRequest(key=self._k(COMPACT_KEY)))
        self._rev = resp.header.revision
        if resp.kvs:
            try:
                self._compact_rev = int(resp.kvs[0].value)
            except ValueError:
                pass
        self._tasks = [asyncio.create_task(self._feed(), name="etcd-feed"),
                       asyncio.create_task(self._compactor(), name="etcd-compactor")]

    async def close(self) -> None:
        await stop_tasks(self._tasks, "store task")
        self._tasks = []
        for w in list(self._watches):
            w.close()
        if self._bg:
            await asyncio.gather(*self._bg, return_exceptions=True)
        if self._watcher is not None:
            try:
                await asyncio.wait_for(self._watcher.shutdown(), 5)
            except Exception:
                pass
        if self._channel is not None:
            await self._channel.close()
            self._channel = None

    def _spawn(self, coro) -> None:
        t = asyncio.get_running_loop().create_task(coro)
        self._bg.add(t)
        t.add_done_callback(self._bg.discard)

    async def _cancel_watch(self, watch_id: int) -> None:
        try:
            await self._watcher.cancel(watch_id)
        except Exception:
            pass

    # ----------------------------------------------------------------- calls and errors
    def _error(self, e: BaseException | None, requested: int = 0) -> Exception:
        """A store error for what etcd or gRPC raised."""
        if isinstance(e, etcd_errors.RevisionCompactedError):
            self._compact_rev = max(self._compact_rev, e.compacted_revision)
            return Compacted(requested, e.compacted_revision)
        if isinstance(e, grpc.aio.AioRpcError):
            details = e.details() or ""
            if e.code() == grpc.StatusCode.OUT_OF_RANGE and "compacted" in details:
                return Compacted(requested, self._compact_rev)
            if "future revision" in details:
                return StoreError(f"revision {requested} is in the future (current {self._rev})")
            return StoreError(f"etcd: {e.code().name.lower()}: {details}")
        if isinstance(e, StoreError):
            return e
        return StoreError(f"etcd: {e!r}")

    async def _call(self, method, request, requested: int = 0):
        if self._kv is None:
            raise StoreError("store is not started")
        try:
            resp = await method(request, timeout=self.cfg.timeout)
        except grpc.aio.AioRpcError as e:
            raise self._error(e, requested) from None
        header = getattr(resp, "header", None)
        if header is not None and header.revision > self._rev:
            self._rev = header.revision
        return resp

    # ----------------------------------------------------------------- reads
    @property
    def revision(self) -> int:
        return self._rev

    @property
    def compact_revision(self) -> int:
        return self._compact_rev

    async def latest_revision(self) -> int:
        """The cluster's newest revision, asked of etcd (another server may have written)."""
        await self._call(self._kv.Range, rpc.RangeRequest(key=self._k(COMPACT_KEY), count_only=True))
        return self._rev

    async def get(self, key: str) -> KV | None:
        resp = await self._call(self._kv.Range, rpc.RangeRequest(key=self._k(key)))
        return _kv(self.transformer, key, resp.kvs[0]) if resp.kvs else None

    async def list(self, prefix: str, revision: int = 0) -> tuple[list[KV], int]:
        start, end = self._k(prefix), prefix_range_end(self._k(prefix))
        out: list[KV] = []
        cut = len(self.prefix)
        while True:
            resp = await self._call(self._kv.Range, rpc.RangeRequest(key=start, range_end=end, revision=revision,
                                                                     limit=LIST_PAGE), revision)
            revision = revision or resp.header.revision
            out.extend(_kv(self.transformer, pkv.key.decode()[cut:], pkv) for pkv in resp.kvs)
            if not resp.more or not resp.kvs:
                return out, revision
            start = resp.kvs[-1].key + b"\0"

    async def count(self, prefix: str) -> int:
        resp = await self._call(self._kv.Range, rpc.RangeRequest(
            key=self._k(prefix), range_end=prefix_range_end(self._k(prefix)), count_only=True))
        return resp.count

    # ----------------------------------------------------------------- writes
    def _txn(self, key: bytes, target: str, value: int, result: int, success: list) -> Any:
        cmp = rpc.Compare(key=key, target=getattr(rpc.Compare, target), result=result)
        setattr(cmp, {"CREATE": "create_revision", "MOD": "mod_revision"}[target], value)
        return rpc.TxnRequest(compare=[cmp], success=success,
                              failure=[rpc.RequestOp(request_range=rpc.RangeRequest(key=key))])

    def _refused(self, key: str, resp: Any, expected_rev: int | None) -> StoreError:
        kvs = resp.responses[0].response_range.kvs
        if not kvs:
            return KeyNotFound(key)
        return Conflict(kvs[0].mod_revision) if expected_rev is not None else KeyExists(key)

    async def _cas(self, key: str, expected_rev: int | None, op: Any) -> Any:
        """``op`` on an existing key, at ``expected_rev`` if one is given; KeyNotFound or Conflict if not."""
        k = self._k(key)
        if expected_rev is None:
            req = self._txn(k, "CREATE", 0, rpc.Compare.GREATER, [op])
        else:
            req = self._txn(k, "MOD", expected_rev, rpc.Compare.EQUAL, [op])
        resp = await self._call(self._kv.Txn, req)
        if not resp.succeeded:
            raise self._refused(key, resp, expected_rev)
        return resp

    async def create(self, key: str, data: bytes) -> KV:
        k = self._k(key)
        resp = await self._call(self._kv.Txn, self._txn(k, "CREATE", 0, rpc.Compare.EQUAL, [
            rpc.RequestOp(request_put=rpc.PutRequest(key=k, value=self.transformer.to_disk(key, data)))]))
        if not resp.succeeded:
            raise KeyExists(key)
        rev = resp.header.revision
        return KV.stored(key, data, rev, rev)

    async def update(self, key: str, data: bytes, expected_rev: int | None = None) -> KV:
        k = self._k(key)
        resp = await self._cas(key, expected_rev,
                               rpc.RequestOp(request_put=rpc.PutRequest(key=k, value=self.transformer.to_disk(key, data),
                                                                        prev_kv=True)))
        prev = resp.responses[0].response_put.prev_kv
        return KV.stored(key, data, resp.header.revision, prev.create_revision)

    async def delete(self, key: str, expected_rev: int | None = None, data: bytes | None = None) -> KV:
        if data is not None:
            # the object's last state is written first (its own revision), then deleted: a delete in
            # etcd keeps no value, and its event carries the value before it (prev_kv)
            expected_rev = (await self.update(key, data, expected_rev)).mod_rev
        resp = await self._cas(key, expected_rev, rpc.RequestOp(
            request_delete_range=rpc.DeleteRangeRequest(key=self._k(key), prev_kv=True)))
        prev = resp.responses[0].response_delete_range.prev_kvs[0]
        return KV.stored(key, self.transformer.from_disk(key, bytes(prev.value)), resp.header.revision,
                         prev.create_revision)

    # ----------------------------------------------------------------- watch
    def watch(self, prefix: str, from_rev: int = 0) -> EtcdWatch:
        """Events under prefix with revision > from_rev (0: only new events)."""
        if from_rev and from_rev < self._compact_rev:
            raise Compacted(from_rev, self._compact_rev)
        w = EtcdWatch(self, prefix, from_rev or self._rev)
        self._watches.add(w)
        return w

    async def _feed(self) -> None:
        """Follow every write under the prefix, so ``revision`` is the cluster's newest."""
        start, end = self._k("/"), prefix_range_end(self._k("/"))
        while True:
            events: asyncio.Queue = asyncio.Queue()
            cb = None
            try:
                cb = await self._watcher.add_callback(start, events.put, range_end=end,
                                                      start_revision=self._rev + 1, progress_notify=True)
                while True:
                    ev = await events.get()
                    if isinstance(ev, Exception) or ev is None:
                        raise ev or StoreError("feed ended")
                    if ev.kv.mod_revision > self._rev:
                        self._rev = ev.kv.mod_revision
            except asyncio.CancelledError:
                raise
            except Exception as e:
                if isinstance(e, etcd_errors.RevisionCompactedError):
                    self._compact_rev = max(self._compact_rev, e.compacted_revision)
                log.warning("etcd feed watch ended (%s); following again", e)
                if cb is not None and cb.watch_id is not None:
                    await self._cancel_watch(cb.watch_id)
                await asyncio.sleep(0.5)
                try:
                    await self.latest_revision()
                except StoreError:
                    pass

    # ----------------------------------------------------------------- compaction
    async def compact(self, revision: int) -> None:
        revision = min(revision, self._rev)
        if revision <= self._compact_rev:
            return
        try:
            await self._call(self._maint_compact, rpc.CompactionRequest(revision=revision), revision)
        except Compacted:
            pass  # another server compacted past it already
        self._compact_rev = max(self._compact_rev, revision)
        await self._call(self._kv.Put, rpc.PutRequest(key=self._k(COMPACT_KEY), value=str(self._compact_rev).encode()))

    async def _maint_compact(self, request, timeout=None):
        return await self._kv.Compact(request, timeout=timeout)

    async def _compactor(self) -> None:
        """Every interval, compact to the revision seen one interval before (several servers
        doing so is harmless: etcd keeps the highest point)."""
        interval = self.cfg.compact_interval
        if interval <= 0:
            return
        while True:
            self._seen.append((time.monotonic(), self._rev))
            await asyncio.sleep(interval)
            now = time.monotonic()
            target = 0
            while self._seen and now - self._seen[0][0] >= interval * 0.99:
                target = self._seen.popleft()[1]
            if target > self._compact_rev:
                try:
                    await self.compact(target)
                except StoreError as e:
                    log.warning("etcd compaction to %d failed: %s", target, e)
