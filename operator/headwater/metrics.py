"""Prometheus metric families of the operator.

Defined here, in one place, so names and labels are stable; the code that
does the work (builds, imports, handlers) observes them. Label values are
bounded sets (phases, kinds, known registry hosts, with every other host as
``other``) — never object or namespace names, which would make the series
count grow with the cluster (or with what tenants choose).
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

REGISTRY = CollectorRegistry(auto_describe=True)
"""The registry ``/metrics`` serves; a private one so tests can read it in isolation."""

BUILD_PHASES = ("New", "Pending", "Running", "Complete", "Failed", "Error", "Cancelled")

BUILDS = Gauge(
    "headwater_builds",
    "Builds currently known to the operator, by phase.",
    ["phase"],
    registry=REGISTRY,
)
BUILD_DURATION = Histogram(
    "headwater_build_duration_seconds",
    "Wall time of finished builds, from start to completion.",
    ["phase"],
    buckets=(5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600, float("inf")),
    registry=REGISTRY,
)
BUILDS_FINISHED = Counter(
    "headwater_builds_finished_total",
    "Builds that reached a terminal phase, by phase and reason.",
    ["phase", "reason"],
    registry=REGISTRY,
)
BUILD_QUEUE_WAIT = Histogram(
    "headwater_build_queue_wait_seconds",
    "Time from a Build's creation to its Job's creation (run policy and inputs waited for).",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, float("inf")),
    registry=REGISTRY,
)
IMPORT_DURATION = Histogram(
    "headwater_import_duration_seconds",
    "Latency of one tag import (manifest request included), by registry host.",
    ["registry"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, float("inf")),
    registry=REGISTRY,
)
IMPORTS = Counter(
    "headwater_imports_total",
    "Tag imports, by registry host and result (imported, unchanged, failed).",
    ["registry", "result"],
    registry=REGISTRY,
)
SIGNATURE_FETCHES = Counter(
    "headwater_signature_fetches_total",
    "Reads of an image's cosign signatures for verification, by registry host and result"
    " (signed: signatures found, unsigned: none, failed: the registry did not answer).",
    ["registry", "result"],
    registry=REGISTRY,
)
IMPORT_SCHEDULED_TAGS = Gauge(
    "headwater_import_scheduled_tags",
    "Tags with a scheduled import, by registry host.",
    ["registry"],
    registry=REGISTRY,
)
IMPORT_EFFECTIVE_INTERVAL = Gauge(
    "headwater_import_effective_interval_seconds",
    "About how often each scheduled tag of a registry host is really checked: the import"
    " interval, or longer when the host's rate cannot check all its tags within it.",
    ["registry"],
    registry=REGISTRY,
)
IMPORT_SCHEDULE_BEHIND = Gauge(
    "headwater_import_schedule_behind",
    "1 when a registry host's rate cannot check all its scheduled tags within the import"
    " interval (see headwater_import_effective_interval_seconds), else 0.",
    ["registry"],
    registry=REGISTRY,
)
REGISTRY_REQUESTS = Counter(
    "headwater_registry_requests_total",
    "HTTP requests to registries that got an answer, by registry host, kind and status code.",
    ["registry", "kind", "code"],
    registry=REGISTRY,
)
IMPORT_ERRORS = Counter(
    "headwater_import_errors_total",
    "Failed tag imports, by registry host and reason.",
    ["registry", "reason"],
    registry=REGISTRY,
)
QUEUE_DEPTH = Gauge(
    "headwater_queue_depth",
    "Work items waiting, by queue (imports, triggers, builds).",
    ["queue"],
    registry=REGISTRY,
)
RECONCILE_ERRORS = Counter(
    "headwater_reconcile_errors_total",
    "Reconciles that raised and were queued again with backoff, by queue.",
    ["queue"],
    registry=REGISTRY,
)
RECONCILE_DURATION = Histogram(
    "headwater_reconcile_duration_seconds",
    "Time spent in one reconcile of an object, by kind.",
    ["kind"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, float("inf")),
    registry=REGISTRY,
)
LEADER = Gauge(
    "headwater_leader",
    "1 while this replica holds the leader Lease (or runs standalone), else 0.",
    registry=REGISTRY,
)
DELIVERIES = Counter(
    "headwater_webhook_deliveries_total",
    "Authenticated webhook calls acted on, by endpoint (build, registry) and by how"
    " (leader: in process; standby: written onto the object for the leader).",
    ["endpoint", "via"],
    registry=REGISTRY,
)


# --- bounded label values ---------------------------------------------------------

OTHER = "other"
WELL_KNOWN_REGISTRIES = frozenset(
    {
        "docker.io", "registry-1.docker.io", "index.docker.io", "quay.io", "ghcr.io",
        "gcr.io", "registry.k8s.io", "mcr.microsoft.com", "public.ecr.aws",
        "registry.redhat.io", "registry.access.redhat.com", "registry.gitlab.com",
        "docker.elastic.co", "nvcr.io",
    }
)  # fmt: skip
_known_registries: set[str] = set()
_HTTP_CODES = frozenset({200, 201, 202, 204, 206, 301, 302, 303, 307, 308, 400, 401, 403,
                         404, 405, 408, 409, 412, 416, 429, 500, 502, 503, 504})  # fmt: skip


def set_known_registries(hosts: Iterable[str]) -> None:
    """The registry hosts (``host[:port]``) that get a label of their own, besides the
    well-known public ones: the admin's (the configured registry, insecure registries)."""
    _known_registries.clear()
    _known_registries.update(h.lower() for h in hosts if h)


def registry_label(host: str) -> str:
    """``host`` as a metric label: itself when known, else ``other``.

    Tenants choose which hosts their ImageStreams import from; a label per host
    would let them grow the series count without limit.
    """
    name = host.lower()
    if name in _known_registries or name in WELL_KNOWN_REGISTRIES:
        return name
    return OTHER


def code_label(status: int) -> str:
    """An HTTP status as a label: common codes as such, the rest by class (``4xx``)."""
    return str(status) if status in _HTTP_CODES else f"{status // 100}xx"


def exposition() -> tuple[bytes, str]:
    """The text exposition of all families and its content type."""
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
