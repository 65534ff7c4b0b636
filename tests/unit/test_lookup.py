"""lookupPolicy.local resolution: pure functions."""

from __future__ import annotations

from typing import Any

import pytest

from headwater.imports.lookup import pod_spec, resolve_pod_spec, short_name, stream_image

DIGEST = "sha256:" + "a" * 64


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        ("web", ("web", "latest")),
        ("web:1.0", ("web", "1.0")),
        ("my.stream:v_1", ("my.stream", "v_1")),
        ("docker.io/web", None),
        ("reg:5000/web:1", None),
        ("web@" + DIGEST, None),
        ("Web", None),
        ("", None),
    ],
)
def test_short_name(image: str, expected: tuple[str, str] | None) -> None:
    assert short_name(image) == expected


def web(local: bool = True, policy: str = "Source") -> dict[str, Any]:
    return {
        "metadata": {"name": "web"},
        "spec": {
            "lookupPolicy": {"local": local},
            "tags": [{"name": "latest", "referencePolicy": {"type": policy}}],
        },
        "status": {
            "tags": [
                {
                    "tag": "latest",
                    "items": [{"image": DIGEST, "dockerImageReference": f"src/shop/web@{DIGEST}"}],
                }
            ]
        },
    }


def test_stream_image_follows_reference_policy_and_lookup() -> None:
    assert stream_image(web(), "latest", "reg", "ns") == f"src/shop/web@{DIGEST}"
    assert stream_image(web(policy="Local"), "latest", "reg", "ns") == f"reg/ns/web@{DIGEST}"
    assert stream_image(web(policy="Local"), "latest", None, "ns") == f"src/shop/web@{DIGEST}"
    assert stream_image(web(local=False), "latest", "reg", "ns") is None
    assert stream_image(web(), "missing", "reg", "ns") is None


def test_resolve_pod_spec_changes_only_resolvable_names() -> None:
    spec = {
        "initContainers": [{"name": "init", "image": "busybox"}],
        "containers": [
            {"name": "a", "image": "web"},
            {"name": "b", "image": "web:missing"},
            {"name": "c", "image": "reg/other:1"},
        ],
    }
    changed = resolve_pod_spec(spec, {"web": web()}, None, "ns")
    assert list(changed) == ["containers"]
    assert [c["image"] for c in changed["containers"]] == [
        f"src/shop/web@{DIGEST}",
        "web:missing",
        "reg/other:1",
    ]
    assert spec["containers"][0]["image"] == "web"  # input untouched
    assert resolve_pod_spec(spec, {}, None, "ns") == {}


def test_pod_spec_paths() -> None:
    inner: dict[str, Any] = {"containers": []}
    assert (
        pod_spec("CronJob", {"spec": {"jobTemplate": {"spec": {"template": {"spec": inner}}}}})
        == inner
    )
    assert pod_spec("Pod", {"spec": inner}) == inner
    assert pod_spec("Deployment", {"spec": {}}) is None
    assert pod_spec("Service", {"spec": inner}) is None
