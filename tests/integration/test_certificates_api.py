"""storage.k8s.io/v1 CSIStorageCapacity and certificates.k8s.io/v1 CertificateSigningRequest
(approval subresource, the kube-apiserver-client signer) against a real API server."""
from __future__ import annotations

import base64
import os

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from sendo.client import ApiError, kind
from sendo.controllers.base import InformerFactory
from sendo.controllers.csrsigning import CSRSigningController
from tests.integration.test_rbac import WHOAMI, CertClient
from tests.waiting import wait_until

CAP = kind("csistoragecapacities", "storage.k8s.io")
CSR = kind("certificatesigningrequests", "certificates.k8s.io")


def capacity(name, **fields):
    return {"apiVersion": "storage.k8s.io/v1", "kind": "CSIStorageCapacity",
            "metadata": {"name": name, "namespace": "default"}, **fields}


def request_pem(cn="jane", orgs=("devs",), key=None) -> bytes:
    key = key or ec.generate_private_key(ec.SECP256R1())
    names = [x509.NameAttribute(NameOID.COMMON_NAME, cn)] + [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o)
                                                            for o in orgs]
    req = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(names)).sign(key, hashes.SHA256())
    return req.public_bytes(serialization.Encoding.PEM)


def csr(name, usages=("client auth",), signer="kubernetes.io/kube-apiserver-client", key=None, **spec):
    return {"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest", "metadata": {"name": name},
            "spec": {"request": base64.b64encode(request_pem(key=key)).decode(), "signerName": signer,
                     "usages": list(usages), **spec}}


def approve(obj, kind_="Approved"):
    obj["status"] = {"conditions": [{"type": kind_, "status": "True", "reason": "Test", "message": "ok"}]}
    return obj


async def test_csi_storage_capacity_is_stored_and_validated(client):
    made = await client.create(CAP, capacity("c1", storageClassName="fast", capacity="10Gi",
                                             maximumVolumeSize="1Gi",
                                             nodeTopology={"matchLabels": {"topology.kubernetes.io/zone": "a"}}))
    assert made["capacity"] == "10Gi"
    made["capacity"] = "5Gi"
    assert (await client.update(CAP, made))["capacity"] == "5Gi"
    made = await client.get(CAP, "default", "c1")
    made["storageClassName"] = "slow"
    with pytest.raises(ApiError) as e:
        await client.update(CAP, made)
    assert e.value.status == 422 and e.value.body["details"]["causes"][0]["field"] == "storageClassName"
    for bad, field in ((capacity("c2"), "storageClassName"),
                       (capacity("c3", storageClassName="fast", capacity="-1"), "capacity"),
                       (capacity("c4", storageClassName="fast", maximumVolumeSize="lots"), "maximumVolumeSize"),
                       (capacity("c5", storageClassName="fast", nodeTopology={"matchLabels": {"a": "-x-"}}),
                        "nodeTopology.matchLabels")):
        with pytest.raises(ApiError) as e:
            await client.create(CAP, bad)
        assert e.value.status == 422, bad
        assert any(c["field"].startswith(field) for c in e.value.body["details"]["causes"]), e.value.body


async def test_csr_validation_names_the_field(client):
    cases = [(csr("b1", request="bm90IGEgcGVt"), "spec.request"),
             (csr("b2", signer="no-slash"), "spec.signerName"),
             (csr("b3", usages=["client auth", "flying"]), "spec.usages[1]"),
             (csr("b4", expirationSeconds=60), "spec.expirationSeconds"),
             (approve(approve(csr("b5")), "Denied") | {"status": {"conditions": [
                 {"type": "Approved", "status": "True"}, {"type": "Denied", "status": "True"}]}}, None)]
    for body, field in cases[:4]:
        with pytest.raises(ApiError) as e:
            await client.create(CSR, body)
        assert e.value.status == 422 and e.value.body["details"]["causes"][0]["field"] == field, e.value.body
    # status on create is dropped (a request starts pending), and the requester is the caller
    made = await client.create(CSR, cases[4][0])
    assert "status" not in made or not made["status"].get("conditions")
    assert made["spec"]["username"] and made["spec"]["username"] != "someone-else"
    # Approved and Denied exclude each other
    made["status"] = {"conditions": [{"type": "Approved", "status": "True"}, {"type": "Denied", "status": "True"}]}
    with pytest.raises(ApiError) as e:
        await client.update(CSR, made, "approval")
    assert e.value.status == 422 and e.value.body["details"]["causes"][0]["field"] == "status.conditions"


