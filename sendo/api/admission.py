"""Admission steps that give new objects what the cluster allocates.

* a node's podCIDR: pod IPs are loopback addresses (127.0.0.0/8 is local on Linux
  without any set-up), so every node gets its own block of 127.64.0.0/10 and pods on
  different nodes of one machine never collide;
* a Service's cluster IP, from 127.32.0.0/16 (127.32.0.1 is the ``kubernetes``
  Service's), and its node ports, from 30000-32767;
* a pod's tolerations of the not-ready and unreachable NoExecute taints, for the
  seconds the server's flags say (DefaultTolerationSeconds).

The service allocator keeps no table of its own that a delete would have to update:
what is taken is read from the stored Services (refreshed when the store's revision
has moved, decoding only the Services that changed), plus the addresses it handed to
creates that are still in flight. A deleted Service frees its IP and ports by being
gone from the store.

Several API servers can share one store: every value handed out is also claimed with
a compare-and-swap on a store key of its own (``claims.py``), so two servers that pick
the same address at the same moment cannot both have it; the loser picks again.
"""
from __future__ import annotations

import asyncio
import copy
import ipaddress
import logging
import random
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

import orjson

from ..kinds.base import Cause, Obj
from ..kinds.cluster import CONTAINER_CIDR_ANNOTATION
from ..kinds.podspec import DEFAULT_TOLERATION_SECONDS, add_default_tolerations
from ..kinds.validation import go_value
from . import errors
from .claims import Claim, RangeClaims
from .defaultclass import DefaultStorageClass
from .quota import LimitRanger

POD_NETWORK = ipaddress.ip_network("127.64.0.0/10")
NODE_BLOCK_PREFIX = 22  # 1,022 pod IPs per node, 4,096 nodes

SERVICE_NETWORK = ipaddress.ip_network("127.32.0.0/16")
KUBERNETES_SERVICE_IP = "127.32.0.1"  # the first usable address: the `kubernetes` Service in `default`
NODE_PORTS = range(30000, 32768)
IN_FLIGHT_SECONDS = 60.0  # a reservation outlives no create: this only bounds a leak if one is never seen to end
CLAIM_ATTEMPTS = 8  # picks per request when other API servers take the values picked first
FULL_RECHECK_SECONDS = 5.0  # a full container range is read again at most this often (freed blocks are seen then)

log = logging.getLogger(__name__)
Admit = Callable[[Obj], Awaitable[None]]
AdmitUpdate = Callable[[Obj, Obj], Awaitable[None]]


