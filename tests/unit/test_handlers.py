"""The kopf handlers register for the right resources and patch status only on change."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import kopf
import pytest
from lightkube.core.exceptions import ApiError
from lightkube.models.meta_v1 import Status

import headwater.handlers  # noqa: F401  (registers the handlers)
from headwater.admission_server import admission_registry
from headwater.config import Config
from headwater.handlers.lifecycle import (
    FINALIZER,
    configure_settings,
    in_cluster_server,
    namespaced_mode,
    service_account_login,
)
from headwater.runtime import namespaces_for


def test_handlers_registered_for_the_three_kinds() -> None:
    registry = kopf.get_default_registry()
    resources = registry._watching.get_all_handlers()
    selectors = {
        (h.selector.group, h.selector.version, h.selector.plural)
        for h in resources
        if h.selector is not None
    }
    assert {
        ("image.headwater.dev", "v1", "imagestreams"),
        ("build.headwater.dev", "v1", "buildconfigs"),
        ("build.headwater.dev", "v1", "builds"),
    } <= selectors


def test_settings() -> None:
    settings = kopf.OperatorSettings()
    configure_settings(settings, "pod-1")
    assert settings.persistence.finalizer == FINALIZER == "headwater.dev/finalizer"
    assert isinstance(settings.persistence.progress_storage, kopf.AnnotationsProgressStorage)
    assert isinstance(settings.persistence.diffbase_storage, kopf.AnnotationsDiffBaseStorage)
    assert settings.watching.server_timeout
    assert settings.watching.client_timeout
    assert settings.posting.reporting_instance == "pod-1"
    # Paged initial lists: an unpaged list of N=10,000 streams was the start-up peak RSS.
    assert settings.watching.chunk_size == 500


def test_in_cluster_server_from_the_service_variables() -> None:
    env = {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"}
    assert in_cluster_server(env) == "https://10.96.0.1:443"
    env6 = {"KUBERNETES_SERVICE_HOST": "fd00::1", "KUBERNETES_SERVICE_PORT": "6443"}
    assert in_cluster_server(env6) == "https://[fd00::1]:6443"
    assert in_cluster_server({}) is None


def test_service_account_login_reads_the_mounted_files(tmp_path: Path) -> None:
    env = {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"}
    assert service_account_login(env, tmp_path) is None  # no token: not in a pod
    (tmp_path / "token").write_text("tok\n")
    (tmp_path / "namespace").write_text("headwater-system")
    (tmp_path / "ca.crt").write_text("pem")
    info = service_account_login(env, tmp_path)
    assert info is not None
    assert (info.server, info.token, info.default_namespace) == (
        "https://10.96.0.1:443",
        "tok",
        "headwater-system",
    )
    assert info.ca_path == str(tmp_path / "ca.crt")
    assert service_account_login({}, tmp_path) is None  # no service variables


class ListingKube:
    """lightkube's list(), answering 404 for the kinds whose CRD is not served."""

    def __init__(self, unserved: set[str]) -> None:
        self.unserved = unserved
        self.listed: list[tuple[str, str | None]] = []

    def list(self, kind: Any, namespace: str | None = None, **_: Any) -> AsyncIterator[Any]:
        plural = kind._api_info.plural
        self.listed.append((plural, namespace))

        async def items() -> AsyncIterator[Any]:
            if plural in self.unserved:
                raise ApiError(status=Status(code=404, reason="NotFound", message="no"))
            yield {}

        return items()


async def test_namespaced_mode_turns_scanning_off_and_needs_no_cluster_read() -> None:
    settings = kopf.OperatorSettings()
    kube = ListingKube(set())
    await namespaced_mode(settings, ("team-a", "team-b"), cast(Any, kube))
    assert settings.scanning.disabled is True
    # One list per kind, in a watched namespace (what its RoleBinding allows).
    assert kube.listed == [
        ("imagestreams", "team-a"),
        ("buildconfigs", "team-a"),
        ("builds", "team-a"),
    ]


async def test_namespaced_mode_waits_for_the_crds() -> None:
    settings = kopf.OperatorSettings()
    with pytest.raises(kopf.TemporaryError, match="buildconfigs, builds not served yet"):
        await namespaced_mode(
            settings, ("team-a",), cast(Any, ListingKube({"buildconfigs", "builds"}))
        )


def test_kopf_scope_follows_the_namespace_list() -> None:
    assert namespaces_for(Config()) == (True, ())
    assert namespaces_for(Config(namespaces=("a", "b"))) == (False, ("a", "b"))


def test_kopf_runs_no_admission_handler() -> None:
    """They are served by every replica from a registry of their own: kopf's operator, on
    the leader only, would otherwise refuse to start without its own admission server."""
    assert not kopf.get_default_registry()._webhooks.get_all_handlers()
    assert admission_registry()._webhooks.get_all_handlers()


def test_kopf_never_watches_secrets_or_configmaps() -> None:
    """The RBAC grants Secrets `get` only: no handler may make kopf list or watch them."""
    registry = kopf.get_default_registry()
    admission = admission_registry()
    handlers = [
        *registry._watching.get_all_handlers(),
        *registry._changing.get_all_handlers(),
        *registry._spawning.get_all_handlers(),
        *registry._indexing.get_all_handlers(),
        *registry._webhooks.get_all_handlers(),
        *admission._webhooks.get_all_handlers(),
    ]
    watched = {h.selector.plural for h in handlers if h.selector is not None}
    assert "imagestreams" in watched
    assert not {"secrets", "configmaps", "namespaces"} & watched
