"""Keeps this node's address in `status.loadBalancer.ingress` of what it serves:
LoadBalancer Services (the service proxy, the k3s ServiceLB idea) and Ingresses (the
ingress controller). One write at a time per object; a write refused because the
cache was stale is left to the next sync, which sees the newer object."""
from __future__ import annotations

import asyncio
import ipaddress
import logging
from typing import Any, Callable, Iterable

import aiohttp

from ..client import ApiError, Client
from ..client.informer import obj_key
from ..kinds.base import Resource

log = logging.getLogger(__name__)
Obj = dict[str, Any]


class LoadBalancerStatus:
    def __init__(self, client: Client, resource: Resource, node_ip: str, on_error: Callable[[], None]):
        self.client = client
        self.resource = resource
        self.ip = "127.0.0.1" if ipaddress.ip_address(node_ip).is_unspecified else node_ip
        self.on_error = on_error  # a write failed for another reason: sync again later
        self._busy: set[str] = set()
        self._tasks: set[asyncio.Task] = set()

    def sync(self, objs: Iterable[Obj], add: Callable[[Obj], bool], remove: Callable[[Obj], bool]) -> None:
        """Add our address where add(obj) and it is missing; take it out where remove(obj)."""
        for obj in objs:
            key = obj_key(obj)
            if key in self._busy:
                continue
            ingress = [i for i in ((obj.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
                       if isinstance(i, dict)]
            has = any(i.get("ip") == self.ip for i in ingress)
            if add(obj) and not has:
                new = sorted(ingress + [{"ip": self.ip}], key=lambda i: str(i.get("ip") or i.get("hostname")))
            elif remove(obj) and has:
                new = [i for i in ingress if i.get("ip") != self.ip]
            else:
                continue
            self._busy.add(key)
            t = asyncio.get_running_loop().create_task(self._write(obj, new), name=f"lb-status-{key}")
            self._tasks.add(t)
            t.add_done_callback(lambda t, key=key: (self._busy.discard(key), self._tasks.discard(t)))

    async def _write(self, obj: Obj, ingress: list[dict]) -> None:
        r = self.resource
        body = {**obj, "apiVersion": r.api_version, "kind": r.kind,
                "status": {**(obj.get("status") or {}), "loadBalancer": {"ingress": ingress} if ingress else {}}}
        try:
            await self.client.update_status(r, body)
            log.info("%s %s: load balancer ingress %s", r.singular, obj_key(obj), [i.get("ip") for i in ingress])
        except ApiError as e:
            if e.status not in (404, 409):  # a stale cache: the next event brings the newer object
                log.warning("cannot update the status of %s %s: %s", r.singular, obj_key(obj), e)
                self.on_error()
        except (OSError, asyncio.TimeoutError, aiohttp.ClientError) as e:
            log.warning("cannot update the status of %s %s: %s", r.singular, obj_key(obj), e)

    async def close(self) -> None:
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
