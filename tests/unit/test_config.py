"""operator/headwater/config.py: defaults, file, environment, errors."""

from __future__ import annotations

import pytest

from headwater.config import (
    Config,
    ConfigError,
    Resources,
    Toleration,
    load_config,
    parse_registry,
    unknown_env_vars,
)


def files(**content: str):  # type: ignore[no-untyped-def]
    def read(path: str) -> str:
        try:
            return content[path]
        except KeyError:
            raise FileNotFoundError(path) from None

    return read


def test_defaults() -> None:
    config = load_config({})
    assert config == Config()
    assert config.import_interval_seconds == 900
    assert config.import_rate_per_minute == 60
    assert config.namespaces == ()
    assert config.log_format == "text"
    assert (config.metrics_port, config.health_port) == (8080, 8081)
    assert config.leader_election.enabled
    assert config.registry is None


def test_environment_overrides() -> None:
    config = load_config(
        {
            "HEADWATER_REGISTRY": "10.244.0.1:5000/builds",
            "HEADWATER_REGISTRY_INSECURE": "true",
            "HEADWATER_IMPORT_INTERVAL_SECONDS": "60",
            "HEADWATER_NAMESPACE": "shop",
            "HEADWATER_LOG_FORMAT": "json",
            "HEADWATER_LEADER_ELECTION": "off",
            "POD_NAMESPACE": "ops",
        }
    )
    assert config.registry == "10.244.0.1:5000/builds"
    assert config.registry_host == "10.244.0.1:5000"
    assert config.registry_insecure is True
    assert config.import_interval_seconds == 60
    assert config.namespaces == ("shop",)
    assert config.log_format == "json"
    assert config.leader_election.enabled is False
    assert config.leader_election.lease_namespace == "ops"


FILE = """
registry: registry.example.com
importIntervalSeconds: 300
buildDefaults:
  env:
  - {name: HTTP_PROXY, value: "http://proxy:3128"}
  labels: {vendor: acme}
  nodeSelector: {kubernetes.io/arch: amd64}
  tolerations:
  - {key: builds, operator: Exists, effect: NoSchedule}
  resources:
    requests: {cpu: 500m, memory: 1Gi}
    limits: {memory: 4Gi}
buildOverrides:
  nodeSelector: {node-role/builds: "true"}
leaderElection:
  leaseName: hw
  leaseNamespace: hw-system
"""


def test_file_then_environment() -> None:
    environ = {"HEADWATER_CONFIG_FILE": "/etc/hw.yaml", "HEADWATER_IMPORT_INTERVAL_SECONDS": "42"}
    config = load_config(environ, files(**{"/etc/hw.yaml": FILE}))
    assert config.registry == "registry.example.com"
    assert config.import_interval_seconds == 42  # the environment wins over the file
    defaults = config.build_defaults
    assert defaults.env == (("HTTP_PROXY", "http://proxy:3128"),)
    assert defaults.labels == {"vendor": "acme"}
    assert defaults.node_selector == {"kubernetes.io/arch": "amd64"}
    assert defaults.tolerations == (Toleration("builds", "Exists", "", "NoSchedule"),)
    assert defaults.resources == Resources({"cpu": "500m", "memory": "1Gi"}, {"memory": "4Gi"})
    assert config.build_overrides.node_selector == {"node-role/builds": "true"}
    assert config.leader_election.lease_name == "hw"
    assert config.leader_election.lease_namespace == "hw-system"


def test_file_lease_namespace_beats_pod_namespace() -> None:
    environ = {"HEADWATER_CONFIG_FILE": "c", "POD_NAMESPACE": "ops"}
    config = load_config(environ, files(c=FILE))
    assert config.leader_election.lease_namespace == "hw-system"


