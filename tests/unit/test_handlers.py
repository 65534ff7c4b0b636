"""The kopf handlers register for the right resources and patch status only on change."""

from __future__ import annotations

from pathlib import Path

import kopf

import headwater.handlers  # noqa: F401  (registers the handlers)
from headwater.handlers.lifecycle import (
    FINALIZER,
    configure_settings,
    in_cluster_server,
    service_account_login,
)


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