class NodeCIDRAllocator:
    """Assigns spec.podCIDR on Node create, once, claiming the block in the store (``claims.py``)
    so that nodes registering with different API servers never share one.

    What is taken is kept in memory (``_taken``): read from the stored Nodes and claims once,
    then grown by what this allocator gives and by the claims it finds in place, so a create
    costs one claim (a store create) and no list however many Nodes there are. The view may
    miss what other servers gave since it was read; the claim key guards every block (a named
    block is claimed too), and a claim found in place is checked against its owner Node as
    stored now. The cursor goes round the range, so the block of a deleted node is given out
    again only after every other block has been: when the view has nothing free, it is read
    again (at most every ``full_recheck_seconds`` for an allocator that refuses no Node)."""

    claims_name = "podcidrs"
    full_recheck_seconds = 0.0  # a full range refuses the Node: read the store again before each refusal

    def __init__(self, store, nodes_resource, network: ipaddress.IPv4Network = POD_NETWORK,
                 block_prefix: int = NODE_BLOCK_PREFIX):
        self.store = store
        self.nodes = nodes_resource
        self.network = network
        self.blocks = [str(b) for b in network.subnets(new_prefix=block_prefix)]
        self._ours = set(self.blocks)
        self.cursor: int | None = None
        self.claims = RangeClaims(store, self.claims_name)
        self._in_flight: dict[str, asyncio.Task] = {}  # block -> the request it was given to
        self._seen: dict[str, tuple[int, str | None]] = {}  # node key -> (mod_rev, podCIDR), decoded once
        self._taken: set[str] | None = None  # blocks known to be held; None until first read
        self._read_at = -float("inf")
        self._reads = 0
        self._reading = asyncio.Lock()

    async def _read(self) -> None:
        """Read what is taken from the store: every stored Node's block and the blocks other
        servers are handing out now. One read at a time; a request that waited for another's
        read uses it."""
        reads = self._reads
        async with self._reading:
            if self._reads != reads:
                return
            kvs, _ = await self.store.list(self.nodes.prefix())
            seen = {}
            for kv in kvs:
                known = self._seen.get(kv.key)
                if known is None or known[0] != kv.mod_rev:
                    known = (kv.mod_rev, self.block_of(orjson.loads(kv.data)))
                seen[kv.key] = known
            self._seen = seen
            foreign = await self.claims.foreign_in_flight()
            self._taken = {cidr for _, cidr in seen.values() if cidr} | foreign.keys()
            self._read_at, self._reads = time.monotonic(), self._reads + 1

    async def _busy(self, c: Claim) -> bool:
        """Whether a claim found on a block still holds it: another server's write for it may be in
        flight, or its owner Node, as stored now, has the block."""
        if self.claims.in_flight_elsewhere(c):
            return True
        kv = await self.store.get(c.owner) if c.owner.startswith(self.nodes.prefix()) else None
        return kv is not None and self.block_of(orjson.loads(kv.data)) == c.value

    @staticmethod
    def block_of(node: Obj) -> str | None:
        spec = node.get("spec")
        value = spec.get("podCIDR") if isinstance(spec, dict) else None
        return value if isinstance(value, str) and value else None  # validation reports a malformed one

    def needs_block(self, node: Obj) -> bool:
        spec = node.setdefault("spec", {})
        return isinstance(spec, dict) and not spec.get("podCIDR")  # validation reports a malformed spec

    def assign(self, node: Obj, block: str) -> None:
        node["spec"]["podCIDR"] = block
        node["spec"]["podCIDRs"] = [block]

    async def __call__(self, obj: dict[str, Any]) -> None:
        meta = obj.get("metadata") or {}
        key = self.nodes.key(None, meta.get("name") or "")
        if not self.needs_block(obj):
            await self._claim_named(obj, key)
            return
        if self._taken is None:
            await self._read()
        read_here = False
        for _ in range(len(self.blocks) + 2):  # each turn reads once or learns one more block taken
            block = self._next()
            if block is None:
                if read_here or time.monotonic() - self._read_at < self.full_recheck_seconds:
                    raise errors.APIError(422, f"the pod network {self.network} has no free node block left",
                                          "Invalid")
                await self._read()
                read_here = True
                continue
            task = self._in_flight[block] = asyncio.current_task()  # until the Node is stored (or refused)
            won = await self.claims.claim(block, key, self._busy)
            assert self._taken is not None
            self._taken.add(block)  # ours now, or held elsewhere
            if won:
                self.assign(obj, block)
                return
            if self._in_flight.get(block) is task:
                del self._in_flight[block]
        raise errors.conflict("nodes", meta.get("name") or "", "too many concurrent pod CIDR allocations, try again")

    async def admit_update(self, obj: Obj, old: Obj) -> None:
        """A block an update sets (a podCIDR where there was none, the container annotation
        edited) is claimed as a block named at create is."""
        block = self.block_of(obj)
        if block and block != self.block_of(old):
            await self._claim_named(obj, self.nodes.key(None, (obj.get("metadata") or {}).get("name") or ""))

    async def _claim_named(self, obj: Obj, key: str) -> None:
        """A Node that names its block keeps it; the block is claimed too (if it is free), so other
        servers, whose views may not have this Node yet, do not give it out."""
        block = self.block_of(obj)
        if block not in self._ours:
            return
        if self._taken is not None:
            self._taken.add(block)
        await self.claims.claim(block, key, self._busy)

    def _next(self) -> str | None:
        """The next block after the cursor that is neither known taken nor being given; None if none."""
        assert self._taken is not None
        taken, n = self._taken, len(self.blocks)
        current = asyncio.current_task()  # a task that comes back is sequential: its earlier write is over
        self._in_flight = {b: t for b, t in self._in_flight.items() if not t.done() and t is not current}
        if self.cursor is None:
            # a new cluster starts at a random block, so two clusters on one machine
            # (parallel tests, a second `sendo up`) almost never share pod IPs
            self.cursor = random.randrange(n) if not taken else 0
        for i in range(n):
            block = self.blocks[(self.cursor + i) % n]
            if block not in taken and block not in self._in_flight:
                self.cursor = (self.cursor + i + 1) % n
                return block
        return None