def test_namespace_lists() -> None:
    assert load_config({"HEADWATER_NAMESPACES": " a, b,,a "}).namespaces == ("a", "b")
    assert load_config({"HEADWATER_NAMESPACES": ""}).namespaces == ()
    read = files(c="namespaces: [team-a, team-b]\n", old="namespace: shop\n")
    assert load_config({"HEADWATER_CONFIG_FILE": "c"}, read).namespaces == ("team-a", "team-b")
    assert load_config({"HEADWATER_CONFIG_FILE": "old"}, read).namespaces == ("shop",)
    # The environment wins over the file, in either spelling.
    environ = {"HEADWATER_CONFIG_FILE": "c", "HEADWATER_NAMESPACE": "x"}
    assert load_config(environ, read).namespaces == ("x",)
    both = files(c="namespaces: [a]\nnamespace: b\n")
    with pytest.raises(ConfigError, match="namespaces and namespace both set"):
        load_config({"HEADWATER_CONFIG_FILE": "c"}, both)
    with pytest.raises(ConfigError, match="a list of namespace names"):
        load_config({"HEADWATER_CONFIG_FILE": "c"}, files(c="namespaces: {a: 1}\n"))


def test_empty_file_is_defaults() -> None:
    assert load_config({"HEADWATER_CONFIG_FILE": "c"}, files(c="")) == Config()


def test_toleration_rendering() -> None:
    assert Toleration("a", "Equal", "b", "NoExecute", 30).to_kubernetes() == {
        "key": "a",
        "operator": "Equal",
        "value": "b",
        "effect": "NoExecute",
        "tolerationSeconds": 30,
    }


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"HEADWATER_IMPORT_INTERVAL_SECONDS": "0"}, "HEADWATER_IMPORT_INTERVAL_SECONDS"),
        ({"HEADWATER_IMPORT_INTERVAL_SECONDS": "soon"}, "expected an integer"),
        ({"HEADWATER_METRICS_PORT": "70000"}, "between 1 and 65535"),
        ({"HEADWATER_METRICS_PORT": "8081"}, "must differ"),
        ({"HEADWATER_LOG_FORMAT": "xml"}, "text or json"),
        ({"HEADWATER_REGISTRY_INSECURE": "maybe"}, "true or false"),
        ({"HEADWATER_REGISTRY": "https://registry.example.com"}, "without a scheme"),
        ({"HEADWATER_REGISTRY": "bad host!"}, "host[:port][/prefix]"),
        ({"HEADWATER_NAMESPACE": "Not_A_Namespace"}, "namespace"),
        ({"HEADWATER_NAMESPACES": "a,Not_A_Namespace"}, "namespace"),
        ({"HEADWATER_NAMESPACES": "a", "HEADWATER_NAMESPACE": "b"}, "both set"),
        ({"HEADWATER_LEASE_NAME": "UPPER"}, "Lease name"),
    ],
)
def test_bad_environment(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_config(environ)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("registy: x\n", "unknown key"),
        ("- a list\n", "mapping at the top level"),
        ("importIntervalSeconds: [\n", "not valid YAML"),
        ("importIntervalSeconds: true\n", "importIntervalSeconds: expected an integer"),
        ("buildDefaults: {env: [{value: x}]}\n", r"buildDefaults.env\[0\].name"),
        ("buildDefaults: {resources: {limits: {memory: lots}}}\n", "quantity"),
        ("buildDefaults: {tolerations: [{operator: Sometimes}]}\n", "Exists or Equal"),
        ("buildDefaults: {tolerations: [{key: a, operator: Exists, value: b}]}\n", "no value"),
        ("buildOverrides: {nodeSelector: {'bad key!': x}}\n", "nodeSelector"),
        ("leaderElection: {renewDeadlineSeconds: 20}\n", "must exceed renewDeadlineSeconds"),
        ("leaderElection: {retryPeriodSeconds: 10}\n", "must exceed retryPeriodSeconds"),
    ],
)
def test_bad_file(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        load_config({"HEADWATER_CONFIG_FILE": "/etc/c.yaml"}, files(**{"/etc/c.yaml": text}))
    assert str(info.value).startswith("/etc/c.yaml")


def test_missing_file() -> None:
    with pytest.raises(ConfigError, match="HEADWATER_CONFIG_FILE=/nope: cannot read"):
        load_config({"HEADWATER_CONFIG_FILE": "/nope"}, files())


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("registry.example.com", "registry.example.com"),
        ("localhost:5000", "localhost:5000"),
        ("10.244.0.1:5000/team/builds/", "10.244.0.1:5000/team/builds"),
        ("[::1]:5000", "[::1]:5000"),
        ("", None),
        (None, None),
    ],
)
def test_registry_forms(value: str | None, expected: str | None) -> None:
    assert parse_registry(value, "registry") == expected


