"""The operator's configuration: defaults, then a YAML file, then environment variables.

An admin configures Headwater once, through the ``headwater-config`` ConfigMap:
its ``config.yaml`` key is mounted into the pod and named by
``HEADWATER_CONFIG_FILE``, and a few scalar settings may also come from
``HEADWATER_*`` environment variables (which win over the file, so a
Deployment patch can override one value without rewriting the file). Command
line flags win over both; the CLI applies them with :func:`dataclasses.replace`.

Everything here is pure: :func:`load_config` takes the environment as a mapping
and the file reader as a function, so tests need neither.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeAlias, cast

import yaml

LogFormat: TypeAlias = Literal["text", "json"]

ENV_PREFIX = "HEADWATER_"
CONFIG_FILE_ENV = "HEADWATER_CONFIG_FILE"

# host[:port][/prefix]: a DNS name, IPv4 address or [IPv6] literal, an optional
# port and an optional repository prefix (lowercase path components, as the
# OCI distribution spec allows in repository names).
_DNS_PART = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_HOST = rf"(?:{_DNS_PART}(?:\.{_DNS_PART})*|\[[0-9A-Fa-f:.]+\])"
_REGISTRY_RE = re.compile(
    rf"^(?P<host>{_HOST})(?::(?P<port>[0-9]{{1,5}}))?"
    r"(?P<prefix>(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*)$"
)
_LABEL_KEY_RE = re.compile(r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
                           r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")  # fmt: skip
_ENV_NAME_RE = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
_DNS_LABEL_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_TOLERATION_OPERATORS = ("Exists", "Equal")
_TOLERATION_EFFECTS = ("", "NoSchedule", "PreferNoSchedule", "NoExecute")


class ConfigError(ValueError):
    """A configuration value is missing or malformed; the message names where it came from."""


@dataclass(frozen=True)
class Toleration:
    """A pod toleration for build pods (the subset of core/v1 Toleration builds need)."""

    key: str = ""
    """Taint key to tolerate; empty with operator Exists tolerates every taint."""
    operator: str = "Equal"
    """``Equal`` (key and value must match) or ``Exists`` (key alone)."""
    value: str = ""
    """Taint value to match with ``Equal``."""
    effect: str = ""
    """Taint effect to match; empty matches all effects."""
    toleration_seconds: int | None = None
    """How long a NoExecute taint is tolerated before eviction; None is forever."""

    def to_kubernetes(self) -> dict[str, Any]:
        """The core/v1 Toleration as it appears in a pod spec."""
        out: dict[str, Any] = {"operator": self.operator}
        if self.key:
            out["key"] = self.key
        if self.value:
            out["value"] = self.value
        if self.effect:
            out["effect"] = self.effect
        if self.toleration_seconds is not None:
            out["tolerationSeconds"] = self.toleration_seconds
        return out


@dataclass(frozen=True)
class Resources:
    """Compute resources for the build container (core/v1 ResourceRequirements)."""

    requests: Mapping[str, str] = field(default_factory=dict)
    """Resource name (``cpu``, ``memory``, ...) to quantity the scheduler reserves."""
    limits: Mapping[str, str] = field(default_factory=dict)
    """Resource name to the quantity the container may not exceed."""


@dataclass(frozen=True)
class BuildSettings:
    """Settings applied to every build pod; see BuildDefaults and BuildOverrides for precedence."""

    env: tuple[tuple[str, str], ...] = ()
    """Environment variables (name, value) for the build container, in order."""
    labels: Mapping[str, str] = field(default_factory=dict)
    """Image labels written into every built image."""
    node_selector: Mapping[str, str] = field(default_factory=dict)
    """Node labels build pods must be scheduled on."""
    tolerations: tuple[Toleration, ...] = ()
    """Taints build pods tolerate."""
    resources: Resources = field(default_factory=Resources)
    """Requests and limits of the build container."""


@dataclass(frozen=True)
class BuildDefaults(BuildSettings):
    """Values a build gets when its BuildConfig does not set them (OpenShift's BuildDefaults)."""

    no_cache: bool = False
    """Builds whose strategy leaves ``noCache`` unset build without the registry layer
    cache (a strategy's own ``noCache: false`` still uses it)."""


@dataclass(frozen=True)
class BuildOverrides(BuildSettings):
    """Values that replace whatever a BuildConfig sets (OpenShift's BuildOverrides)."""


@dataclass(frozen=True)
class AllowedRegistry:
    """One ``allowedRegistriesForImport`` entry (OpenShift's RegistryLocation shape)."""

    domain_name: str
    """``host[:port]``: the host may hold ``*`` (any characters, dots included), the
    port may be ``*`` (any port); without a port the registry's default ports (443
    for HTTPS, 80 for plain HTTP) match."""
    insecure: bool = False
    """Plain HTTP or unverified TLS to this registry is allowed (a tag must still ask
    for it with ``importPolicy.insecure``)."""


@dataclass(frozen=True)
class VerificationKey:
    """One ``verificationKeys`` entry: a public key images may be verified against.

    Exactly one source: the PEM itself, or a key of a Secret or ConfigMap in the
    operator's namespace (read when used, so a rotated key takes effect without
    a restart). The PEM is checked when used: bad key material makes the tags
    that name it ``Verified=False`` (InvalidKey), it does not stop the operator.
    """

    name: str
    public_key: str | None = None
    secret: str | None = None
    config_map: str | None = None
    key: str = "cosign.pub"
    """The data key in the Secret or ConfigMap (``cosign generate-key-pair``'s name)."""


CACHE_REPOSITORY_PLACEHOLDER = "{repository}"
_CACHE_AFFIX_RE = re.compile(r"^[a-z0-9._-]*$")
_CACHE_PREFIX_RE = re.compile(r"^([a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*/)*$")


@dataclass(frozen=True)
class BuildCache:
    """The registry layer cache of Docker and S2I builds (kaniko ``--cache-repo``,
    buildah ``--cache-to``/``--cache-from``)."""

    enabled: bool = True
    """Builds with a registry output read and write a layer cache; off: none does."""
    repository: str = "{repository}-cache"
    """Where a build's cache lives, in its output's registry: ``{repository}`` is the
    output's repository path (without registry host or tag), with an optional prefix
    of path components before it and a suffix (no ``/``) after it."""


# Kubernetes' own defaults (kubeadm's service range, the pod range of flannel,
# kind and this repository's local cluster): set both to the cluster's.
DEFAULT_SERVICE_CIDRS: tuple[str, ...] = ("10.96.0.0/12",)
DEFAULT_POD_CIDRS: tuple[str, ...] = ("10.244.0.0/16",)


@dataclass(frozen=True)
class LeaderElection:
    """Only one replica acts: the one holding a coordination.k8s.io Lease."""

    enabled: bool = True
    """Elect a leader through a Lease; off runs kopf at once (one replica, or local development)."""
    lease_name: str = "headwater-operator"
    """Name of the Lease object."""
    lease_namespace: str = "headwater-system"
    """Namespace of the Lease; the operator's own namespace (RBAC grants leases there only)."""
    lease_duration_seconds: int = 8
    """How long a lease is valid after its last renewal; a standby takes over after this.
    Failover takes about this plus ``retry_period_seconds`` (client-go's 15 s default
    would miss issue 14's target of 15 s: tests/e2e/test_failover.py measures it)."""
    renew_deadline_seconds: int = 6
    """The leader stops acting when it could not renew for this long (< lease duration);
    a renewal round takes milliseconds (p99 46 ms on the loaded local cluster), so six
    tries a second apart ride out a slow API server."""
    retry_period_seconds: int = 1
    """How often the leader renews and standbys try to acquire."""


@dataclass(frozen=True)
class Config:
    """Everything the operator reads at start-up. Immutable; a change needs a restart."""

    registry: str | None = None
    """``host[:port][/prefix]`` where ImageStreamTag build outputs are pushed (the
    "integrated registry" role); None means such builds fail with a clear reason."""
    registry_insecure: bool = False
    """Talk plain HTTP (no TLS) to ``registry``."""
    import_interval_seconds: int = 900
    """How often tags with ``importPolicy.scheduled`` are re-imported."""
    import_rate_per_minute: int = 60
    """Upper bound of manifest requests per registry host per minute, shared by all imports
    (for each host ``import_rates`` does not name)."""
    import_rates: Mapping[str, int] = field(default_factory=dict)
    """Per registry host (``host[:port]``, lowercase): its own bound of manifest requests
    per minute, instead of ``import_rate_per_minute``. A strict public registry and a lax
    internal one need not share one budget."""
    import_platform: str = "linux/amd64"
    """The platform a Legacy import picks from a multi-platform index (os/arch[/variant])."""
    import_pull_secrets: tuple[str, ...] = ()
    """Pull secrets read in every stream's namespace, besides those of its default
    service account (names; missing ones are skipped)."""
    registry_certs_dir: str | None = None
    """Directory of per-registry CA bundles, laid out like Docker's certs.d:
    ``<dir>/<host[:port]>/ca.crt``; a registry with such a file is verified with it."""
    allowed_registries_for_import: tuple[AllowedRegistry, ...] = ()
    """Where the operator may read images (imports, builder images, token realms,
    redirects). Empty: any host whose address is not in a refused range; else
    only these hosts (``registry`` and ``insecureRegistries`` are always listed)."""
    service_cidrs: tuple[str, ...] = DEFAULT_SERVICE_CIDRS
    """The cluster's Service ranges: refused as registry addresses unless listed."""
    pod_cidrs: tuple[str, ...] = DEFAULT_POD_CIDRS
    """The cluster's Pod ranges: refused as registry addresses unless listed."""
    tag_history_limit: int = 10
    """Items kept per tag in ImageStream status, so a stream stays far below etcd's object limit."""
    builder_image: str = "quay.io/buildah/stable:latest"
    """The image build Jobs run: buildah, git, tar and a POSIX shell (the fetch step runs
    in it for every executor)."""
    build_executor: Literal["buildah", "kaniko"] = "kaniko"
    """What builds images: kaniko runs unprivileged (Pod Security ``baseline``);
    buildah needs a privileged container and runs only in namespaces an admin
    labelled ``build.headwater.dev/privileged-builds=true``. A BuildConfig may choose
    per build with the annotation ``build.headwater.dev/executor``."""
    kaniko_image: str | None = "gcr.io/kaniko-project/executor:v1.23.2"
    """The kaniko executor image (upstream kaniko is archived: a maintained fork's)."""
    insecure_registries: tuple[str, ...] = ()
    """Registries (host[:port]) builds pull from and push to without TLS verification;
    ``registry`` is added when ``registryInsecure`` is true. Nothing else is insecure."""
    build_host_network: bool = False
    """Run build pods in the node's network namespace (clusters whose pod network
    cannot reach the registry or Git server)."""
    build_defaults: BuildDefaults = field(default_factory=BuildDefaults)
    """Applied to builds that leave the value unset."""
    build_overrides: BuildOverrides = field(default_factory=BuildOverrides)
    """Applied to every build, replacing what it sets."""
    build_cache: BuildCache = field(default_factory=BuildCache)
    """The registry layer cache of builds."""
    namespaces: tuple[str, ...] = ()
    """The namespaces watched (the namespaced install mode); empty watches all namespaces."""
    log_format: LogFormat = "text"
    """``text`` for people, ``json`` for log collectors."""
    metrics_port: int = 8080
    """Port of the Prometheus ``/metrics`` endpoint."""
    health_port: int = 8081
    """Port of the ``/healthz`` and ``/readyz`` probe endpoints."""
    admission_host: str | None = None
    """Address the API server reaches the admission webhook at (this pod's IP in a
    cluster, from POD_IP); None turns the admission webhook off."""
    admission_port: int = 9443
    """HTTPS port of the admission webhook (lookupPolicy.local)."""
    admission_service: str | None = None
    """A Service in the operator's namespace (the Lease's) selecting every replica:
    the API server reaches the admission webhook through it, so every replica
    answers (headwater.admission_server). Takes precedence over ``admission_host``."""
    webhook_port: int = 8082
    """Port of the webhook endpoints (registry push notifications), served by the leader."""
    registry_webhook_token: str | None = field(default=None, repr=False)
    """Shared secret registries send as ``Authorization: Bearer``; None disables the endpoint.
    Environment only (a Secret), never the ConfigMap."""
    leader_election: LeaderElection = field(default_factory=LeaderElection)
    """Which replica acts."""
    verification_keys: tuple[VerificationKey, ...] = ()
    """Public keys images may be verified against, by name (besides the built-in
    ``headwater``, the cluster signing key's public half)."""
    signing_key_secret: str = "headwater-signing-key"  # noqa: S105 - a Secret's name
    """The Secret, in the operator's namespace (the Lease's), holding the cosign key pair
    every built image is signed with (``headwater keys create``); builds are unsigned
    while it does not exist. RBAC grants get on this one name (deploy/base/rbac.yaml)."""

    @property
    def registry_host(self) -> str | None:
        """``host[:port]`` of ``registry``, without the repository prefix."""
        return None if self.registry is None else self.registry.split("/", 1)[0]

    @property
    def insecure_hosts(self) -> tuple[str, ...]:
        """Registries (``host[:port]``) read and written without TLS verification:
        ``insecureRegistries``, and ``registry`` when ``registryInsecure``."""
        hosts = list(self.insecure_registries)
        if self.registry_insecure and self.registry_host and self.registry_host not in hosts:
            hosts.append(self.registry_host)
        return tuple(hosts)


# --- parsing helpers: each takes the raw value and a `where` naming its source ---


def _fail(where: str, expected: str, got: object) -> ConfigError:
    return ConfigError(f"{where}: expected {expected}, got {got!r}")


def parse_bool(value: object, where: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
    raise _fail(where, "true or false", value)


def parse_int(value: object, where: str, *, minimum: int, maximum: int | None = None) -> int:
    if isinstance(value, bool):  # bool is an int subclass; `true` is no port number
        raise _fail(where, "an integer", value)
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and re.fullmatch(r"\s*[+-]?[0-9]+\s*", value):
        number = int(value)
    else:
        raise _fail(where, "an integer", value)
    if number < minimum or (maximum is not None and number > maximum):
        bounds = f">= {minimum}" if maximum is None else f"between {minimum} and {maximum}"
        raise _fail(where, f"an integer {bounds}", value)
    return number


def parse_registry(value: object, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise _fail(where, "host[:port][/prefix]", value)
    text = value.strip().rstrip("/")
    if not text:
        return None
    if "://" in text:
        raise ConfigError(
            f"{where}: give host[:port][/prefix] without a scheme, got {value!r} "
            "(set registryInsecure / HEADWATER_REGISTRY_INSECURE for plain HTTP)"
        )
    match = _REGISTRY_RE.match(text)
    if match is None:
        raise _fail(where, "host[:port][/prefix] (e.g. registry.example.com:5000/builds)", value)
    port = match.group("port")
    if port is not None and not 1 <= int(port) <= 65535:
        raise _fail(where, "a port between 1 and 65535", value)
    return text


def parse_log_format(value: object, where: str) -> LogFormat:
    if value == "text":
        return "text"
    if value == "json":
        return "json"
    raise _fail(where, "text or json", value)


def parse_namespace(value: object, where: str) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, str) and _DNS_LABEL_RE.match(value) and len(value) <= 63:
        return value
    raise _fail(where, "a namespace name (DNS label)", value)


def parse_namespaces(value: object, where: str) -> tuple[str, ...]:
    """A list of namespace names (YAML) or one comma-separated string (environment, flag)."""
    if value is None:
        return ()
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple):
        raise _fail(where, "a list of namespace names", value)
    out: list[str] = []
    for item in items:
        name = parse_namespace(item.strip() if isinstance(item, str) else item, where)
        if name is not None and name not in out:
            out.append(name)
    return tuple(out)


def _parse_one_namespace(value: object, where: str) -> tuple[str, ...]:
    """The older one-namespace spelling (``namespace``, HEADWATER_NAMESPACE)."""
    name = parse_namespace(value, where)
    return () if name is None else (name,)


def _parse_str(value: object, where: str) -> str:
    if isinstance(value, str) and value:
        return value
    raise _fail(where, "a non-empty string", value)


def _parse_shared_secret(value: object, where: str) -> str:
    """A token compared with what callers send: surrounding whitespace is not part of it
    (``kubectl create secret generic --from-file`` keeps the file's trailing newline)."""
    return _parse_str(value.strip() if isinstance(value, str) else value, where)


def _parse_optional_str(value: object, where: str) -> str | None:
    """A string where empty means "off" (e.g. HEADWATER_ADMISSION_HOST="")."""
    if value is None or value == "":
        return None
    return _parse_str(value, where)


_PLATFORM = re.compile(r"^[a-z0-9_]+/[a-z0-9_]+(/[a-z0-9_.]+)?$")
_SECRET_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")


def _parse_platform(value: object, where: str) -> str:
    text = _parse_str(value, where)
    if not _PLATFORM.match(text):
        raise _fail(where, "a platform os/architecture[/variant] such as linux/arm64/v8", value)
    return text


def _parse_secret_names(value: object, where: str) -> tuple[str, ...]:
    if isinstance(value, str):  # the environment: comma separated
        value = [part.strip() for part in value.split(",") if part.strip()]
    if not isinstance(value, list) or not all(
        isinstance(v, str) and _SECRET_NAME.match(v) and len(v) <= 253 for v in value
    ):
        raise _fail(where, "a list of Secret names", value)
    return tuple(value)


def _parse_str_map(
    value: object, where: str, *, key_re: re.Pattern[str] | None = None
) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise _fail(where, "a mapping of strings to strings", value)
    out: dict[str, str] = {}
    for key, item in value.items():
        if not isinstance(key, str) or (key_re is not None and not key_re.match(key)):
            raise _fail(f"{where}", "valid keys", key)
        if isinstance(item, bool) or not isinstance(item, str | int | float):
            raise _fail(f"{where}.{key}", "a string", item)
        out[key] = str(item)
    return out


def _parse_import_rates(value: object, where: str) -> dict[str, int]:
    """``{host[:port]: requests per minute}`` (YAML), or ``host=rate,host=rate`` (environment)."""
    if value is None or value == "":
        return {}
    if isinstance(value, str):
        pairs: list[tuple[object, object]] = []
        for part in value.split(","):
            if not part.strip():
                continue
            name, sep, number = part.partition("=")
            if not sep:
                raise _fail(where, "host=rate pairs separated by commas", value)
            pairs.append((name.strip(), number.strip()))
    elif isinstance(value, Mapping):
        pairs = list(value.items())
    else:
        raise _fail(where, "a mapping of registry hosts to requests per minute", value)
    out: dict[str, int] = {}
    for host, rate in pairs:
        match = _REGISTRY_RE.match(host) if isinstance(host, str) else None
        if match is None or match.group("prefix") or len(str(host)) > 255:
            raise _fail(where, "registry hosts as host[:port] (no scheme, no path)", host)
        name = str(host).lower()
        if name in out:
            raise ConfigError(f"{where}: {name} is given twice")
        out[name] = parse_int(rate, f"{where}.{name}", minimum=1)
    return out


_KEY_NAME_RE = re.compile(r"^[a-z0-9](?:[-a-z0-9.]{0,61}[a-z0-9])?$")
_DATA_KEY_RE = re.compile(r"^[-._a-zA-Z0-9]{1,253}$")
MAX_VERIFICATION_KEYS = 64
MAX_PUBLIC_KEY_BYTES = 16 * 1024


def _parse_verification_keys(value: object, where: str) -> tuple[VerificationKey, ...]:
    """``{name: {publicKey: PEM} | {secret: name[, key]} | {configMap: name[, key]}}``."""
    entries = _as_mapping(value, where)
    if len(entries) > MAX_VERIFICATION_KEYS:
        raise ConfigError(f"{where}: {len(entries)} keys; at most {MAX_VERIFICATION_KEYS}")
    out: list[VerificationKey] = []
    for name, raw in sorted(entries.items()):
        at = f"{where}.{name}"
        if not isinstance(name, str) or not _KEY_NAME_RE.match(name):
            raise _fail(where, "key names (lowercase letters, digits, '-', '.')", name)
        if name == "headwater":
            raise ConfigError(f"{at}: the name headwater is the cluster signing key's, built in")
        entry = _as_mapping(raw, at)
        _check_keys(entry, ["publicKey", "secret", "configMap", "key"], at)
        sources = [k for k in ("publicKey", "secret", "configMap") if entry.get(k)]
        if len(sources) != 1:
            raise ConfigError(f"{at}: give exactly one of publicKey, secret, configMap")
        public_key = entry.get("publicKey")
        if public_key is not None and (
            not isinstance(public_key, str) or len(public_key) > MAX_PUBLIC_KEY_BYTES
        ):
            raise _fail(f"{at}.publicKey", "a PEM public key (at most 16 KiB)", "...")
        refs = {k: entry.get(k) for k in ("secret", "configMap") if entry.get(k) is not None}
        for k, ref in refs.items():
            if not isinstance(ref, str) or not _SECRET_NAME.match(ref) or len(ref) > 253:
                raise _fail(f"{at}.{k}", "an object name in the operator's namespace", ref)
        key = entry.get("key", "cosign.pub")
        if not isinstance(key, str) or not _DATA_KEY_RE.match(key):
            raise _fail(f"{at}.key", "a Secret or ConfigMap data key", key)
        out.append(
            VerificationKey(
                name=name,
                public_key=public_key,
                secret=refs.get("secret"),
                config_map=refs.get("configMap"),
                key=key,
            )
        )
    return tuple(out)


def _check_keys(value: Mapping[str, Any], allowed: Sequence[str], where: str) -> None:
    unknown = sorted(set(value) - set(allowed))
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(allowed)}"
        )


