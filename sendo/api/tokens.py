"""ServiceAccount tokens: JWTs the API server signs and accepts as bearer tokens.

What Kubernetes does, with the same claims, so a token made here reads like one made
by kube-apiserver:

* The server keeps an ECDSA P-256 key in ``<data>/server/sa.key`` (made at first start)
  and signs ES256 JWTs with it. Servers that share one store must share this file.
* ``POST /api/v1/namespaces/<ns>/serviceaccounts/<name>/token`` takes a
  ``TokenRequest`` (authentication.k8s.io/v1: ``spec.audiences``,
  ``spec.expirationSeconds`` at least 600, 3600 when absent, ``spec.boundObjectRef`` to
  a Pod, Secret or Node) and answers it with ``status.token`` and
  ``status.expirationTimestamp``. ``kubectl create token <sa>`` uses it, and so does
  every agent for the pods it runs (a token bound to the pod).
* A bearer token that is such a JWT authenticates as
  ``system:serviceaccount:<ns>:<name>`` (groups ``system:serviceaccounts``,
  ``system:serviceaccounts:<ns>``, ``system:authenticated``) while its signature is
  ours, it has not expired, one of its audiences is the API server's, the
  ServiceAccount still exists with the same uid, and the object it is bound to (if
  any) still exists with the same uid. Deleting the ServiceAccount or the pod
  revokes the token at once.

What an authenticated ServiceAccount may do is RBAC's decision (``rbac.py``): nothing
until a binding grants it something.
"""
from __future__ import annotations

import base64
import datetime as dt
import hashlib
import logging
import os
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from ..kinds.base import Cause, invalid, required, unsupported
from ..kinds.meta import now_rfc3339, rfc3339
from ..kinds.registry import Registry
from ..store import Store
from . import errors

log = logging.getLogger(__name__)

ISSUER = "https://kubernetes.default.svc.cluster.local"
API_AUDIENCES = (ISSUER,)  # a token must name one of these to be accepted by the API server
DEFAULT_EXPIRATION = 3600
MIN_EXPIRATION = 600
MAX_EXPIRATION = 1 << 32
NBF_LEEWAY = 60  # seconds of clock skew tolerated on nbf/iat
BOUND_DELETION_GRACE = 60  # a bound token stops working this long after its object's deletionTimestamp
GROUP = "authentication.k8s.io"
API_VERSION = f"{GROUP}/v1"
SA_PREFIX = "system:serviceaccount:"
BINDABLE = {"Pod": "pods", "Secret": "secrets", "Node": "nodes"}  # boundObjectRef.kind -> plural


