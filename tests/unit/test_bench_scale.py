"""bench/scale.py's pure parts: where the objects go, what they say, how figures are read."""

from __future__ import annotations

import json

from bench._common import percentiles_ms
from bench.scale import (
    TAGS,
    Layout,
    buildconfig_body,
    count_requests,
    deployment_body,
    notification,
    quiet_since,
    stream_body,
    stream_imported,
)
from headwater.imports.model import spec_tags
from headwater.imports.notifications import parse_notification
from headwater.workloads.triggers import ANNOTATION_OPENSHIFT

REGISTRY = "10.244.0.1:5000"


def test_the_layout_of_full_size() -> None:
    layout = Layout(10_000, "7")
    assert len(layout.namespaces) == 100
    assert (layout.deployments, layout.buildconfigs) == (1000, 500)
    assert layout.namespace_of(0) == "scale-7-0"
    assert layout.namespace_of(9_999) == "scale-7-99"
    # Each Deployment follows a stream of its own namespace.
    assert layout.namespace_of(layout.followed_stream(999)) == "scale-7-99"
    assert len(Layout(50, "7").namespaces) == 1


def test_streams_have_ten_scheduled_tags_and_every_tenth_one_moving_repository() -> None:
    layout = Layout(1000, "7")
    followed = stream_body(layout, 20, REGISTRY)
    tags = spec_tags(followed["spec"])
    assert len(tags) == TAGS
    assert all(t.scheduled and t.importable for t in tags)
    assert tags[0].from_name == f"{REGISTRY}/scale/m2:live"
    assert tags[1].from_name == f"{REGISTRY}/scale/app:t1"
    other = stream_body(layout, 21, REGISTRY)
    assert spec_tags(other["spec"])[0].from_name == f"{REGISTRY}/scale/app:t0"
    assert followed["metadata"]["labels"] == {"scale.headwater.dev/run": "7"}


def test_deployments_follow_their_stream_and_buildconfigs_never_build() -> None:
    layout = Layout(1000, "7")
    deployment = deployment_body(layout, 2, "busybox")
    (trigger,) = json.loads(deployment["metadata"]["annotations"][ANNOTATION_OPENSHIFT])
    assert trigger["from"]["name"] == "s00020:t0"
    assert deployment["metadata"]["namespace"] == layout.namespace_of(20)
    assert deployment["spec"]["replicas"] == 0
    assert buildconfig_body(layout, 3, "busybox")["spec"]["triggers"] == []


def test_the_notification_names_the_moved_tag() -> None:
    (push,) = parse_notification(json.dumps(notification(REGISTRY, "scale/m4", "live")).encode())
    assert (push.host, push.repository, push.tag) == (REGISTRY, "scale/m4", "live")


def test_a_stream_is_imported_when_every_tag_has_an_image() -> None:
    entries = [{"tag": f"t{t}", "items": [{"image": "sha256:a"}]} for t in range(TAGS)]
    assert stream_imported({"status": {"tags": entries}})
    assert not stream_imported({"status": {"tags": entries[:-1]}})
    assert not stream_imported({})


def test_quiet_since_finds_the_start_of_a_quiet_span() -> None:
    # Busy (a full core) for 4 s, then nearly idle.
    samples = [(t * 0.5, min(t * 0.5, 4.0) + max(0.0, t * 0.5 - 4.0) * 0.05) for t in range(40)]
    # The mean over the 5 s from 3.0 is (1 + 4 x 0.05) / 5 = 0.24: quiet on average.
    assert quiet_since(samples, 0.25, 5.0) == 3.0
    assert quiet_since(samples, 0.1, 5.0) == 4.0
    assert quiet_since(samples[:12], 0.25, 5.0) is None


def test_count_requests_counts_the_operators_scale_requests_only() -> None:
    log = b"\n".join(
        [
            b'1.2.3.4 - - [x] "HEAD /v2/scale/app/manifests/t1 HTTP/1.1" 200 0 "" '
            b'"headwater-registry-client"',
            b'1.2.3.4 - - [x] "GET /v2/scale/m1/blobs/sha256:a HTTP/1.1" 200 9 "" '
            b'"headwater-registry-client"',
            b'1.2.3.4 - - [x] "PUT /v2/scale/m1/manifests/live HTTP/1.1" 201 0 "" "python"',
            b'1.2.3.4 - - [x] "HEAD /v2/other/app/manifests/t1 HTTP/1.1" 200 0 "" '
            b'"headwater-registry-client"',
            b'time="..." level=info msg="response completed" http.request.uri=/v2/scale/app',
        ]
    )
    assert count_requests(log) == 2


def test_percentiles() -> None:
    figures = percentiles_ms([i / 1000 for i in range(1, 101)])
    assert (figures["p50"], figures["p99"], figures["max"]) == (50.5, 99.0, 100.0)