def _as_mapping(value: object, where: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise _fail(where, "a mapping", value)
    return cast(Mapping[str, Any], value)


def _parse_env(value: object, where: str) -> tuple[tuple[str, str], ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise _fail(where, "a list of {name, value}", value)
    out: list[tuple[str, str]] = []
    for index, item in enumerate(value):
        here = f"{where}[{index}]"
        entry = _as_mapping(item, here)
        _check_keys(entry, ("name", "value"), here)
        name = entry.get("name")
        if not isinstance(name, str) or not _ENV_NAME_RE.fullmatch(name):
            raise _fail(f"{here}.name", "an environment variable name", name)
        raw = entry.get("value", "")
        if isinstance(raw, bool) or not isinstance(raw, str | int | float):
            raise _fail(f"{here}.value", "a string", raw)
        out.append((name, str(raw)))
    return tuple(out)


def _parse_tolerations(value: object, where: str) -> tuple[Toleration, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise _fail(where, "a list of tolerations", value)
    out: list[Toleration] = []
    keys = ("key", "operator", "value", "effect", "tolerationSeconds")
    for index, item in enumerate(value):
        here = f"{where}[{index}]"
        entry = _as_mapping(item, here)
        _check_keys(entry, keys, here)
        operator = entry.get("operator", "Equal")
        if operator not in _TOLERATION_OPERATORS:
            raise _fail(f"{here}.operator", "Exists or Equal", operator)
        effect = entry.get("effect", "")
        if effect not in _TOLERATION_EFFECTS:
            raise _fail(f"{here}.effect", "NoSchedule, PreferNoSchedule or NoExecute", effect)
        key = entry.get("key", "")
        tol_value = entry.get("value", "")
        if not isinstance(key, str) or not isinstance(tol_value, str):
            raise _fail(here, "string key and value", entry)
        if operator == "Exists" and tol_value:
            raise ConfigError(f"{here}: operator Exists takes no value")
        if not key and operator != "Exists":
            raise ConfigError(f"{here}: an empty key needs operator Exists")
        seconds_raw = entry.get("tolerationSeconds")
        seconds = (
            None
            if seconds_raw is None
            else parse_int(seconds_raw, f"{here}.tolerationSeconds", minimum=0)
        )
        out.append(Toleration(key, str(operator), tol_value, str(effect), seconds))
    return tuple(out)


_QUANTITY_RE = re.compile(r"^[+]?[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei|e[0-9]+)?$")


def _parse_resources(value: object, where: str) -> Resources:
    entry = _as_mapping(value, where)
    _check_keys(entry, ("requests", "limits"), where)
    parts: dict[str, dict[str, str]] = {}
    for part in ("requests", "limits"):
        quantities = _parse_str_map(entry.get(part), f"{where}.{part}")
        for name, quantity in quantities.items():
            if not _QUANTITY_RE.match(quantity):
                raise _fail(f"{where}.{part}.{name}", "a quantity like 500m or 1Gi", quantity)
        parts[part] = quantities
    return Resources(requests=parts["requests"], limits=parts["limits"])


_BUILD_KEYS = ("env", "labels", "nodeSelector", "tolerations", "resources")


def _build_settings_kwargs(value: object, where: str) -> dict[str, Any]:
    entry = _as_mapping(value, where)
    _check_keys(entry, _BUILD_KEYS, where)
    return {
        "env": _parse_env(entry.get("env"), f"{where}.env"),
        "labels": _parse_str_map(entry.get("labels"), f"{where}.labels"),
        "node_selector": _parse_str_map(
            entry.get("nodeSelector"), f"{where}.nodeSelector", key_re=_LABEL_KEY_RE
        ),
        "tolerations": _parse_tolerations(entry.get("tolerations"), f"{where}.tolerations"),
        "resources": _parse_resources(entry.get("resources"), f"{where}.resources"),
    }


def parse_build_defaults(value: object, where: str = "buildDefaults") -> BuildDefaults:
    entry = dict(_as_mapping(value, where))
    no_cache = parse_bool(entry.pop("noCache", False), f"{where}.noCache")
    return BuildDefaults(**_build_settings_kwargs(entry, where), no_cache=no_cache)


def parse_cache_repository(value: object, where: str) -> str:
    """A cache repository template: ``[prefix/]{repository}[suffix]``, differing from
    ``{repository}`` alone (the cache must not overwrite the output)."""
    text = _parse_str(value, where)
    prefix, found, suffix = text.partition(CACHE_REPOSITORY_PLACEHOLDER)
    if (
        not found
        or CACHE_REPOSITORY_PLACEHOLDER in suffix
        or not _CACHE_PREFIX_RE.match(prefix)
        or not _CACHE_AFFIX_RE.match(suffix)
        or text == CACHE_REPOSITORY_PLACEHOLDER
        # It is always in the output's registry: a prefix that looks like a host is refused.
        or "." in prefix.split("/", 1)[0]
    ):
        raise _fail(
            where,
            "[prefix/]{repository}[suffix] with lowercase path components before and "
            "no '/' after {repository}, not {repository} alone (e.g. {repository}-cache)",
            value,
        )
    return text


def parse_build_cache(value: object, where: str = "buildCache") -> BuildCache:
    entry = _as_mapping(value, where)
    _check_keys(entry, ("enabled", "repository"), where)
    kwargs: dict[str, Any] = {}
    if "enabled" in entry:
        kwargs["enabled"] = parse_bool(entry["enabled"], f"{where}.enabled")
    if "repository" in entry:
        kwargs["repository"] = parse_cache_repository(entry["repository"], f"{where}.repository")
    return BuildCache(**kwargs)


def parse_build_overrides(value: object, where: str = "buildOverrides") -> BuildOverrides:
    return BuildOverrides(**_build_settings_kwargs(value, where))


_LEADER_KEYS = {
    "enabled": "enabled",
    "leaseName": "lease_name",
    "leaseNamespace": "lease_namespace",
    "leaseDurationSeconds": "lease_duration_seconds",
    "renewDeadlineSeconds": "renew_deadline_seconds",
    "retryPeriodSeconds": "retry_period_seconds",
}


def _parse_leader_field(name: str, value: object, where: str) -> object:
    if name == "enabled":
        return parse_bool(value, where)
    if name == "lease_name":
        if isinstance(value, str) and _DNS_SUBDOMAIN_RE.match(value) and len(value) <= 253:
            return value
        raise _fail(where, "a Lease name (DNS subdomain)", value)
    if name == "lease_namespace":
        namespace = parse_namespace(value, where)
        if namespace is None:
            raise _fail(where, "a namespace name", value)
        return namespace
    return parse_int(value, where, minimum=1)


def _check_leader(leader: LeaderElection, where: str) -> LeaderElection:
    # client-go's rule: the leader must give up before its lease can expire in
    # someone else's eyes, and must try to renew several times before that.
    if not leader.lease_duration_seconds > leader.renew_deadline_seconds:
        raise ConfigError(f"{where}: leaseDurationSeconds must exceed renewDeadlineSeconds")
    if not leader.renew_deadline_seconds > leader.retry_period_seconds:
        raise ConfigError(f"{where}: renewDeadlineSeconds must exceed retryPeriodSeconds")
    return leader


def _parse_executor(value: object, where: str) -> str:
    if value not in ("buildah", "kaniko"):
        raise _fail(where, "buildah or kaniko", value)
    return str(value)


def _parse_registries(value: object, where: str) -> tuple[str, ...]:
    """A list of host[:port] (YAML) or a comma-separated string (environment)."""
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple):
        raise _fail(where, "a list of host[:port]", value)
    out = []
    for item in items:
        text = str(item).strip()
        if not text:
            continue
        match = _REGISTRY_RE.match(text)
        if not match or match.group("prefix"):
            raise _fail(where, "host[:port] without a path", item)
        out.append(text)
    return tuple(out)


_DOMAIN_GLOB_RE = re.compile(
    r"^(?P<host>[A-Za-z0-9*](?:[A-Za-z0-9*.-]*[A-Za-z0-9*])?|\[[0-9A-Fa-f:.]+\])"
    r"(?::(?P<port>\*|[0-9]{1,5}))?$"
)


def _parse_domain_name(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise _fail(where, "host[:port] (a string)", value)
    text = value.strip().lower()
    match = _DOMAIN_GLOB_RE.match(text)
    if match is None or "://" in text or "/" in text:
        raise _fail(where, "host[:port] where host may hold * and port may be *", value)
    port = match.group("port")
    if port is not None and port != "*" and not 1 <= int(port) <= 65535:
        raise _fail(where, "a port between 1 and 65535 or *", value)
    return text


def _parse_allowed_registries(value: object, where: str) -> tuple[AllowedRegistry, ...]:
    """``[{domainName, insecure}]`` (YAML); the environment gives the same as YAML text."""
    if isinstance(value, str):
        try:
            value = yaml.safe_load(value) if value.strip() else []
        except yaml.YAMLError as exc:
            raise _fail(where, "a YAML list of {domainName, insecure}", str(exc)) from None
    if value is None:
        return ()
    if not isinstance(value, list):
        raise _fail(where, "a list of {domainName, insecure}", value)
    out: list[AllowedRegistry] = []
    for index, item in enumerate(value):
        here = f"{where}[{index}]"
        entry = _as_mapping(item, here)
        _check_keys(entry, ("domainName", "insecure"), here)
        if "domainName" not in entry:
            raise ConfigError(f"{here}: domainName is required")
        domain = _parse_domain_name(entry["domainName"], f"{here}.domainName")
        insecure = parse_bool(entry.get("insecure", False), f"{here}.insecure")
        out.append(AllowedRegistry(domain, insecure))
    return tuple(out)


def _parse_cidrs(value: object, where: str) -> tuple[str, ...]:
    """A list of CIDRs (YAML) or a comma-separated string (environment)."""
    items = value.split(",") if isinstance(value, str) else value
    if items is None:
        return ()
    if not isinstance(items, list | tuple):
        raise _fail(where, "a list of CIDRs", value)
    out = []
    for item in items:
        text = str(item).strip()
        if not text:
            continue
        try:
            out.append(str(ipaddress.ip_network(text, strict=False)))
        except ValueError:
            raise _fail(where, "CIDRs such as 10.96.0.0/12 or fd00::/108", item) from None
    return tuple(out)


def _parse_secret_name(value: object, where: str) -> str:
    if isinstance(value, str) and _DNS_SUBDOMAIN_RE.match(value) and len(value) <= 253:
        return value
    raise _fail(where, "a Secret name (DNS subdomain)", value)


# Top-level keys of the YAML file, with the Config field and the parser of each.
_FileParser = Callable[[object, str], object]
_TOP_LEVEL: dict[str, tuple[str, _FileParser]] = {
    "registry": ("registry", parse_registry),
    "registryInsecure": ("registry_insecure", parse_bool),
    "importIntervalSeconds": (
        "import_interval_seconds",
        lambda v, w: parse_int(v, w, minimum=1),
    ),
    "importRatePerMinute": ("import_rate_per_minute", lambda v, w: parse_int(v, w, minimum=1)),
    "importRates": ("import_rates", _parse_import_rates),
    "registryCertsDir": ("registry_certs_dir", _parse_optional_str),
    "importPlatform": ("import_platform", _parse_platform),
    "importPullSecrets": ("import_pull_secrets", _parse_secret_names),
    "allowedRegistriesForImport": (
        "allowed_registries_for_import",
        _parse_allowed_registries,
    ),
    "serviceCIDRs": ("service_cidrs", _parse_cidrs),
    "podCIDRs": ("pod_cidrs", _parse_cidrs),
    "tagHistoryLimit": (
        "tag_history_limit",
        lambda v, w: parse_int(v, w, minimum=1, maximum=100),
    ),
    "builderImage": ("builder_image", _parse_str),
    "buildExecutor": ("build_executor", _parse_executor),
    "kanikoImage": ("kaniko_image", _parse_optional_str),
    "insecureRegistries": ("insecure_registries", _parse_registries),
    "buildHostNetwork": ("build_host_network", parse_bool),
    "buildDefaults": ("build_defaults", parse_build_defaults),
    "buildOverrides": ("build_overrides", parse_build_overrides),
    "buildCache": ("build_cache", parse_build_cache),
    "namespaces": ("namespaces", parse_namespaces),
    "namespace": ("namespaces", _parse_one_namespace),
    "logFormat": ("log_format", parse_log_format),
    "metricsPort": ("metrics_port", lambda v, w: parse_int(v, w, minimum=1, maximum=65535)),
    "healthPort": ("health_port", lambda v, w: parse_int(v, w, minimum=1, maximum=65535)),
    "webhookPort": ("webhook_port", lambda v, w: parse_int(v, w, minimum=1, maximum=65535)),
    "admissionPort": ("admission_port", lambda v, w: parse_int(v, w, minimum=1, maximum=65535)),
    "admissionHost": ("admission_host", _parse_optional_str),
    "admissionService": ("admission_service", _parse_optional_str),
    "verificationKeys": ("verification_keys", _parse_verification_keys),
    "signingKeySecret": ("signing_key_secret", _parse_secret_name),
}

# Environment variables: scalar settings only (structured ones live in the file).
_ENV: dict[str, tuple[str, _FileParser]] = {
    "HEADWATER_REGISTRY": _TOP_LEVEL["registry"],
    "HEADWATER_REGISTRY_INSECURE": _TOP_LEVEL["registryInsecure"],
    "HEADWATER_IMPORT_INTERVAL_SECONDS": _TOP_LEVEL["importIntervalSeconds"],
    "HEADWATER_IMPORT_RATE_PER_MINUTE": _TOP_LEVEL["importRatePerMinute"],
    "HEADWATER_IMPORT_RATES": _TOP_LEVEL["importRates"],
    "HEADWATER_TAG_HISTORY_LIMIT": _TOP_LEVEL["tagHistoryLimit"],
    "HEADWATER_ALLOWED_REGISTRIES_FOR_IMPORT": _TOP_LEVEL["allowedRegistriesForImport"],
    "HEADWATER_SERVICE_CIDRS": _TOP_LEVEL["serviceCIDRs"],
    "HEADWATER_POD_CIDRS": _TOP_LEVEL["podCIDRs"],
    "HEADWATER_REGISTRY_CERTS_DIR": _TOP_LEVEL["registryCertsDir"],
    "HEADWATER_IMPORT_PLATFORM": _TOP_LEVEL["importPlatform"],
    "HEADWATER_IMPORT_PULL_SECRETS": _TOP_LEVEL["importPullSecrets"],
    "HEADWATER_BUILDER_IMAGE": _TOP_LEVEL["builderImage"],
    "HEADWATER_BUILD_EXECUTOR": _TOP_LEVEL["buildExecutor"],
    "HEADWATER_KANIKO_IMAGE": _TOP_LEVEL["kanikoImage"],
    "HEADWATER_INSECURE_REGISTRIES": _TOP_LEVEL["insecureRegistries"],
    "HEADWATER_NAMESPACES": _TOP_LEVEL["namespaces"],
    "HEADWATER_NAMESPACE": _TOP_LEVEL["namespace"],
    "HEADWATER_LOG_FORMAT": _TOP_LEVEL["logFormat"],
    "HEADWATER_METRICS_PORT": _TOP_LEVEL["metricsPort"],
    "HEADWATER_HEALTH_PORT": _TOP_LEVEL["healthPort"],
    "HEADWATER_WEBHOOK_PORT": _TOP_LEVEL["webhookPort"],
    "HEADWATER_ADMISSION_PORT": _TOP_LEVEL["admissionPort"],
    "HEADWATER_ADMISSION_HOST": _TOP_LEVEL["admissionHost"],
    "HEADWATER_ADMISSION_SERVICE": _TOP_LEVEL["admissionService"],
    "HEADWATER_SIGNING_KEY_SECRET": _TOP_LEVEL["signingKeySecret"],
    "HEADWATER_REGISTRY_WEBHOOK_TOKEN": ("registry_webhook_token", _parse_shared_secret),
}
_LEADER_ENV = {
    "HEADWATER_LEADER_ELECTION": "enabled",
    "HEADWATER_LEASE_NAME": "lease_name",
    "HEADWATER_LEASE_NAMESPACE": "lease_namespace",
}
# The Downward API's namespace is the natural default for the Lease.
POD_NAMESPACE_ENV = "POD_NAMESPACE"


def config_from_mapping(data: Mapping[str, Any], source: str = "config file") -> Config:
    """A Config from the parsed YAML file (camelCase keys, as Kubernetes objects spell them)."""
    allowed = [*_TOP_LEVEL, "leaderElection"]
    _check_keys(data, allowed, source)
    _one_of(data, ("namespaces", "namespace"), source)
    kwargs: dict[str, Any] = {}
    for key, (name, parse) in _TOP_LEVEL.items():
        if key in data:
            kwargs[name] = parse(data[key], f"{source}: {key}")
    if "leaderElection" in data:
        where = f"{source}: leaderElection"
        entry = _as_mapping(data["leaderElection"], where)
        _check_keys(entry, list(_LEADER_KEYS), where)
        leader_kwargs: dict[str, Any] = {
            _LEADER_KEYS[key]: _parse_leader_field(_LEADER_KEYS[key], value, f"{where}.{key}")
            for key, value in entry.items()
        }
        kwargs["leader_election"] = LeaderElection(**leader_kwargs)
    return _validate(Config(**kwargs), source)


def _one_of(data: Mapping[str, Any], keys: tuple[str, ...], source: str) -> None:
    """Two spellings of one setting: give one."""
    given = [key for key in keys if key in data]
    if len(given) > 1:
        raise ConfigError(f"{source}: {' and '.join(given)} both set; give only {keys[0]}")


def _validate(config: Config, source: str) -> Config:
    _check_leader(config.leader_election, f"{source}: leaderElection")
    if config.metrics_port == config.health_port:
        raise ConfigError(f"{source}: metricsPort and healthPort must differ")
    return config


def parse_yaml(text: str, source: str) -> Mapping[str, Any]:
    """The YAML document of a config file; an empty file is an empty configuration."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: expected a mapping at the top level")
    return cast(Mapping[str, Any], data)


def _read_text(path: str) -> str:
    return Path(path).read_text(encoding="utf-8")


def load_config(environ: Mapping[str, str], read_file: Callable[[str], str] = _read_text) -> Config:
    """Defaults, overlaid by the file named in HEADWATER_CONFIG_FILE, overlaid by HEADWATER_*.

    Unknown ``HEADWATER_*`` variables are not errors (Kubernetes service links
    inject such names); :func:`unknown_env_vars` lists them for a warning.
    """
    config = Config()
    file_path = environ.get(CONFIG_FILE_ENV, "")
    if file_path:
        try:
            text = read_file(file_path)
        except OSError as exc:
            raise ConfigError(f"{CONFIG_FILE_ENV}={file_path}: cannot read: {exc}") from exc
        config = config_from_mapping(parse_yaml(text, file_path), file_path)

    changes: dict[str, Any] = {}
    _one_of(environ, ("HEADWATER_NAMESPACES", "HEADWATER_NAMESPACE"), "environment")
    for var, (name, parse) in _ENV.items():
        if var in environ:
            changes[name] = parse(environ[var], var)

    leader_changes: dict[str, Any] = {}
    file_sets_namespace = config.leader_election.lease_namespace != LeaderElection().lease_namespace
    if environ.get(POD_NAMESPACE_ENV) and not file_sets_namespace:
        leader_changes["lease_namespace"] = _parse_leader_field(
            "lease_namespace", environ[POD_NAMESPACE_ENV], POD_NAMESPACE_ENV
        )
    for var, name in _LEADER_ENV.items():
        if var in environ:
            leader_changes[name] = _parse_leader_field(name, environ[var], var)
    if leader_changes:
        changes["leader_election"] = dataclasses.replace(config.leader_election, **leader_changes)

    return _validate(dataclasses.replace(config, **changes), "environment")


def unknown_env_vars(environ: Mapping[str, str]) -> list[str]:
    """``HEADWATER_*`` variables this module does not read: likely typos, worth a warning."""
    known = {*_ENV, *_LEADER_ENV, CONFIG_FILE_ENV}
    return sorted(k for k in environ if k.startswith(ENV_PREFIX) and k not in known)