class TokenError(Exception):
    """Why a token is not valid (logged; clients only ever see 401 Unauthorized)."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def looks_like_jwt(token: str) -> bool:
    return token.count(".") == 2 and token.startswith("eyJ")


class TokenSigner:
    """Signs and verifies ES256 JWTs with one P-256 key."""

    def __init__(self, key: ec.EllipticCurvePrivateKey, issuer: str = ISSUER):
        if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
            raise ValueError("the service account signing key must be an ECDSA P-256 key")
        self.key = key
        self.public = key.public_key()
        self.issuer = issuer
        der = self.public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        self.key_id = _b64(hashlib.sha256(der).digest())  # kube-apiserver's kid: SHA-256 of the public key
        self._header = _b64(orjson.dumps({"alg": "ES256", "kid": self.key_id}))
        self._verified: OrderedDict[str, dict[str, Any]] = OrderedDict()  # token -> claims (signature checked)

    @classmethod
    def generate(cls, issuer: str = ISSUER) -> "TokenSigner":
        return cls(ec.generate_private_key(ec.SECP256R1()), issuer)

    @classmethod
    def load_or_create(cls, path: str, issuer: str = ISSUER) -> "TokenSigner":
        """The key in ``path`` (PEM), created (mode 0600) at first start."""
        try:
            with open(path, "rb") as f:
                key = serialization.load_pem_private_key(f.read(), password=None)
        except FileNotFoundError:
            key = ec.generate_private_key(ec.SECP256R1())
            pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
            os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:  # another server made it meanwhile: use theirs
                return cls.load_or_create(path, issuer)
            with os.fdopen(fd, "wb") as f:
                f.write(pem)
        return cls(key, issuer)

    def jwks(self) -> dict[str, Any]:
        """The public key as a JSON Web Key Set (what /openid/v1/jwks would serve)."""
        nums = self.public.public_numbers()
        return {"keys": [{"use": "sig", "kty": "EC", "kid": self.key_id, "crv": "P-256", "alg": "ES256",
                          "x": _b64(nums.x.to_bytes(32, "big")), "y": _b64(nums.y.to_bytes(32, "big"))}]}

    def sign(self, claims: dict[str, Any]) -> str:
        signing_input = f"{self._header}.{_b64(orjson.dumps(claims))}"
        der = self.key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        return f"{signing_input}.{_b64(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"

    def verify(self, token: str, audiences: tuple[str, ...] | list[str] = API_AUDIENCES,
               now: float | None = None) -> dict[str, Any]:
        """The claims of a token we signed that is valid now for one of ``audiences``."""
        claims = self._verified.get(token)
        if claims is None:
            claims = self._check_signature(token)
            self._verified[token] = claims
            if len(self._verified) > 4096:
                self._verified.popitem(last=False)
        else:
            self._verified.move_to_end(token)
        now = time.time() if now is None else now
        if claims.get("iss") != self.issuer:
            raise TokenError(f"issuer {claims.get('iss')!r} is not {self.issuer!r}")
        exp, nbf = claims.get("exp"), claims.get("nbf", claims.get("iat"))
        if not isinstance(exp, (int, float)) or now >= exp:
            raise TokenError("the token has expired")
        if isinstance(nbf, (int, float)) and now + NBF_LEEWAY < nbf:
            raise TokenError("the token is not valid yet")
        aud = claims.get("aud")
        aud = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
        if not set(aud) & set(audiences):
            raise TokenError(f"the token's audiences {aud} do not include {list(audiences)}")
        return claims

    def _check_signature(self, token: str) -> dict[str, Any]:
        try:
            head_b64, body_b64, sig_b64 = token.split(".")
            header = orjson.loads(_unb64(head_b64))
            sig = _unb64(sig_b64)
        except (ValueError, orjson.JSONDecodeError) as e:
            raise TokenError(f"not a JWT: {e}")
        if not isinstance(header, dict) or header.get("alg") != "ES256":
            raise TokenError(f"unsupported signing algorithm {header.get('alg') if isinstance(header, dict) else None!r}")
        if header.get("kid") not in (None, self.key_id):
            raise TokenError("signed with another key")
        if len(sig) != 64:
            raise TokenError("malformed ES256 signature")
        der = encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
        try:
            self.public.verify(der, f"{head_b64}.{body_b64}".encode(), ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            raise TokenError("invalid signature")
        try:
            claims = orjson.loads(_unb64(body_b64))
        except (ValueError, orjson.JSONDecodeError) as e:
            raise TokenError(f"unreadable claims: {e}")
        if not isinstance(claims, dict):
            raise TokenError("the claims are not an object")
        return claims

    def issue(self, namespace: str, sa_name: str, sa_uid: str, audiences: list[str] | None = None,
              expiration_seconds: int = DEFAULT_EXPIRATION, bound: dict[str, dict[str, str]] | None = None,
              now: float | None = None) -> tuple[str, int]:
        """A token for a ServiceAccount; ``bound`` is {"pod": {"name", "uid"}} and the like.
        Returns the token and its expiry (seconds since the epoch)."""
        iat = int(time.time() if now is None else now)
        exp = iat + int(expiration_seconds)
        k8s: dict[str, Any] = {"namespace": namespace, "serviceaccount": {"name": sa_name, "uid": sa_uid}}
        k8s.update(bound or {})
        claims = {"aud": list(audiences or API_AUDIENCES), "exp": exp, "iat": iat, "iss": self.issuer,
                  "jti": str(uuid.uuid4()), "kubernetes.io": k8s, "nbf": iat,
                  "sub": f"{SA_PREFIX}{namespace}:{sa_name}"}
        return self.sign(claims), exp


@dataclass
class ServiceAccountUser:
    """Who a valid ServiceAccount token speaks for."""

    name: str
    uid: str
    groups: list[str]
    extra: dict[str, list[str]] = field(default_factory=dict)


def _parse_time(ts: Any) -> float | None:
    if not isinstance(ts, str):
        return None
    try:
        return dt.datetime.strptime(ts, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.timezone.utc).timestamp()
    except ValueError:
        return None


class ServiceAccountTokens:
    """The API server's side: answers TokenRequests and authenticates their tokens."""

    def __init__(self, store: Store, registry: Registry, signer: TokenSigner,
                 audiences: tuple[str, ...] = API_AUDIENCES):
        self.store = store
        self.registry = registry
        self.signer = signer
        self.audiences = audiences

    def _resource(self, plural: str):
        return self.registry.get("", "v1", plural)

    async def _get(self, plural: str, ns: str | None, name: str) -> dict[str, Any] | None:
        kv = await self.store.get(self._resource(plural).key(ns, name))
        return None if kv is None else orjson.loads(kv.value)

    # ------------------------------------------------------------- authentication
    async def authenticate(self, token: str, now: float | None = None) -> ServiceAccountUser:
        """The user a token speaks for; TokenError if it does not (any more)."""
        now = time.time() if now is None else now
        claims = self.signer.verify(token, self.audiences, now)
        k8s = claims.get("kubernetes.io")
        if not isinstance(k8s, dict) or not isinstance(k8s.get("serviceaccount"), dict):
            raise TokenError("no kubernetes.io claim")
        ns, sa = k8s.get("namespace"), k8s["serviceaccount"]
        name, uid = sa.get("name"), sa.get("uid")
        if not all(isinstance(v, str) and v for v in (ns, name, uid)):
            raise TokenError("incomplete kubernetes.io claim")
        if claims.get("sub") != f"{SA_PREFIX}{ns}:{name}":
            raise TokenError("the subject does not match the service account")
        obj = await self._get("serviceaccounts", ns, name)
        if obj is None:
            raise TokenError(f"serviceaccount {ns}/{name} no longer exists")
        if obj["metadata"].get("uid") != uid:
            raise TokenError(f"serviceaccount {ns}/{name} was recreated (uid {obj['metadata'].get('uid')}, "
                             f"token for {uid})")
        extra: dict[str, list[str]] = {}
        if claims.get("jti"):
            extra["authentication.kubernetes.io/credential-id"] = [f"JTI={claims['jti']}"]
        for key, plural in (("pod", "pods"), ("secret", "secrets"), ("node", "nodes")):
            ref = k8s.get(key)
            if ref is None:
                continue
            if not isinstance(ref, dict) or not ref.get("name") or not ref.get("uid"):
                raise TokenError(f"malformed {key} claim")
            bound = await self._get(plural, None if plural == "nodes" else ns, ref["name"])
            if bound is None or bound["metadata"].get("uid") != ref["uid"]:
                raise TokenError(f"the {key} {ref['name']} the token is bound to no longer exists")
            deleting = _parse_time(bound["metadata"].get("deletionTimestamp"))
            if deleting is not None and deleting + BOUND_DELETION_GRACE < now:
                # as Kubernetes: a stopping pod keeps its identity until a minute after its deadline
                raise TokenError(f"the {key} {ref['name']} the token is bound to is being deleted")
            extra[f"authentication.kubernetes.io/{key}-name"] = [ref["name"]]
            extra[f"authentication.kubernetes.io/{key}-uid"] = [ref["uid"]]
        return ServiceAccountUser(f"{SA_PREFIX}{ns}:{name}", uid,
                                  ["system:serviceaccounts", f"system:serviceaccounts:{ns}", "system:authenticated"],
                                  extra)

    # ------------------------------------------------------------- TokenRequest
    async def token_request(self, ns: str, name: str, body: Any) -> dict[str, Any]:
        """POST serviceaccounts/<name>/token: a TokenRequest in, the same with a token out."""
        if not isinstance(body, dict):
            raise errors.bad_request("the body of the request must be a TokenRequest object")
        if body.get("kind") not in (None, "", "TokenRequest") or body.get("apiVersion") not in (None, "", API_VERSION):
            raise errors.bad_request(f"the body must be a TokenRequest ({API_VERSION}), not "
                                     f"{body.get('kind')} ({body.get('apiVersion')})")
        spec = body.get("spec") or {}
        if not isinstance(spec, dict):
            raise errors.bad_request("spec must be an object")
        audiences, seconds, ref = self._validate(name, spec)
        sa = await self._get("serviceaccounts", ns, name)
        if sa is None:
            raise errors.not_found("serviceaccounts", name, "", "serviceaccounts")
        if sa["metadata"].get("deletionTimestamp"):
            raise errors.bad_request(f'serviceaccount "{name}" is being deleted')
        bound: dict[str, dict[str, str]] = {}
        if ref is not None:
            bound = await self._bind(ns, name, ref)
        now = time.time()
        token, exp = self.signer.issue(ns, name, sa["metadata"]["uid"], audiences, seconds, bound, now)
        out_spec: dict[str, Any] = {"audiences": audiences, "expirationSeconds": seconds, "boundObjectRef": ref}
        return {"kind": "TokenRequest", "apiVersion": API_VERSION,
                "metadata": {"name": name, "namespace": ns, "creationTimestamp": now_rfc3339()},
                "spec": out_spec, "status": {"token": token, "expirationTimestamp": rfc3339(exp)}}

    def _validate(self, name: str, spec: dict[str, Any]) -> tuple[list[str], int, dict[str, Any] | None]:
        causes: list[Cause] = []
        audiences = spec.get("audiences")
        if audiences is None or audiences == []:
            audiences = list(self.audiences)
        elif not isinstance(audiences, list) or not all(isinstance(a, str) and a for a in audiences):
            causes.append(invalid("spec.audiences", audiences, "must be a list of non-empty strings"))
        seconds = spec.get("expirationSeconds")
        if seconds is None or seconds == 0:
            seconds = DEFAULT_EXPIRATION
        elif isinstance(seconds, bool) or not isinstance(seconds, int):
            causes.append(invalid("spec.expirationSeconds", seconds, "must be an integer number of seconds"))
        elif seconds < MIN_EXPIRATION:
            causes.append(invalid("spec.expirationSeconds", seconds,
                                  "may not specify a duration less than 10 minutes"))
        elif seconds > MAX_EXPIRATION:
            causes.append(invalid("spec.expirationSeconds", seconds,
                                  "may not specify a duration larger than 2^32 seconds"))
        ref = spec.get("boundObjectRef")
        if ref is not None:
            if not isinstance(ref, dict):
                causes.append(invalid("spec.boundObjectRef", ref, "must be an object"))
            else:
                ref = {k: v for k, v in ref.items() if v not in (None, "")}
                if ref.get("kind") not in BINDABLE:
                    causes.append(unsupported("spec.boundObjectRef.kind", ref.get("kind"), list(BINDABLE)))
                if ref.get("apiVersion", "v1") != "v1":
                    causes.append(unsupported("spec.boundObjectRef.apiVersion", ref.get("apiVersion"), ["v1"]))
                if not ref.get("name"):
                    causes.append(required("spec.boundObjectRef.name"))
                ref.setdefault("apiVersion", "v1")
        if causes:
            raise errors.invalid("TokenRequest", GROUP, name, causes)
        return audiences, seconds, ref

    async def _bind(self, ns: str, sa_name: str, ref: dict[str, Any]) -> dict[str, dict[str, str]]:
        """The kubernetes.io claim naming the object the token lives and dies with."""
        kind, plural = ref["kind"], BINDABLE[ref["kind"]]
        obj = await self._get(plural, None if plural == "nodes" else ns, ref["name"])
        if obj is None:
            raise errors.not_found(plural, ref["name"], "", plural)
        uid = obj["metadata"]["uid"]
        if ref.get("uid") and ref["uid"] != uid:
            raise errors.conflict(kind, ref["name"], f"the UID in the bound object reference ({ref['uid']}) does "
                                  "not match the UID in record. The object might have been deleted and then "
                                  "recreated")
        if kind == "Pod":
            pod_sa = (obj.get("spec") or {}).get("serviceAccountName") or "default"
            if pod_sa != sa_name:
                raise errors.bad_request(f'cannot bind token for serviceaccount "{sa_name}" to pod running with '
                                         f'different serviceaccount name.')
        if obj["metadata"].get("deletionTimestamp") and kind != "Pod":
            raise errors.bad_request(f'{plural} "{ref["name"]}" is being deleted')
        ref["uid"] = uid
        return {kind.lower(): {"name": ref["name"], "uid": uid}}