CONTAINER_NETWORK = ipaddress.ip_network("10.244.0.0/16")  # the docker runtime's default (--container-cidr)
CONTAINER_BLOCK_PREFIX = 24  # the docker runtime's pod bridge on each node is a /24


class ContainerCIDRAllocator(NodeCIDRAllocator):
    """Node IPAM for container pods: a /24 of ``--container-cidr`` per node, in the Node's
    ``sendo.dev/container-pod-cidr`` annotation. Process pods have loopback IPs (spec.podCIDR),
    which no other host can reach; container pods sit on a bridge whose addresses other
    nodes route to this node (host-gateway routes, agent/noderoutes.py), so every node's
    bridge needs a block of its own of the one cluster-wide range."""

    claims_name = "containercidrs"
    full_recheck_seconds = FULL_RECHECK_SECONDS  # nodes beyond the range are normal (hollow nodes): no read each

    @staticmethod
    def block_of(node: Obj) -> str | None:
        annotations = (node.get("metadata") or {}).get("annotations")
        value = annotations.get(CONTAINER_CIDR_ANNOTATION) if isinstance(annotations, dict) else None
        return value if isinstance(value, str) and value else None

    def needs_block(self, node: Obj) -> bool:
        meta = node.get("metadata")
        return isinstance(meta, dict) and isinstance(meta.get("annotations") or {}, dict) \
            and self.block_of(node) is None

    def assign(self, node: Obj, block: str) -> None:
        node["metadata"]["annotations"] = {**(node["metadata"].get("annotations") or {}),
                                           CONTAINER_CIDR_ANNOTATION: block}

    async def __call__(self, obj: dict[str, Any]) -> None:
        """As the podCIDR's, except that a full range refuses no Node: one without a block runs
        its container pods on its runtime's first /24, reached from its own host only (a
        cluster of hollow nodes may well have more nodes than a /16 has /24s)."""
        try:
            await super().__call__(obj)
        except errors.APIError as e:
            if e.code != 422:
                raise
            log.warning("node %s gets no container pod block: %s", (obj.get("metadata") or {}).get("name"),
                        e.message)


def container_cidr(cidr: str) -> ipaddress.IPv4Network:
    """The docker runtime's cluster-wide pod range (--container-cidr), checked as the agent
    checks it: IPv4, at most /23, not loopback. Raises ValueError with a message for a person."""
    try:
        net = ipaddress.ip_network(cidr or str(CONTAINER_NETWORK))
    except ValueError as e:
        raise ValueError(f"invalid container CIDR {cidr!r}: {e}") from None
    if not isinstance(net, ipaddress.IPv4Network) or net.prefixlen > CONTAINER_BLOCK_PREFIX - 1 \
            or net.overlaps(LOOPBACK):
        raise ValueError(f"the container CIDR must be a non-loopback IPv4 range of at most "
                         f"/{CONTAINER_BLOCK_PREFIX - 1}, not {net}")
    return net


LOOPBACK = ipaddress.ip_network("127.0.0.0/8")
HOST_LOOPBACK = ipaddress.ip_network("127.0.0.0/16")  # 127.0.0.1 and the addresses agents listen on
MAX_NODE_BLOCKS_BITS = 16  # at most 65,536 node blocks


