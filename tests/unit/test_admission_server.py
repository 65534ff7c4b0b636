"""Admission is answered with no kopf operator running (as on a standby), over TLS, and the
replicas share one CA in a Secret, made by whichever replica comes first."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import aiohttp
import kopf
import pytest
from cryptography import x509
from lightkube.core.exceptions import ApiError
from lightkube.models.meta_v1 import Status
from lightkube.resources.core_v1 import Secret

from headwater.admission_server import (
    CA_SECRET,
    admission_registry,
    ca_from_secret,
    load_or_create_ca,
    service_hosts,
    webhook_fn,
)
from headwater.certs import make_ca, make_leaf_cert, make_serving_cert
from headwater.handlers.admission import MEMO_ADMISSION, AdmissionContext

INLINE = {"type": "GitHub", "github": {"secret": "s3cr3t"}}


def test_a_leaf_chains_to_the_ca_and_names_the_service(tmp_path: Path) -> None:
    ca = make_ca("test CA")
    hosts = service_hosts("headwater-admission", "headwater-system")
    leaf = make_leaf_cert(tmp_path, ca, hosts)
    cert = x509.load_pem_x509_certificate(leaf.cert_pem)
    ca_cert = x509.load_pem_x509_certificate(ca.cert_pem)
    cert.verify_directly_issued_by(ca_cert)  # raises when not
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == hosts
    assert hosts[0] == "headwater-admission.headwater-system.svc"  # what the API server dials
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    # A second replica's leaf: its own key, the same anchor.
    other = x509.load_pem_x509_certificate(make_leaf_cert(tmp_path / "b", ca, hosts).cert_pem)
    other.verify_directly_issued_by(ca_cert)
    assert other.public_key() != cert.public_key()


def _status(code: int, reason: str) -> ApiError:
    return ApiError(status=Status(code=code, reason=reason, message=reason))


class SecretStore:
    """The Secrets of one namespace; ``rival`` makes a CA between our get and our create."""

    def __init__(self, rival: bool = False) -> None:
        self.secrets: dict[str, Secret] = {}
        self.rival = rival
        self.creates = 0

    async def get(self, resource: Any, name: str, namespace: str) -> Secret:
        if name not in self.secrets:
            if self.rival:
                self.rival = False
                from headwater.admission_server import ca_secret

                self.secrets[name] = ca_secret(namespace, make_ca("rival"))
            raise _status(404, "NotFound")
        return self.secrets[name]

    async def create(self, secret: Secret) -> Secret:
        self.creates += 1
        assert secret.metadata is not None
        assert secret.metadata.name
        if secret.metadata.name in self.secrets:
            raise _status(409, "AlreadyExists")
        self.secrets[secret.metadata.name] = secret
        return secret


async def test_the_first_replica_makes_the_ca_and_the_next_reads_it() -> None:
    store = SecretStore()
    first = await load_or_create_ca(cast(Any, store), "headwater-system")
    second = await load_or_create_ca(cast(Any, store), "headwater-system")
    assert first == second
    assert store.creates == 1
    assert ca_from_secret(store.secrets[CA_SECRET].data) == first


async def test_a_replica_that_loses_the_race_uses_the_winners_ca() -> None:
    store = SecretStore(rival=True)
    mine = await load_or_create_ca(cast(Any, store), "headwater-system")
    assert ca_from_secret(store.secrets[CA_SECRET].data) == mine
    assert store.creates == 1  # tried, got 409, read the winner's


def review(kind: str, plural: str, obj: dict[str, Any], group: str = "build.headwater.dev") -> Any:
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "u-1",
            "kind": {"group": group, "version": "v1", "kind": kind},
            "resource": {"group": group, "version": "v1", "resource": plural},
            "operation": "CREATE",
            "userInfo": {"username": "alice", "groups": ["devs"]},
            "object": obj,
            "oldObject": None,
        },
    }


@contextlib.asynccontextmanager
async def served(tmp_path: Path) -> AsyncIterator[tuple[str, ssl.SSLContext]]:
    """The admission handlers behind kopf's TLS server on loopback, no operator running."""
    cert = make_serving_cert(tmp_path, ["127.0.0.1"])
    server = kopf.WebhookServer(
        addr="127.0.0.1", port=None, host="127.0.0.1",
        certfile=str(cert.cert_file), pkeyfile=str(cert.key_file), cadata=cert.cert_pem,
    )  # fmt: skip
    memo = kopf.Memo({MEMO_ADMISSION: AdmissionContext(kube=cast(Any, None), registry=None)})
    configs: asyncio.Queue[Any] = asyncio.Queue()

    async def run() -> None:
        async with server as serving:
            async for client_config in serving(webhook_fn(admission_registry(), memo)):
                await configs.put(client_config)

    task = asyncio.create_task(run())
    try:
        client_config = await asyncio.wait_for(configs.get(), 10)
        context = ssl.create_default_context(cadata=cert.cert_pem.decode())
        yield client_config["url"], context
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_admission_is_answered_without_a_kopf_operator(tmp_path: Path) -> None:
    bc = {
        "apiVersion": "build.headwater.dev/v1",
        "kind": "BuildConfig",
        "metadata": {"name": "app", "namespace": "team-a"},
        "spec": {"triggers": [INLINE], "strategy": {"type": "Docker"}},
    }
    async with served(tmp_path) as (url, tls), aiohttp.ClientSession() as http:
        # Validating: the inline-secret warning.
        async with http.post(
            f"{url}/inline-webhook-secrets", json=review("BuildConfig", "buildconfigs", bc), ssl=tls
        ) as answer:
            assert answer.status == 200
            body = await answer.json()
        assert body["response"]["uid"] == "u-1"
        assert body["response"]["allowed"] is True
        assert any("secret" in w for w in body["response"]["warnings"])
        # Mutating: the requester is recorded.
        async with http.post(
            f"{url}/strategy-requester", json=review("BuildConfig", "buildconfigs", bc), ssl=tls
        ) as answer:
            body = await answer.json()
        patch = json.loads(base64.b64decode(body["response"]["patch"]))
        assert any("alice" in json.dumps(op) for op in patch), patch
        # A resource no handler is for: kopf's 404, not a crash.
        async with http.post(
            f"{url}/x", json=review("Secret", "secrets", {}, group=""), ssl=tls
        ) as answer:
            assert answer.status == 404


@pytest.mark.parametrize("data", [None, {}, {"ca.crt": "eA=="}])
def test_a_secret_without_a_ca_holds_none(data: dict[str, str] | None) -> None:
    assert ca_from_secret(data) is None
