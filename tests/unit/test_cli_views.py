"""``get`` tables and ``describe`` texts for is, istag, bc and build (pure)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from headwater.cli.describe import (
    describe_build,
    describe_buildconfig,
    describe_imagestream,
    events_section,
)
from headwater.cli.kinds import BUILD, BUILDCONFIG, IMAGESTREAM, IMAGESTREAMTAG
from headwater.cli.tables import (
    build_row,
    build_sort_key,
    build_status_text,
    buildconfig_row,
    header,
    imagestream_row,
    istag_row,
    istags,
    rows,
    source_short,
    status_column,
)

NOW = datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC)
DIGEST = "sha256:" + "a" * 64
OLD = "sha256:" + "b" * 64


def stream() -> dict[str, Any]:
    return {
        "apiVersion": "image.headwater.dev/v1",
        "kind": "ImageStream",
        "metadata": {
            "name": "web",
            "namespace": "shop",
            "creationTimestamp": "2026-11-26T12:00:00Z",
        },
        "spec": {
            "lookupPolicy": {"local": True},
            "tags": [
                {
                    "name": "1.2.0",
                    "from": {"kind": "DockerImage", "name": "registry.example.com/shop/web:1.2.0"},
                    "importPolicy": {"scheduled": True},
                },
                {"name": "prod", "from": {"kind": "ImageStreamImage", "name": f"web@{DIGEST}"}},
                {"name": "broken", "from": {"kind": "DockerImage", "name": "reg/web:nope"}},
            ],
        },
        "status": {
            "dockerImageRepository": "registry.local/shop/web",
            "tags": [
                {
                    "tag": "1.2.0",
                    "items": [
                        {
                            "created": "2026-11-28T11:00:00Z",
                            "image": DIGEST,
                            "dockerImageReference": f"registry.example.com/shop/web@{DIGEST}",
                            "platforms": [
                                {
                                    "os": "linux",
                                    "architecture": "arm64",
                                    "variant": "v8",
                                    "digest": OLD,
                                }
                            ],
                        },
                        {
                            "created": "2026-11-27T12:00:00Z",
                            "image": OLD,
                            "dockerImageReference": f"registry.example.com/shop/web@{OLD}",
                        },
                    ],
                    "lastImportTime": "2026-11-28T11:58:00Z",
                    "nextImportTime": "2026-11-28T12:13:00Z",
                },
                {
                    "tag": "prod",
                    "items": [
                        {
                            "created": "2026-11-28T11:30:00Z",
                            "image": DIGEST,
                            "dockerImageReference": f"registry.example.com/shop/web@{DIGEST}",
                        }
                    ],
                },
                {
                    "tag": "built",
                    "items": [
                        {
                            "created": "2026-11-25T12:00:00Z",
                            "image": OLD,
                            "dockerImageReference": f"registry.local/shop/web@{OLD}",
                        }
                    ],
                },
                {
                    "tag": "a",
                    "items": [
                        {
                            "created": "2026-11-20T12:00:00Z",
                            "image": OLD,
                            "dockerImageReference": f"registry.local/shop/web@{OLD}",
                        }
                    ],
                },
                {
                    "tag": "broken",
                    "conditions": [
                        {
                            "type": "ImportSuccess",
                            "status": "False",
                            "reason": "NotFound",
                            "message": "no such tag",
                            "lastTransitionTime": "2026-11-28T11:59:00Z",
                        }
                    ],
                },
            ],
        },
    }


def seed_bc() -> dict[str, Any]:
    return {
        "apiVersion": "build.headwater.dev/v1",
        "kind": "BuildConfig",
        "metadata": {"name": "web", "namespace": "shop", "uid": "u-1",
                     "creationTimestamp": "2026-11-28T10:00:00Z",
                     "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"}},
        "spec": {
            "source": {"type": "Git", "git": {"uri": "https://github.com/example/shop-web.git",
                                              "ref": "main"}},
            "strategy": {"type": "Source", "sourceStrategy": {
                "from": {"kind": "ImageStreamTag", "name": "nodejs-20:latest",
                         "namespace": "openshift"},
                "env": [{"name": "NPM_CONFIG_LOGLEVEL", "value": "warn"}]}},
            "output": {"to": {"kind": "ImageStreamTag", "name": "web:latest"}},
            "triggers": [
                {"type": "ConfigChange"},
                {"type": "GitHub", "github": {"secretReference": {"name": "web-github-secret"}}},
                {"type": "ImageChange", "imageChange": {}},
            ],
        },
        "status": {"lastVersion": 4, "imageChangeTriggers": [
            {"from": {"name": "nodejs-20:latest", "namespace": "openshift"},
             "lastTriggerTime": "2026-11-28T11:00:00Z"}]},
    }  # fmt: skip


def build(number: int, phase: str, **status: Any) -> dict[str, Any]:
    spec = seed_bc()["spec"]
    spec.pop("triggers")
    return {
        "apiVersion": "build.headwater.dev/v1",
        "kind": "Build",
        "metadata": {
            "name": f"web-{number}",
            "namespace": "shop",
            "creationTimestamp": "2026-11-28T11:50:00Z",
            "annotations": {
                "build.headwater.dev/buildconfig": "web",
                "build.headwater.dev/build-number": str(number),
            },
        },
        "spec": {**spec, "triggeredBy": [{"message": "Manually triggered"}]},
        "status": {"phase": phase, **status},
    }


def failed_build() -> dict[str, Any]:
    return build(
        4, "Failed", reason="DockerBuildFailed", message="Docker build strategy has failed.",
        startTimestamp="2026-11-28T11:55:00Z", completionTimestamp="2026-11-28T11:56:02Z",
        duration="1m2s", jobName="web-4-build",
        revision={"type": "Git", "git": {
            "commit": "3f2c1ab9d0e4", "message": "Fix the cart\n\nlonger text",
            "author": {"name": "Jane Doe", "email": "jane@example.com"},
            "committer": {"name": "Jane Doe", "email": "jane@example.com"}}},
        stages=[{"name": "FetchInputs", "startTime": "2026-11-28T11:55:00Z",
                 "durationMilliseconds": 1500}],
        logSnippet="step 3/5: RUN npm ci\nnpm ERR! missing script",
    )  # fmt: skip


# --- get -----------------------------------------------------------------------------


def test_imagestream_row_like_oc() -> None:
    assert imagestream_row(stream(), NOW) == (
        "web", "registry.local/shop/web", "prod,1.2.0,built + 1 more...", "30m ago",
    )  # fmt: skip
    assert imagestream_row(stream(), NOW, wide=True)[4:] == ("local", "1.2.0", "2d")
    empty = {"metadata": {"name": "new"}}
    assert imagestream_row(empty, NOW) == ("new", "", "", "")


def test_istags_are_views_of_status() -> None:
    views = istags(stream())
    assert [v["metadata"]["name"] for v in views] == ["web:1.2.0", "web:prod", "web:built", "web:a"]
    first = views[0]
    assert first["kind"] == "ImageStreamTag"
    assert first["image"] == {
        "metadata": {"name": DIGEST},
        "dockerImageReference": f"registry.example.com/shop/web@{DIGEST}",
    }
    assert first["tag"]["from"]["name"] == "registry.example.com/shop/web:1.2.0"
    assert first["lookupPolicy"] == {"local": True}
    assert istag_row(first, NOW, wide=True) == (
        "web:1.2.0", f"registry.example.com/shop/web@{DIGEST}", "60m ago", DIGEST,
    )  # fmt: skip


def test_buildconfig_row_like_oc() -> None:
    assert buildconfig_row(seed_bc(), NOW) == ("web", "Source", "Git@main", "4")
    assert buildconfig_row(seed_bc(), NOW, wide=True)[4:] == (
        "istag/web:latest", "Serial", "Config,GitHub,ImageChange", "120m",
    )  # fmt: skip
    assert source_short({"source": {"type": "Binary"}}) == "Binary"
    assert source_short({}) == "None"


def test_build_rows_status_and_order() -> None:
    failed = failed_build()
    assert build_row(failed, NOW) == (
        "web-4", "Source", "Git@3f2c1ab", "Failed (DockerBuildFailed)", "5m ago", "1m2s",
    )  # fmt: skip
    assert build_row(failed, NOW, wide=True)[6:] == ("web", "<none>", "10m")
    assert build_status_text(build(5, "Complete", reason="ignored")) == "Complete"
    waiting = build(6, "New", reason="WaitingForPreviousBuild")
    assert build_status_text(waiting) == "New (WaitingForPreviousBuild)"
    assert build_status_text({"metadata": {}}) == "New"
    names = [b["metadata"]["name"] for b in sorted([build(10, "New"), build(9, "New")],
                                                   key=build_sort_key)]  # fmt: skip
    assert names == ["web-9", "web-10"]


def test_headers_wide_and_all_namespaces() -> None:
    assert header(IMAGESTREAM, False, False) == ("NAME", "IMAGE REPOSITORY", "TAGS", "UPDATED")
    assert header(BUILDCONFIG, False, False) == ("NAME", "TYPE", "FROM", "LATEST")
    assert header(BUILD, False, True) == (
        "NAMESPACE", "NAME", "TYPE", "FROM", "STATUS", "STARTED", "DURATION",
    )  # fmt: skip
    assert header(IMAGESTREAMTAG, True, False) == (
        "NAME", "IMAGE REFERENCE", "UPDATED", "IMAGE NAME",
    )  # fmt: skip
    assert rows(BUILD, [failed_build()], NOW, False, True)[0][:2] == ("shop", "web-4")
    assert status_column(BUILD, True) == 4
    assert status_column(BUILDCONFIG, False) is None


# --- describe ------------------------------------------------------------------------


def test_describe_imagestream() -> None:
    text = describe_imagestream(stream(), NOW)
    for expected in (
        "Image Repository: registry.local/shop/web",
        "Image Lookup:     local=true",
        "Unique Images:    2",
        "Tags:             5",
        "1.2.0\n  tagged from registry.example.com/shop/web:1.2.0\n"
        "    updates automatically from the registry (scheduled)",
        "last import Sat, 28 Nov 2026 11:58:00 UTC (2m ago)",
        "next import at 2026-11-28T12:13:00Z",
        f"  * registry.example.com/shop/web@{DIGEST}\n"
        "      Sat, 28 Nov 2026 11:00:00 UTC (60m ago)",
        f"      linux/arm64/v8 {OLD}",
        f"    registry.example.com/shop/web@{OLD}",
        f"prod\n  pinned to web@{DIGEST}",
        "built\n  pushed or built here (no spec tag)",
        "  ! error: Import failed (NotFound): no such tag",
        "broken\n  tagged from reg/web:nope",
    ):
        assert expected in text, expected
    assert text.index("\na\n") < text.index("\nbroken\n") < text.index("\nbuilt\n")


def test_describe_buildconfig() -> None:
    builds = [failed_build(), build(3, "Complete", duration="45s")]
    text = describe_buildconfig(seed_bc(), builds, NOW)
    for expected in (
        "Name:           web",
        "Latest Version: 4",
        "Annotations:    <none>",  # last-applied-configuration is noise
        "Strategy:    Source",
        "URL:         https://github.com/example/shop-web.git",
        "Ref:         main",
        "From Image:  ImageStreamTag openshift/nodejs-20:latest",
        "Environment: NPM_CONFIG_LOGLEVEL=warn",
        "Output to:   ImageStreamTag web:latest",
        "Build Run Policy:     Serial",
        "Triggered by:         Config,GitHub,ImageChange",
        "URL: <operator webhook endpoint>"
        "/apis/build.headwater.dev/v1/namespaces/shop/buildconfigs/web/webhooks/<secret>/github",
        "Secret: Secret web-github-secret, key WebHookSecretKey",
        "ImageStreamTag openshift/nodejs-20:latest (strategy)",
        "last fired Sat, 28 Nov 2026 11:00:00 UTC (60m ago)",
        "Builds History Limit: successful 5, failed 5",
    ):
        assert expected in text, expected
    table = text[text.index("Build   Status") :].splitlines()
    assert table[1].split()[:4] == ["web-4", "Failed", "(DockerBuildFailed)", "1m2s"]
    assert table[2].split()[:3] == ["web-3", "Complete", "45s"]
    assert "Builds:\t<none>" in describe_buildconfig(seed_bc(), [], NOW)


def test_describe_build() -> None:
    text = describe_build(failed_build(), NOW, colour=lambda t: f"<{t}>")
    for expected in (
        "Status:       <Failed (DockerBuildFailed)>",
        "Message:      Docker build strategy has failed.",
        "Started:      Sat, 28 Nov 2026 11:55:00 UTC (5m ago)",
        "Duration:     1m2s",
        "Build Config: web",
        "Build Job:    web-4-build",
        "Commit:              3f2c1ab9d0e4 (Fix the cart)",
        "Author/Committer:    Jane Doe <jane@example.com>",
        "Build trigger cause: Manually triggered",
        "Build Stages:\n  Stage         Started                Duration\n"
        "  FetchInputs   2026-11-28T11:55:00Z   1.5s",
        "Log Tail:\n  step 3/5: RUN npm ci\n  npm ERR! missing script",
    ):
        assert expected in text, expected
    # The revision follows the source it came from.
    assert text.index("Ref:") < text.index("Commit:") < text.index("From Image:")
    done = build(
        5, "Complete", outputDockerImageReference="registry.local/shop/web:latest",
        output={"to": {"imageDigest": DIGEST}}, startTimestamp="2026-11-28T11:58:00Z",
    )  # fmt: skip
    text = describe_build(done, NOW)
    assert "Output Image:        registry.local/shop/web:latest" in text
    assert f"Output Digest:       {DIGEST}" in text
    assert "Duration:     running" in text
    assert "Log Tail" not in text


def test_events_section_like_kubectl() -> None:
    events: list[dict[str, Any]] = [
        {"type": "Warning", "reason": "BuildFailed", "message": "web-4 failed\nbadly",
         "count": 3, "firstTimestamp": "2026-11-28T11:50:00Z",
         "lastTimestamp": "2026-11-28T11:59:00Z", "source": {"component": "headwater-operator"}},
        {"type": "Normal", "reason": "BuildStarted", "message": "started",
         "lastTimestamp": "2026-11-28T11:55:00Z", "reportingComponent": "headwater-operator"},
    ]  # fmt: skip
    lines = events_section(events, NOW)
    assert lines[0] == "Events:"
    assert lines[1].split() == ["Type", "Reason", "Age", "From", "Message"]
    assert lines[3].split()[:3] == ["Normal", "BuildStarted", "5m"]
    assert "60s (x3 over 10m)" in lines[4]
    assert lines[4].endswith("web-4 failed badly")
    assert events_section([], NOW) == ["Events:  <none>"]
    assert events_section(None, NOW) == ["Events:  <not readable: forbidden>"]


# --- describe istag reads the registry as the operator does (issue 16) -------------------------


class _IstagClient:
    """A stream whose tag was pushed by a build to the operator's plain-HTTP registry, and
    (when ``config`` is given) the operator's ConfigMap."""

    def __init__(self, config: str | None, *, spec_insecure: bool = False) -> None:
        self.config = config
        self.spec_insecure = spec_insecure

    def get(self, resource: Any, name: str, namespace: str | None = None) -> Any:
        from lightkube.core.exceptions import ApiError
        from lightkube.models.meta_v1 import ObjectMeta, Status
        from lightkube.resources.core_v1 import ConfigMap

        if resource is ConfigMap:
            assert (namespace, name) == ("headwater-system", "headwater-config")
            if self.config is None:
                raise ApiError(status=Status(code=403, reason="Forbidden", message="forbidden"))
            return ConfigMap(metadata=ObjectMeta(name=name), data={"config.yaml": self.config})
        spec_tags = (
            [{"name": "latest", "importPolicy": {"insecure": True}}] if self.spec_insecure else []
        )
        return {
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": {"tags": spec_tags},
            "status": {
                "tags": [
                    {
                        "tag": "latest",
                        "items": [
                            {
                                "dockerImageReference": f"10.244.0.1:5000/shop/web@{DIGEST}",
                                "image": DIGEST,
                                "created": "2026-11-28T12:00:00Z",
                            }
                        ],
                    }
                ]
            },
        }