def cluster_cidr(cidr: str, mask_size: int) -> ipaddress.IPv4Network:
    """kube-controller-manager's --cluster-cidr and --node-cidr-mask-size, checked: the range
    node podCIDRs come from, a block of /mask_size per node. Pod IPs of the process runtime
    are loopback addresses, so the range is a part of 127.0.0.0/8 away from the host's own
    127.0.0.x and the Service range. Raises ValueError with a message for a person."""
    try:
        net = ipaddress.ip_network(cidr)
    except ValueError as e:
        raise ValueError(f"invalid cluster CIDR {cidr!r}: {e}") from None
    if not isinstance(net, ipaddress.IPv4Network) or not net.subnet_of(LOOPBACK):
        raise ValueError(f"cluster CIDR {cidr} is not inside {LOOPBACK}: pod IPs are loopback addresses of "
                         "their node (container pods are the ones other hosts reach: see --container-cidr)")
    for taken, what in ((HOST_LOOPBACK, "this machine's own loopback addresses"),
                        (SERVICE_NETWORK, "the Service cluster IPs")):
        if net.overlaps(taken):
            raise ValueError(f"cluster CIDR {cidr} overlaps {taken} ({what})")
    if not net.prefixlen < mask_size <= 30:
        raise ValueError(f"node CIDR mask size {mask_size} must be more than the cluster CIDR's /{net.prefixlen} "
                         "and at most 30")
    if mask_size - net.prefixlen > MAX_NODE_BLOCKS_BITS:
        raise ValueError(f"node CIDR mask size {mask_size} cuts {cidr} into more than "
                         f"{2 ** MAX_NODE_BLOCKS_BITS} node blocks: use a smaller mask size or a smaller range")
    return net


# ======================================================================= services