async def test_approved_client_csr_is_signed_by_the_cluster_ca(client, server, tmp_path):
    tls = os.path.join(server.cfg.server_dir, "tls")
    inf = InformerFactory(client)
    signer = CSRSigningController(client, inf, ca_cert_file=os.path.join(tls, "ca.crt"),
                                  ca_key_file=os.path.join(tls, "ca.key"))
    await inf.start()
    await signer.start()
    try:
        jane_key = ec.generate_private_key(ec.SECP256R1())
        made = await client.create(CSR, csr("jane", key=jane_key, expirationSeconds=3600))
        # the status subresource cannot approve; approval can, and cannot set a certificate
        await client.update(CSR, approve(dict(made)), "status")
        assert not (await client.get(CSR, None, "jane")).get("status", {}).get("conditions")
        got = await client.update(CSR, approve(await client.get(CSR, None, "jane")), "approval")
        assert got["status"]["conditions"][0]["type"] == "Approved"
        done = await wait_until(lambda: _issued(client, "jane"), timeout=60, what="certificate issued")
        cert = x509.load_pem_x509_certificate(base64.b64decode(done["status"]["certificate"]))
        ca = x509.load_pem_x509_certificate(server.ca_pem)
        cert.verify_directly_issued_by(ca)
        assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "jane"
        assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "devs"
        lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
        assert 3600 <= lifetime.total_seconds() <= 3600 + 600
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        assert list(eku) == [x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]
        # the issued certificate logs in as the request's subject
        key_pem = jane_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                         serialization.NoEncryption())
        jane = CertClient(server, base64.b64decode(done["status"]["certificate"]), key_pem, tmp_path)
        try:
            me = (await jane.request("POST", WHOAMI, body={}))["status"]["userInfo"]
            assert me["username"] == "jane" and "devs" in me["groups"], me
        finally:
            await jane.close()
        # the Approved condition cannot be taken back, nor the certificate changed
        done["status"]["conditions"] = []
        with pytest.raises(ApiError) as e:
            await client.update(CSR, done, "approval")
        assert e.value.status == 422
        # a request the signer may not honour fails instead; a denied one is left alone
        await client.create(CSR, csr("server", usages=["server auth"]))
        await client.update(CSR, approve(await client.get(CSR, None, "server")), "approval")
        failed = await wait_until(lambda: _condition(client, "server", "Failed"), timeout=60, what="failed")
        assert failed["reason"] == "SignerValidationFailure" and "client auth" in failed["message"]
        await client.create(CSR, csr("nope"))
        await client.update(CSR, approve(await client.get(CSR, None, "nope"), "Denied"), "approval")
        await client.create(CSR, csr("other", signer="example.com/mine"))
        await client.update(CSR, approve(await client.get(CSR, None, "other")), "approval")
        await client.create(CSR, csr("last"))  # the loop has seen every event before this one
        await client.update(CSR, approve(await client.get(CSR, None, "last")), "approval")
        await wait_until(lambda: _issued(client, "last"), timeout=60, what="the last certificate")
        for name in ("nope", "other"):
            assert not (await client.get(CSR, None, name))["status"].get("certificate")
    finally:
        await signer.stop()
        await inf.stop()


async def _issued(client, name):
    obj = await client.get(CSR, None, name)
    return obj if obj.get("status", {}).get("certificate") else None


async def _condition(client, name, kind_):
    obj = await client.get(CSR, None, name)
    return next((c for c in obj.get("status", {}).get("conditions", []) if c["type"] == kind_), None)