@pytest.mark.parametrize(
    ("config", "spec_insecure", "flag", "expected"),
    [
        ("registry: 10.244.0.1:5000\nregistryInsecure: true\n", False, False, True),
        ("insecureRegistries: ['10.244.0.1:5000']\n", False, False, True),
        ("registry: 10.244.0.1:5000\n", False, False, False),
        ("insecureRegistries: ['other:5000']\n", False, False, False),
        (None, False, False, False),
        (None, True, False, True),
        ("registry: 10.244.0.1:5000\n", False, True, True),
        ("not: [valid", False, False, False),
    ],
    ids=[
        "operator-registry-insecure", "insecureRegistries", "operator-registry-tls",
        "other-host-insecure", "configmap-forbidden", "importPolicy-insecure", "flag",
        "configmap-unparsable",
    ],
)  # fmt: skip
def test_describe_istag_reads_the_registry_as_the_operator_does(
    monkeypatch: pytest.MonkeyPatch,
    config: str | None,
    spec_insecure: bool,
    flag: bool,
    expected: bool,
) -> None:
    """``make demo``'s describe istag said "TLS failed ... WRONG_VERSION_NUMBER" for the
    local plain-HTTP registry the operator pushes builds to (registryInsecure)."""
    from headwater.cli import views
    from headwater.registry import client as registry_client

    asked: list[bool] = []

    class Registry:
        async def __aenter__(self) -> Registry:
            return self

        async def __aexit__(self, *_: object) -> None:
            return None

        async def resolve(self, *_: object, insecure: bool, **__: object) -> None:
            asked.append(insecure)
            raise registry_client.RegistryError("TLSError", "stop here")

    monkeypatch.setattr(registry_client, "RegistryClient", Registry)
    view = {"metadata": {"name": "web:latest", "namespace": "shop"}}
    text = views._describe_istag(_IstagClient(config, spec_insecure=spec_insecure), view, flag)  # type: ignore[arg-type]
    assert asked == [expected]
    assert "stop here" in text


def test_describe_build_shows_where_the_provenance_lives() -> None:
    att = f"registry.local/shop/web:{DIGEST.replace(':', '-')}.att"
    done = build(
        6, "Complete", outputDockerImageReference="registry.local/shop/web:latest",
        output={"to": {"imageDigest": DIGEST}},
        provenance={"reference": att, "signed": False, "dependencies": 3},
    )  # fmt: skip
    assert f"Provenance:          {att} (unsigned (no signing key), 3 dependencies)" in (
        describe_build(done, NOW)
    )
    failed = build(7, "Complete", provenance={"error": "registry said no"})
    assert "Provenance:          none: registry said no" in describe_build(failed, NOW)