def _int(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def _dicts(v: Any) -> list[dict]:
    return [x for x in v if isinstance(x, dict)] if isinstance(v, list) else []


def _needs_node_ports(spec: dict) -> bool:
    stype = spec.get("type")
    return stype == "NodePort" or (stype == "LoadBalancer" and spec.get("allocateLoadBalancerNodePorts") is not False)


def _needs_health_check_port(spec: dict) -> bool:
    return spec.get("type") == "LoadBalancer" and spec.get("externalTrafficPolicy") == "Local"


@dataclass(slots=True)
class _Holding:
    """What one stored Service holds: cluster IPs (as integers) and node ports."""

    mod_rev: int
    ips: frozenset[int]
    ports: frozenset[int]


@dataclass(slots=True)
class _Reservation:
    """What a create or update that has not finished yet was given; it ends with the request's task."""

    key: str
    task: asyncio.Task | None
    expires: float
    ips: set[int] = field(default_factory=set)
    ports: set[int] = field(default_factory=set)


class ServiceAllocator:
    """Cluster IPs and node ports for Services, as Kubernetes' service REST storage gives them.

    Call it on create (an admission step) and ``admit_update`` on update. It raises a
    422 when a requested IP or port is taken or out of range. Everything runs between
    two awaits, so one event loop never hands the same address out twice.
    """

    def __init__(self, store, services_resource, network: ipaddress.IPv4Network = SERVICE_NETWORK,
                 node_ports: range = NODE_PORTS, reserved: tuple[str, ...] = (KUBERNETES_SERVICE_IP,),
                 clock: Callable[[], float] = time.monotonic):
        self.store = store
        self.services = services_resource
        self.network = network
        self.node_ports = node_ports
        self.clock = clock
        self._first = int(network.network_address) + 1  # network and broadcast addresses are never used
        self._last = int(network.broadcast_address) - 1
        self._never_dynamic = {int(ipaddress.ip_address(ip)) for ip in reserved}
        # start anywhere in the ranges, as Kubernetes' allocators pick at random: two clusters
        # on one machine (a second `sendo up`, parallel tests) then almost never give a Service
        # the same cluster IP or node port, whose listeners would collide on this host
        self._ip_cursor = random.randint(self._first, self._last)
        self._port_cursor = random.randrange(node_ports.start, node_ports.stop)
        self._rev = -1
        self._held: dict[str, _Holding] = {}
        self._ip_count: dict[int, int] = {}
        self._port_count: dict[int, int] = {}
        self._in_flight: list[_Reservation] = []
        self.ip_claims = RangeClaims(store, "serviceips")
        self.port_claims = RangeClaims(store, "servicenodeports", server=self.ip_claims.server)
        self._foreign_ips: dict[int, str] = {}  # value -> owner key, claimed by another server, maybe in flight
        self._foreign_ports: dict[int, str] = {}

    @property
    def node_port_range(self) -> str:
        return f"{self.node_ports.start}-{self.node_ports.stop - 1}"

    # ----------------------------------------------------------------- entry points
    async def __call__(self, obj: Obj) -> None:
        await self.admit(obj, None)

    async def admit_update(self, obj: Obj, old: Obj) -> None:
        await self.admit(obj, old)

    async def admit(self, obj: Obj, old: Obj | None) -> None:
        """Fill in and check the cluster IPs, IP families and node ports of a Service being written."""
        spec = obj.get("spec")
        if not isinstance(spec, dict) or self.services.strategy.validate(obj):
            return  # malformed: validation (which runs next) reports it; nothing is allocated for it
        meta = obj.get("metadata") or {}
        key = self.services.key(meta.get("namespace"), meta.get("name") or "")
        name = meta.get("name") or meta.get("generateName") or ""
        requested = copy.deepcopy(spec)
        for _ in range(CLAIM_ATTEMPTS):
            await self._refresh()
            reservation = self._reserve(spec, key, name, old)  # no await inside: one loop never gives a value twice
            if reservation is None or await self._claim(reservation):
                return
            # another server was first: pick again from what the request asked for
            self._in_flight = [r for r in self._in_flight if r is not reservation]
            obj["spec"] = spec = copy.deepcopy(requested)
        raise errors.conflict("services", name, "too many concurrent allocations, try again")

    def _reserve(self, spec: dict, key: str, name: str, old: Obj | None) -> _Reservation | None:
        task, now = asyncio.current_task(), self.clock()
        # a request's task ends when its write is stored (visible to _refresh) or has failed; a task that
        # comes back is sequential, so its earlier write is over too
        self._in_flight = [r for r in self._in_flight
                           if r.task is not None and r.task is not task and not r.task.done() and r.expires > now]
        causes: list[Cause] = []
        reservation = _Reservation(key, task, now + IN_FLIGHT_SECONDS)
        if spec.get("type") != "ExternalName":
            old_spec = (old or {}).get("spec") or {}
            if old is None or old_spec.get("type") == "ExternalName" or not old_spec.get("clusterIPs"):
                self._assign_cluster_ip(spec, key, reservation, causes)
            self._assign_node_ports(spec, key, reservation, causes)
        if causes:
            raise errors.invalid("Service", "", name, causes)
        if not (reservation.ips or reservation.ports):
            return None
        self._in_flight.append(reservation)
        return reservation

    async def _claim(self, res: _Reservation) -> bool:
        """Claim in the store what ``res`` was given and the Service does not hold yet; False if
        another server holds one of them."""
        own = self._held.get(res.key)
        wanted = [(self.ip_claims, str(ipaddress.ip_address(ip)), self._ip_count) for ip in res.ips
                  if own is None or ip not in own.ips]
        wanted += [(self.port_claims, str(p), self._port_count) for p in res.ports if own is None or p not in own.ports]

        def busy(claims: RangeClaims, counts: dict[int, int]):
            def held(c: Claim) -> bool:  # a stored Service has it, or another server's write may be in flight
                value = int(ipaddress.ip_address(c.value)) if claims is self.ip_claims else int(c.value)
                return counts.get(value, 0) > 0 or claims.in_flight_elsewhere(c)
            return held
        # one at a time, in one order (addresses, then ports, each as the request listed them):
        # claimed all at once, two servers' requests for the same address and port could each
        # win one, fail on the other and, seeing the other's claim in flight, both give up
        for claims, value, counts in wanted:
            if not await claims.claim(value, res.key, busy(claims, counts)):
                return False
        return True

    # ----------------------------------------------------------------- what is taken
    async def _refresh(self) -> None:
        """Bring the taken sets up to the store's latest revision, decoding only what changed,
        and learn what other API servers are handing out right now."""
        self._foreign_ips = {int(ipaddress.ip_address(v)): owner
                             for v, owner in (await self.ip_claims.foreign_in_flight()).items()}
        self._foreign_ports = {int(v): owner for v, owner in (await self.port_claims.foreign_in_flight()).items()}
        rev = self.store.revision
        if rev == self._rev:
            return
        kvs, self._rev = await self.store.list(self.services.prefix())
        seen = set()
        for kv in kvs:
            seen.add(kv.key)
            held = self._held.get(kv.key)
            if held is not None and held.mod_rev == kv.mod_rev:
                continue
            if held is not None:
                self._count(held, -1)
            try:
                spec = orjson.loads(kv.data).get("spec")
            except (orjson.JSONDecodeError, AttributeError):
                spec = None
            spec = spec if isinstance(spec, dict) else {}
            held = _Holding(kv.mod_rev, frozenset(self._ips_of(spec)), frozenset(self._ports_of(spec)))
            self._held[kv.key] = held
            self._count(held, 1)
        for gone in [k for k in self._held if k not in seen]:
            self._count(self._held.pop(gone), -1)

    def _count(self, held: _Holding, delta: int) -> None:
        for table, values in ((self._ip_count, held.ips), (self._port_count, held.ports)):
            for v in values:
                n = table.get(v, 0) + delta
                if n > 0:
                    table[v] = n
                else:
                    table.pop(v, None)

    def _ips_of(self, spec: dict) -> set[int]:
        out = set()
        ips = spec.get("clusterIPs") if isinstance(spec.get("clusterIPs"), list) else [spec.get("clusterIP")]
        for ip in ips:
            try:
                addr = ipaddress.ip_address(ip)
            except (ValueError, TypeError):
                continue
            if addr in self.network:
                out.add(int(addr))
        return out

    def _ports_of(self, spec: dict) -> set[int]:
        ports = {_int(p.get("nodePort")) for p in _dicts(spec.get("ports"))}
        ports.add(_int(spec.get("healthCheckNodePort")))
        return {p for p in ports if p is not None and p in self.node_ports}

    def _ip_taken(self, ip: int, key: str) -> bool:
        own = self._held.get(key)
        n = self._ip_count.get(ip, 0) - (1 if own is not None and ip in own.ips else 0)
        return (n > 0 or any(ip in r.ips for r in self._in_flight)
                or self._foreign_ips.get(ip, key) != key)

    def _port_taken(self, port: int, key: str) -> bool:
        own = self._held.get(key)
        n = self._port_count.get(port, 0) - (1 if own is not None and port in own.ports else 0)
        return (n > 0 or any(port in r.ports for r in self._in_flight)
                or self._foreign_ports.get(port, key) != key)

    # ----------------------------------------------------------------- cluster IPs
    def _assign_cluster_ip(self, spec: dict, key: str, res: _Reservation, causes: list[Cause]) -> None:
        headless = spec.get("clusterIP") == "None"
        policy = spec.get("ipFamilyPolicy")
        families = spec.get("ipFamilies")
        selectorless_headless = headless and not spec.get("selector") and not families
        if policy is None:
            policy = spec["ipFamilyPolicy"] = "RequireDualStack" if selectorless_headless else "SingleStack"
        if policy == "RequireDualStack" and not selectorless_headless:
            causes.append(Cause("spec.ipFamilyPolicy", f"Invalid value: {go_value(policy)}: this cluster is not "
                                                       "configured for dual-stack services"))
        for i, fam in enumerate(families or []):
            if fam != "IPv4":
                causes.append(Cause(f"spec.ipFamilies[{i}]",
                                    f"Invalid value: {go_value(fam)}: not configured on this cluster"))
        if families and len(families) > 1 and policy == "SingleStack":
            causes.append(Cause("spec.ipFamilies", f"Invalid value: {go_value(families)}: when multiple IP families "
                                                   "are specified, spec.ipFamilyPolicy must be PreferDualStack or "
                                                   "RequireDualStack"))
        if not families:
            spec["ipFamilies"] = ["IPv4"]
        if headless:
            spec["clusterIPs"] = ["None"]
            return
        requested = spec.get("clusterIP")
        if requested:
            ips = spec.get("clusterIPs") or [requested]
            for ip in ips:
                addr = ipaddress.ip_address(ip)
                why = None
                if addr.version != 4:
                    why = f"IPv{addr.version} is not configured on this cluster"
                elif addr not in self.network or not self._first <= int(addr) <= self._last:
                    why = (f"provided IP is not in the valid range. The range of valid IPs is {self.network}")
                elif self._ip_taken(int(addr), key):
                    why = "provided IP is already allocated"
                if why:
                    causes.append(Cause("spec.clusterIPs", f"Invalid value: {go_value(ips)}: failed to allocate "
                                                           f"IP {ip}: {why}"))
                else:
                    res.ips.add(int(addr))
            spec["clusterIPs"] = list(ips)
            return
        ip = self._next_ip(key)
        if ip is None:
            causes.append(Cause("spec.clusterIPs", f"Invalid value: []string(nil): failed to allocate a serviceIP: "
                                                   f"range is full ({self.network})"))
            return
        res.ips.add(ip)
        spec["clusterIP"] = str(ipaddress.ip_address(ip))
        spec["clusterIPs"] = [spec["clusterIP"]]

    def _next_ip(self, key: str) -> int | None:
        size = self._last - self._first + 1
        for i in range(size):
            ip = self._first + (self._ip_cursor - self._first + i) % size
            if ip in self._never_dynamic or self._ip_taken(ip, key):
                continue
            self._ip_cursor = ip + 1 if ip < self._last else self._first
            return ip
        return None

    # ----------------------------------------------------------------- node ports
    def _check_port(self, port: int, key: str, res: _Reservation, path: str, causes: list[Cause]) -> None:
        if port not in self.node_ports:
            why = f"provided port is not in the valid range. The range of valid ports is {self.node_port_range}"
        elif port in res.ports:
            return  # the same port for another protocol of the same service port
        elif self._port_taken(port, key):
            why = "provided port is already allocated"
        else:
            res.ports.add(port)
            return
        causes.append(Cause(path, f"Invalid value: {port}: {why}"))

    def _next_port(self, key: str, res: _Reservation) -> int | None:
        size = len(self.node_ports)
        start = self.node_ports.start
        for i in range(size):
            port = start + (self._port_cursor - start + i) % size
            if port in res.ports or self._port_taken(port, key):
                continue
            self._port_cursor = port + 1 if port + 1 < self.node_ports.stop else start
            return port
        return None

    def _assign_node_ports(self, spec: dict, key: str, res: _Reservation, causes: list[Cause]) -> None:
        """Requested node ports must be free; missing ones are allocated, one per service port number."""
        ports = _dicts(spec.get("ports"))
        by_number: dict[Any, int] = {}
        for i, p in enumerate(ports):
            np = _int(p.get("nodePort"))
            if np:  # what this service holds already is not "taken" (_port_taken leaves its own key out)
                self._check_port(np, key, res, f"spec.ports[{i}].nodePort", causes)
                by_number.setdefault(p.get("port"), np)
        if _needs_node_ports(spec):
            for i, p in enumerate(ports):
                if _int(p.get("nodePort")):
                    continue
                np = by_number.get(p.get("port")) or self._next_port(key, res)
                if np is None:
                    causes.append(Cause(f"spec.ports[{i}].nodePort", "Invalid value: 0: failed to allocate a "
                                                                     "nodePort: range is full"))
                    continue
                res.ports.add(np)
                p["nodePort"] = np
                by_number[p.get("port")] = np
        if _needs_health_check_port(spec):
            hc = _int(spec.get("healthCheckNodePort"))
            if hc:
                self._check_port(hc, key, res, "spec.healthCheckNodePort", causes)
            else:
                hc = self._next_port(key, res)
                if hc is not None:
                    res.ports.add(hc)
                    spec["healthCheckNodePort"] = hc


def kubernetes_service_objects(host: str, port: int) -> dict[str, Obj]:
    """The `kubernetes` Service in `default` (443 -> the API server) and the endpoints behind it, keyed by
    plural ("services", "endpoints", "endpointslices"): what a server creates at start, and updates when
    its address changed, so that pods reach the API at https://kubernetes.default.svc."""
    try:
        addr = ipaddress.ip_address(host)
        ip = "127.0.0.1" if addr.is_unspecified else str(addr)
    except ValueError:
        ip = "127.0.0.1"  # a host name: the API listens on this machine
    meta = {"name": "kubernetes", "namespace": "default"}
    return {
        "services": {"apiVersion": "v1", "kind": "Service",
                     "metadata": {**meta, "labels": {"component": "apiserver", "provider": "kubernetes"}},
                     "spec": {"type": "ClusterIP", "clusterIP": KUBERNETES_SERVICE_IP, "sessionAffinity": "None",
                              "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}]}},
        "endpoints": {"apiVersion": "v1", "kind": "Endpoints",
                      "metadata": {**meta, "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
                      "subsets": [{"addresses": [{"ip": ip}],
                                   "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}]},
        "endpointslices": {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                           "metadata": {**meta, "labels": {"kubernetes.io/service-name": "kubernetes"}},
                           "addressType": "IPv4" if ipaddress.ip_address(ip).version == 4 else "IPv6",
                           "endpoints": [{"addresses": [ip], "conditions": {"ready": True}}],
                           "ports": [{"name": "https", "port": port, "protocol": "TCP"}]},
    }


# ======================================================================= wiring


class DefaultTolerationSeconds:
    """Kubernetes' DefaultTolerationSeconds admission: every pod, on create and on update,
    tolerates the ``not-ready`` and ``unreachable`` NoExecute taints for a bounded time
    (kube-apiserver's ``--default-not-ready-toleration-seconds`` and
    ``--default-unreachable-toleration-seconds``, 300 s each) unless it already says how
    long it tolerates them. That time is how long its pods stay on a lost node before the
    taint eviction controller deletes them and their owners replace them elsewhere."""

    def __init__(self, not_ready_seconds: int = DEFAULT_TOLERATION_SECONDS,
                 unreachable_seconds: int = DEFAULT_TOLERATION_SECONDS):
        self.not_ready, self.unreachable = not_ready_seconds, unreachable_seconds

    async def __call__(self, obj: Obj) -> None:
        add_default_tolerations(obj.get("spec"), self.not_ready, self.unreachable)

    async def admit_update(self, obj: Obj, old: Obj) -> None:
        add_default_tolerations(obj.get("spec"), self.not_ready, self.unreachable)


@dataclass
class AdmissionOptions:
    """The API server's admission flags."""
    default_not_ready_toleration_seconds: int = DEFAULT_TOLERATION_SECONDS
    default_unreachable_toleration_seconds: int = DEFAULT_TOLERATION_SECONDS
    cluster_cidr: str = str(POD_NETWORK)  # nodes' podCIDRs come from here (checked by `cluster_cidr`)
    node_cidr_mask_size: int = NODE_BLOCK_PREFIX
    container_cidr: str = str(CONTAINER_NETWORK)  # nodes' container pod blocks (a /24 each) come from here


def admission_steps(store, registry, options: AdmissionOptions | None = None) -> dict[str, list[Admit]]:
    """plural -> steps that complete a new core-group object before validation (ResourceAPI.admission)."""
    options = options or AdmissionOptions()
    services = registry.get("", "v1", "services")
    nodes = NodeCIDRAllocator(store, registry.get("", "v1", "nodes"),
                              cluster_cidr(options.cluster_cidr, options.node_cidr_mask_size),
                              options.node_cidr_mask_size)
    containers = ContainerCIDRAllocator(store, registry.get("", "v1", "nodes"), container_cidr(options.container_cidr),
                                        CONTAINER_BLOCK_PREFIX)
    steps: dict[str, list[Admit]] = {"nodes": [nodes, containers],
                                     "pods": [DefaultTolerationSeconds(options.default_not_ready_toleration_seconds,
                                                                       options.default_unreachable_toleration_seconds)]}
    if services is not None:
        steps["services"] = [ServiceAllocator(store, services)]
    classes = registry.get("storage.k8s.io", "v1", "storageclasses")
    if classes is not None:
        steps["persistentvolumeclaims"] = [DefaultStorageClass(store, classes)]
    _add_limit_rangers(steps, store, registry)
    return steps


def _add_limit_rangers(steps: dict[str, list[Admit]], store, registry) -> None:
    """LimitRange defaults and bounds for new pods and claims (after the other steps)."""
    if registry.get("", "v1", "limitranges") is not None:
        for plural in ("pods", "persistentvolumeclaims"):
            steps.setdefault(plural, []).append(LimitRanger(store, registry, plural))


def update_steps(create_steps: dict[str, list[Admit]]) -> dict[str, list[AdmitUpdate]]:
    """plural -> steps an update runs before validation, from the same allocators as ``create_steps``
    (a Service whose type changes to NodePort gets its node ports there)."""
    out: dict[str, list[AdmitUpdate]] = {}
    for plural, steps in create_steps.items():
        for step in steps:
            if isinstance(step, (ServiceAllocator, DefaultTolerationSeconds, NodeCIDRAllocator)):
                out.setdefault(plural, []).append(step.admit_update)
    return out
