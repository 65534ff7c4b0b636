"""The operator imports from registries that need credentials, and survives a registry outage.

Real distribution processes on loopback (htpasswd Basic auth; token auth with
a token server), credentials from a ``kubernetes.io/dockerconfigjson`` Secret
linked to the namespace's default service account, as ``oc secrets link``
does; and an anonymous registry stopped and started again on its address.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
from pathlib import Path

import kopf.testing
import pytest

from tests.registry_servers import ImageSpec, push_images, running_registry, start_registry

from .helpers import Cluster, eventually
from .test_imagestream_imports import docker_tag, import_condition, newest_image, status_tag, stream

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("auth", ["htpasswd", "token"])
def test_credentials_from_a_linked_pull_secret(
    cluster: Cluster,
    namespace: str,
    operator_in_process: kopf.testing.KopfRunner,
    tmp_path: Path,
    auth: str,
) -> None:
    with running_registry(tmp_path / "registry", auth=auth) as registry:
        layout = push_images(
            registry, "shop/web", "1.0", [ImageSpec(content=auth.encode())], workdir=tmp_path
        )
        source = f"{registry.address}/shop/web:1.0"
        cluster.apply(stream("web", docker_tag("1.0", source)), namespace)
        eventually(
            "Unauthorized without credentials",
            lambda: (
                import_condition(cluster, namespace, "web", "1.0").get("reason") == "Unauthorized"
            ),
        )
        assert registry.password is not None
        assert registry.password not in json.dumps(
            cluster.get_json("imagestream/web", "-n", namespace)
        )

        login = f"{registry.username}:{registry.password}"
        config = {"auths": {registry.address: {"auth": base64.b64encode(login.encode()).decode()}}}
        cluster.kubectl(
            "create",
            "secret",
            "generic",
            "registry-login",
            "-n",
            namespace,
            "--type=kubernetes.io/dockerconfigjson",
            f"--from-literal=.dockerconfigjson={json.dumps(config)}",
        )
        cluster.kubectl(
            "patch",
            "serviceaccount",
            "default",
            "-n",
            namespace,
            "-p",
            '{"imagePullSecrets": [{"name": "registry-login"}]}',
        )
        cluster.kubectl(
            "annotate",
            "imagestream/web",
            "-n",
            namespace,
            "image.headwater.dev/import-requested=*",
            "--overwrite",
        )
        eventually(
            "the import with the linked secret",
            lambda: newest_image(cluster, namespace, "web", "1.0") == layout.digest,
        )
        assert import_condition(cluster, namespace, "web", "1.0")["status"] == "True"


def test_registry_outage_keeps_history_backs_off_and_recovers(
    cluster: Cluster,
    namespace: str,
    operator_in_process: kopf.testing.KopfRunner,
    tmp_path: Path,
) -> None:
    root = tmp_path / "registry"
    registry = start_registry(root)
    try:
        layout = push_images(registry, "shop/web", "1.0", [ImageSpec()], workdir=tmp_path)
        source = f"{registry.address}/shop/web:1.0"
        cluster.apply(stream("web", docker_tag("1.0", source, scheduled=True)), namespace)
        eventually(
            "the import", lambda: newest_image(cluster, namespace, "web", "1.0") == layout.digest
        )
        registry.stop()

        eventually(
            "Unreachable while the registry is down",
            lambda: (
                import_condition(cluster, namespace, "web", "1.0").get("reason") == "Unreachable"
            ),
            timeout=30,
        )
        entry = status_tag(cluster, namespace, "web", "1.0")
        assert [i["image"] for i in entry["items"]] == [layout.digest]  # history intact
        assert entry["nextImportTime"] > entry["lastImportTime"]  # the retry, visible

        port = int(registry.address.rsplit(":", 1)[1])
        registry = start_registry(root, port=port)  # same address, same data
        eventually(
            "recovery once the registry is back",
            lambda: import_condition(cluster, namespace, "web", "1.0").get("status") == "True",
            timeout=60,
        )
        assert [i["image"] for i in status_tag(cluster, namespace, "web", "1.0")["items"]] == [
            layout.digest
        ]
    finally:
        registry.stop()


def test_tls_registry_verified_with_its_ca_from_the_certs_dir(
    cluster: Cluster,
    namespace: str,
    operator_in_process: kopf.testing.KopfRunner,
    tmp_path: Path,
) -> None:
    certs_dir = Path(os.environ["HEADWATER_REGISTRY_CERTS_DIR"])
    with (
        running_registry(tmp_path / "trusted", tls=True) as trusted,
        running_registry(tmp_path / "unknown", tls=True) as unknown,
    ):
        assert trusted.ca is not None
        (certs_dir / trusted.address).mkdir()
        shutil.copy(trusted.ca.ca_file, certs_dir / trusted.address / "ca.crt")
        image = push_images(trusted, "shop/web", "1.0", [ImageSpec()], workdir=tmp_path)
        push_images(unknown, "shop/web", "1.0", [ImageSpec()], workdir=tmp_path)

        def verified(name: str, registry: str) -> dict[str, object]:
            return {
                "name": name,
                "from": {"kind": "DockerImage", "name": f"{registry}/shop/web:1.0"},
            }

        cluster.apply(
            stream(
                "web", verified("trusted", trusted.address), verified("unknown", unknown.address)
            ),
            namespace,
        )
        eventually(
            "the import verified with the CA",
            lambda: newest_image(cluster, namespace, "web", "trusted") == image.digest,
        )
        eventually(
            "TLSError for the registry whose CA nobody configured",
            lambda: (
                import_condition(cluster, namespace, "web", "unknown").get("reason") == "TLSError"
            ),
        )