def test_unknown_env_vars_are_listed_not_fatal() -> None:
    environ = {"HEADWATER_REGISTY": "x", "HEADWATER_REGISTRY": "r", "HOME": "/"}
    assert unknown_env_vars(environ) == ["HEADWATER_REGISTY"]
    assert load_config(environ).registry == "r"


def test_admission_host_empty_turns_the_webhook_off() -> None:
    assert load_config({"HEADWATER_ADMISSION_HOST": ""}).admission_host is None
    assert load_config({"HEADWATER_ADMISSION_HOST": "10.0.0.7"}).admission_host == "10.0.0.7"
    assert load_config({}).admission_port == 9443


def test_import_platform_and_pull_secrets() -> None:
    config = load_config(
        {"HEADWATER_IMPORT_PLATFORM": "linux/arm64/v8", "HEADWATER_IMPORT_PULL_SECRETS": "a, b.c"}
    )
    assert config.import_platform == "linux/arm64/v8"
    assert config.import_pull_secrets == ("a", "b.c")
    with pytest.raises(ConfigError, match="HEADWATER_IMPORT_PLATFORM"):
        load_config({"HEADWATER_IMPORT_PLATFORM": "amd64"})
    with pytest.raises(ConfigError, match="HEADWATER_IMPORT_PULL_SECRETS"):
        load_config({"HEADWATER_IMPORT_PULL_SECRETS": "Bad_Name"})


def test_allowed_registries_for_import_from_the_file_and_the_environment() -> None:
    from headwater.config import AllowedRegistry

    text = (
        "allowedRegistriesForImport:\n"
        "- domainName: quay.io\n"
        "- domainName: '*.Example.com:*'\n"
        "- {domainName: '[fd00::1]:5000', insecure: true}\n"
        "serviceCIDRs: [172.30.0.0/16]\n"
        "podCIDRs: [10.128.0.0/14, 'fd01::/48']\n"
    )
    config = load_config({"HEADWATER_CONFIG_FILE": "/c"}, files(**{"/c": text}))
    assert config.allowed_registries_for_import == (
        AllowedRegistry("quay.io"),
        AllowedRegistry("*.example.com:*"),
        AllowedRegistry("[fd00::1]:5000", insecure=True),
    )
    assert config.service_cidrs == ("172.30.0.0/16",)
    assert config.pod_cidrs == ("10.128.0.0/14", "fd01::/48")
    allowed = '[{domainName: "127.0.0.1:*", insecure: true}]'
    env = load_config(
        {
            "HEADWATER_ALLOWED_REGISTRIES_FOR_IMPORT": allowed,
            "HEADWATER_SERVICE_CIDRS": "10.43.0.0/16, 10.44.0.1/16",
            "HEADWATER_POD_CIDRS": "",
        }
    )
    assert env.allowed_registries_for_import == (AllowedRegistry("127.0.0.1:*", True),)
    assert env.service_cidrs == ("10.43.0.0/16", "10.44.0.0/16")
    assert env.pod_cidrs == ()


def test_import_policy_defaults_are_open_with_kubeadm_ranges() -> None:
    config = Config()
    assert config.allowed_registries_for_import == ()
    assert config.service_cidrs == ("10.96.0.0/12",)
    assert config.pod_cidrs == ("10.244.0.0/16",)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("allowedRegistriesForImport: quay.io", "expected a list of {domainName, insecure}"),
        ("allowedRegistriesForImport: [{insecure: true}]", "domainName is required"),
        ("allowedRegistriesForImport: [{domainName: 'https://quay.io'}]", "host[:port]"),
        ("allowedRegistriesForImport: [{domainName: quay.io/ns}]", "host[:port]"),
        ("allowedRegistriesForImport: [{domainName: 'quay.io:99999'}]", "a port between"),
        ("allowedRegistriesForImport: [{domainName: quay.io, secure: true}]", "unknown key"),
        ("allowedRegistriesForImport: [{domainName: quay.io, insecure: maybe}]", "true or false"),
        ("serviceCIDRs: [10.96.0.0/33]", "CIDRs such as"),
        ("podCIDRs: {a: b}", "a list of CIDRs"),
    ],
)
def test_bad_import_policy(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
        load_config({"HEADWATER_CONFIG_FILE": "/c"}, files(**{"/c": text}))
