"""operator/headwater/builds/cache.py and its wiring: the registry layer cache of a build."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from headwater.builds.cache import (
    CacheError,
    build_cache_repository,
    cache_repository,
    wants_cache,
)
from headwater.builds.job import (
    JobSettings,
    Resolved,
    buildah_arguments,
    kaniko_arguments,
    render_job,
    settings_from_config,
)
from headwater.builds.model import BUILD_CONTAINER
from headwater.builds.scripts import S2I_DIR, SOURCE_DIR
from headwater.config import (
    BuildCache,
    BuildDefaults,
    ConfigError,
    config_from_mapping,
    parse_cache_repository,
)
from headwater.registry.reference import parse_reference

OUTPUT = "registry.example.com:5000/shop/web:1.0"
CACHE = "registry.example.com:5000/shop/web-cache"
KANIKO = JobSettings(builder_image="b", executor="kaniko", kaniko_image="k")
BUILDAH = JobSettings(builder_image="b", executor="buildah", kaniko_image="k")
RESOLVED = Resolved(output_image=OUTPUT, privileged_builds=True)


def spec(kind: str = "Docker", **block: Any) -> dict[str, Any]:
    key = {"Docker": "dockerStrategy", "Source": "sourceStrategy", "Custom": "customStrategy"}
    return {
        "source": {"type": "Dockerfile", "dockerfile": "FROM busybox\n"},
        "strategy": {"type": kind, key[kind]: block},
        "output": {"to": {"kind": "DockerImage", "name": OUTPUT}},
    }


# --- where the cache lives -------------------------------------------------------------


@pytest.mark.parametrize(
    ("output", "cache"),
    [
        (OUTPUT, CACHE),
        ("registry.example.com:5000/shop/web@sha256:" + "a" * 64, CACHE),
        ("registry.example.com:5000/shop/web:1@sha256:" + "a" * 64, CACHE),
        ("10.244.0.1:5000/team-a/app:latest", "10.244.0.1:5000/team-a/app-cache"),
        ("localhost/app", "localhost/app-cache"),
        ("[fd00::1]:5000/a/b:1", "[fd00::1]:5000/a/b-cache"),
        # Docker Hub names are normalised before the suffix is added.
        ("app:1", "docker.io/library/app-cache"),
        ("acme/app", "docker.io/acme/app-cache"),
    ],
)
def test_default_cache_repository_is_the_output_repository_with_cache(
    output: str, cache: str
) -> None:
    assert cache_repository(output) == cache


def test_cache_repository_templates() -> None:
    assert cache_repository(OUTPUT, "{repository}.buildcache") == (
        "registry.example.com:5000/shop/web.buildcache"
    )
    assert cache_repository(OUTPUT, "cache/{repository}") == (
        "registry.example.com:5000/cache/shop/web"
    )
    assert cache_repository(OUTPUT, "caches/builds/{repository}_c") == (
        "registry.example.com:5000/caches/builds/shop/web_c"
    )


@pytest.mark.parametrize(
    "output",
    [
        "",
        "Registry.example.com:5000/Shop/Web",
        "registry.example.com:5000/shop/../other/web",
        "registry.example.com:5000//other/web",
        "registry.example.com:5000/shop/web:tag with space",
        # 255 characters of path: no room for "-cache".
        "registry.example.com/" + "a" * 255,
    ],
)
def test_no_cache_for_an_output_that_is_no_valid_repository(output: str) -> None:
    with pytest.raises(CacheError):
        cache_repository(output)


@pytest.mark.parametrize(
    "template",
    [
        "{repository}",
        "other.example.com/{repository}",
        "{repository}/../../other",
        "{repository}@sha256:" + "a" * 64,
        "{repository}:tag",
        "/{repository}-cache",
        "{repository}{repository}",
        "cache",
    ],
)
def test_a_template_cannot_leave_the_output_registry(template: str) -> None:
    # The config refuses them when it loads...
    with pytest.raises(ConfigError):
        parse_cache_repository(template, "buildCache.repository")
    # ...and the derivation refuses them again, or keeps the cache on the output's host.
    try:
        derived = cache_repository(OUTPUT, template)
    except CacheError:
        return
    ref = parse_reference(derived)
    assert ref.domain == "registry.example.com:5000"
    assert ref.path != "shop/web"


# Tenant-controlled outputs: a DockerImage name, or an ImageStreamTag's namespace and
# stream under the operator's registry. Whatever they hold, the cache is a repository
# of the same registry host, next to the output (same directory), named by the output.
_component = st.from_regex(r"[a-z0-9]{1,8}([._-][a-z0-9]{1,8}){0,2}", fullmatch=True)
_host = st.sampled_from(
    ["registry.example.com", "registry.example.com:5000", "10.244.0.1:5000", "localhost"]
)
_tenant_text = st.lists(
    st.sampled_from([*"abc/:@.-_A%{}\\ \n", "sha256:", "a" * 64, "../", "//"]), max_size=20
).map("".join)


@given(
    host=_host,
    path=st.lists(_component, min_size=1, max_size=4),
    tag=st.none() | st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,10}", fullmatch=True),
)
def test_cache_stays_next_to_the_output(host: str, path: list[str], tag: str | None) -> None:
    output = f"{host}/{'/'.join(path)}" + (f":{tag}" if tag else "")
    cache = parse_reference(cache_repository(output))
    assert cache.domain == host
    assert cache.path == "/".join(path) + "-cache"
    assert cache.tag is None
    assert cache.digest is None


@given(host=_host, text=_tenant_text)
def test_any_tenant_text_yields_a_cache_on_the_output_host_or_none(host: str, text: str) -> None:
    output = f"{host}/{text}"
    try:
        parsed = parse_reference(output)
    except ValueError:
        parsed = None
    try:
        derived = cache_repository(output)
    except CacheError:
        return
    assert parsed is not None, "an output the grammar refuses has no cache"
    cache = parse_reference(derived)
    assert cache.domain == parsed.domain
    assert cache.path == parsed.path + "-cache"
    assert (cache.tag, cache.digest) == (None, None)


def test_cache_of_an_imagestreamtag_output_stays_in_its_namespace() -> None:
    # outputs.output_image makes <registry>/<namespace>/<stream>:<tag>.
    for namespace, stream in (("team-a", "web"), ("team-a", "team-b"), ("a", "b-cache")):
        output = f"10.244.0.1:5000/builds/{namespace}/{stream}:latest"
        cache = parse_reference(cache_repository(output))
        assert cache.path.split("/")[:2] == ["builds", namespace]


# --- when a build has one -------------------------------------------------------------


def test_cache_is_on_by_default_for_docker_and_s2i() -> None:
    defaults = BuildDefaults()
    assert wants_cache(spec("Docker"), defaults)
    assert wants_cache(spec("Source"), defaults)
    assert not wants_cache(spec("Custom"), defaults)


def test_no_cache_turns_it_off_for_one_build() -> None:
    defaults = BuildDefaults()
    assert not wants_cache(spec("Docker", noCache=True), defaults)
    assert not wants_cache(spec("Source", noCache=True), defaults)
    assert wants_cache(spec("Docker", noCache=False), defaults)


def test_build_defaults_turn_it_off_where_a_build_leaves_no_cache_unset() -> None:
    defaults = BuildDefaults(no_cache=True)
    assert not wants_cache(spec("Docker"), defaults)
    assert not wants_cache(spec("Source"), defaults)
    # A default, not an override: the strategy's own noCache: false wins.
    assert wants_cache(spec("Docker", noCache=False), defaults)


def test_build_cache_disabled_turns_it_off_everywhere() -> None:
    off = BuildCache(enabled=False)
    assert not wants_cache(spec("Docker", noCache=False), BuildDefaults(), off)
    assert build_cache_repository(spec(), OUTPUT, BuildDefaults(), off) is None


def test_no_output_no_cache() -> None:
    assert build_cache_repository(spec(), None, BuildDefaults(), BuildCache()) is None
    assert build_cache_repository(spec(), OUTPUT, BuildDefaults(), BuildCache()) == CACHE


# --- the executors' arguments ---------------------------------------------------------


def test_kaniko_cache_arguments() -> None:
    args = kaniko_arguments(spec(), RESOLVED, KANIKO, SOURCE_DIR)
    assert "--cache=true" in args
    assert f"--cache-repo={CACHE}" in args
    assert "--cache=false" not in args


def test_kaniko_without_cache() -> None:
    off = kaniko_arguments(spec(noCache=True), RESOLVED, KANIKO, SOURCE_DIR)
    assert "--cache=false" in off
    assert not [a for a in off if a.startswith("--cache-repo") or a == "--cache=true"]
    no_output = kaniko_arguments(spec(), Resolved(output_image=None), KANIKO, SOURCE_DIR)
    assert "--no-push" in no_output
    assert not [a for a in no_output if a.startswith("--cache")]


def test_buildah_cache_arguments() -> None:
    args = buildah_arguments(spec(), RESOLVED, BUILDAH, SOURCE_DIR)
    assert args[:5] == ["--layers", "--cache-from", CACHE, "--cache-to", CACHE]
    assert "--layers=false" not in args
    assert "--no-cache" not in args


def test_buildah_without_cache() -> None:
    for off_spec, resolved in (
        (spec(noCache=True), RESOLVED),
        (spec(), Resolved(output_image=None, privileged_builds=True)),
    ):
        args = buildah_arguments(off_spec, resolved, BUILDAH, SOURCE_DIR)
        assert "--layers=false" in args
        assert not {"--layers", "--cache-from", "--cache-to"} & set(args)


def test_s2i_builds_get_the_cache() -> None:
    resolved = Resolved(
        output_image=OUTPUT, base_image="b", s2i_dockerfile="FROM b\n", privileged_builds=True
    )
    args = kaniko_arguments(spec("Source"), resolved, KANIKO, S2I_DIR)
    assert f"--cache-repo={CACHE}" in args
    args = buildah_arguments(spec("Source"), resolved, BUILDAH, S2I_DIR)
    assert args[:5] == ["--layers", "--cache-from", CACHE, "--cache-to", CACHE]


def _build(body_spec: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"name": "web-1", "namespace": "shop", "uid": "u"}, "spec": body_spec}


def test_buildah_container_names_the_cache_for_its_script() -> None:
    job = render_job(_build(spec()), RESOLVED, BUILDAH)
    (main,) = job["spec"]["template"]["spec"]["containers"]
    assert main["name"] == BUILD_CONTAINER
    assert {"name": "HW_CACHE", "value": CACHE} in main["env"]
    job = render_job(_build(spec(noCache=True)), RESOLVED, BUILDAH)
    (main,) = job["spec"]["template"]["spec"]["containers"]
    assert "HW_CACHE" not in {e["name"] for e in main["env"]}


# --- the operator config --------------------------------------------------------------


def test_config_build_cache_and_defaults() -> None:
    config = config_from_mapping(
        {
            "buildCache": {"enabled": False, "repository": "cache/{repository}"},
            "buildDefaults": {"noCache": True, "env": [{"name": "A", "value": "1"}]},
        }
    )
    assert config.build_cache == BuildCache(enabled=False, repository="cache/{repository}")
    assert config.build_defaults.no_cache is True
    assert config.build_defaults.env == (("A", "1"),)
    settings = settings_from_config(config)
    assert settings.cache == config.build_cache
    assert settings.defaults.no_cache is True


def test_config_build_cache_defaults() -> None:
    config = config_from_mapping({})
    assert config.build_cache == BuildCache(enabled=True, repository="{repository}-cache")
    assert config.build_defaults.no_cache is False


@pytest.mark.parametrize(
    "block",
    [
        {"enabled": "maybe"},
        {"repository": ""},
        {"repository": "{repository}"},
        {"repository": "other.example.com/{repository}"},
        {"repository": "{repository}/cache"},
        {"repository": "Cache/{repository}"},
        {"unknown": 1},
        "on",
    ],
)
def test_config_refuses_bad_build_cache(block: object) -> None:
    with pytest.raises(ConfigError) as caught:
        config_from_mapping({"buildCache": block})
    assert "buildCache" in str(caught.value)


def test_config_refuses_bad_build_defaults_no_cache() -> None:
    with pytest.raises(ConfigError, match=r"buildDefaults\.noCache"):
        config_from_mapping({"buildDefaults": {"noCache": "sometimes"}})
