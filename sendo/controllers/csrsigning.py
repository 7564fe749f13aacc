"""CSR signing controller: issues the certificates of approved CertificateSigningRequests
for the signer `kubernetes.io/kube-apiserver-client`, from the cluster CA.

As kube-controller-manager's csrsigning loop: a request that is Approved, not Failed and
has no certificate yet gets one (subject and public key from its PKCS#10 request, client
auth, valid for `spec.expirationSeconds` or the default duration, never past the CA)
written to `status.certificate` through the `status` subresource. A request this signer
cannot honour (usages beyond digital signature, key encipherment and client auth; a
request whose signature does not verify) gets a `Failed` condition with reason
`SignerValidationFailure`. Other signers' requests are left to them. Without the CA's
files (`--cluster-signing-cert-file`/`--cluster-signing-key-file`) the loop signs nothing.
"""
from __future__ import annotations

import base64
import datetime as dt
import logging

from ..client import kind
from ..kinds.certificates import (APPROVED, DENIED, FAILED, KUBE_APISERVER_CLIENT, MIN_EXPIRATION_SECONDS,
                                  decode_bytes, has_condition)
from ..kinds.printing import as_dict
from ..pki import SigningError, load_signer, sign_client_certificate
from .base import Controller

log = logging.getLogger(__name__)
DEFAULT_DURATION = 365 * 24 * 3600  # kube-controller-manager's --cluster-signing-duration
CLIENT_USAGES = {"digital signature", "key encipherment", "client auth"}


def refusal(csr: dict) -> str | None:
    """Why the kube-apiserver-client signer will not sign this request, or None."""
    usages = as_dict(csr.get("spec")).get("usages") or []
    if "client auth" not in usages:
        return "the usages must include \"client auth\""
    extra = sorted(set(usages) - CLIENT_USAGES)
    if extra:
        return f"usages {extra} are not allowed for {KUBE_APISERVER_CLIENT}: only {sorted(CLIENT_USAGES)}"
    return None


class CSRSigningController(Controller):
    name = "csrsigning-controller"

    def __init__(self, client, informers, *, ca_cert_file: str | None = None, ca_key_file: str | None = None,
                 duration: int = DEFAULT_DURATION):
        self.ca_cert_file, self.ca_key_file, self.duration = ca_cert_file, ca_key_file, duration
        self._signer = None
        super().__init__(client, informers)

    def setup(self) -> None:
        self.kind = kind("certificatesigningrequests", "certificates.k8s.io")
        self.inf = self.informers.get(self.kind)
        self.inf.add_handler(lambda t, o, old: self.enqueue(o) if t != "DELETED" else None)

    def signer(self):
        if self._signer is None and self.ca_cert_file and self.ca_key_file:
            self._signer = load_signer(self.ca_cert_file, self.ca_key_file)
        return self._signer

    async def reconcile(self, key: str) -> float | None:
        csr = self.inf.get(key)
        if csr is None or as_dict(csr.get("spec")).get("signerName") != KUBE_APISERVER_CLIENT:
            return None
        if not has_condition(csr, APPROVED) or has_condition(csr, DENIED) or has_condition(csr, FAILED) \
                or as_dict(csr.get("status")).get("certificate"):
            return None
        signer = self.signer()
        if signer is None:
            log.warning("csr %s is approved but no signing CA is configured", key)
            return None
        why = refusal(csr)
        pem = b""
        if why is None:
            seconds = as_dict(csr.get("spec")).get("expirationSeconds") or self.duration
            try:
                pem = sign_client_certificate(decode_bytes(csr["spec"].get("request")) or b"", *signer,
                                              max(MIN_EXPIRATION_SECONDS, min(int(seconds), self.duration)))
            except SigningError as e:
                why = str(e)
        status = dict(as_dict(csr.get("status")))
        if why is not None:
            now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
            status["conditions"] = list(status.get("conditions") or []) + [{
                "type": FAILED, "status": "True", "reason": "SignerValidationFailure", "message": why,
                "lastUpdateTime": now, "lastTransitionTime": now}]
            log.info("csr %s: not signed: %s", key, why)
        else:
            status["certificate"] = base64.b64encode(pem).decode()
            log.info("csr %s: issued a client certificate", key)
        await self.client.update_status(self.kind, {**csr, "status": status})
        return None
