"""kopf start-up and clean-up: operator settings and the shared clients on ``memo``.

The clients are made once per kopf run and shared by all handlers (connection
pools, token caches); they are closed in the clean-up handler so a leader that
steps down leaves no open connections behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aiohttp
import kopf
from aiohttp import web
from lightkube import AsyncClient
from lightkube.core.exceptions import ApiError

from headwater.builds.controller import BuildController
from headwater.builds.job import settings_from_config
from headwater.config import Config, load_config
from headwater.deliveries import Deliveries, deliveries_app
from headwater.imports.runner import ImportRunner
from headwater.imports.signatures import make_verifier
from headwater.imports.tagfeed import TagFeed
from headwater.kube import is_gone
from headwater.metrics import set_known_registries
from headwater.registry.client import RegistryClient
from headwater.registry.policy import AccessPolicy
from headwater.resources import Build, BuildConfig, ImageStream
from headwater.servers import start_site
from headwater.workloads.controller import WorkloadTriggers

PREFIX = "headwater.dev"
FINALIZER = f"{PREFIX}/finalizer"
FIELD_MANAGER = "headwater"
MEMO_CONFIG = "config"
MEMO_KUBE = "kube"
MEMO_HTTP = "http"
MEMO_REGISTRY = "registry"
MEMO_IMPORTS = "imports"
MEMO_WEBHOOKS = "webhooks"
MEMO_DELIVERIES = "deliveries"
MEMO_BUILDS = "builds"
MEMO_TAGS = "tags"
MEMO_BUILD_RESYNC_TASK = "build-resync"
MEMO_WORKLOADS = "workload-triggers"
MEMO_IMPORT_RESYNC_TASK = "import-resync"
RESYNC_SECONDS = 600.0
LIST_CHUNK = 500
"""Objects per page of kopf's initial lists."""
"""How often every known ImageStream is queued again, whatever happened meanwhile."""


def configure_settings(settings: kopf.OperatorSettings, identity: str) -> None:
    """kopf settings Headwater relies on; pure apart from mutating ``settings``."""
    # kopf's bookkeeping lives in annotations under our own prefix, never in
    # status (the CRD schemas declare status fields only Headwater writes).
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=PREFIX, key="last-handled-configuration"
    )
    settings.persistence.finalizer = FINALIZER
    # Ask the API server to end each watch after 5 minutes, and give up on our
    # side a little later, so a silently dead connection is noticed.
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 10
    # List in pages: one unpaged list of 10,000 ImageStreams was a peak of several
    # hundred MB at every start (bench/scale.py).
    settings.watching.chunk_size = LIST_CHUNK
    # Kubernetes Events only for warnings and errors: kopf's per-handler
    # "succeeded" events would be one API write per change. Transitions worth
    # an Event are posted explicitly by the domain code.
    settings.posting.level = logging.WARNING
    settings.posting.reporting_component = "headwater-operator"
    settings.posting.reporting_instance = identity
    settings.networking.request_timeout = 60
    settings.networking.connect_timeout = 10


SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")


def in_cluster_server(environ: Mapping[str, str]) -> str | None:
    """The API server URL a pod should use, as client-go's InClusterConfig finds it.

    kopf's own service-account login assumes ``https://kubernetes.default.svc``,
    which needs cluster DNS; the service environment variables need nothing and
    are what every other in-cluster client (kubectl, client-go, lightkube) uses.
    """
    host = environ.get("KUBERNETES_SERVICE_HOST")
    port = environ.get("KUBERNETES_SERVICE_PORT")
    if not host or not port:
        return None
    if ":" in host:  # an IPv6 address
        host = f"[{host}]"
    return f"https://{host}:{port}"


def service_account_login(
    environ: Mapping[str, str], directory: Path = SERVICE_ACCOUNT_DIR
) -> kopf.ConnectionInfo | None:
    """Credentials of the pod's service account, or None outside a pod."""
    server = in_cluster_server(environ)
    token_file = directory / "token"
    if server is None or not token_file.exists():
        return None
    namespace_file, ca_file = directory / "namespace", directory / "ca.crt"
    return kopf.ConnectionInfo(
        server=server,
        # Read on every login: the kubelet rotates the bound token in place,
        # and kopf logs in again when the API server answers 401.
        token=token_file.read_text().strip() or None,
        ca_path=str(ca_file) if ca_file.exists() else None,
        default_namespace=namespace_file.read_text().strip() if namespace_file.exists() else None,
        priority=30,
    )


@kopf.on.login()
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    """The pod's service account when in a pod, else $KUBECONFIG / ~/.kube/config."""
    return service_account_login(os.environ) or kopf.login_with_kubeconfig(**kwargs)


async def namespaced_mode(
    settings: kopf.OperatorSettings, namespaces: tuple[str, ...], kube: AsyncClient
) -> None:
    """Watch only ``namespaces`` with no cluster-wide read (the namespaced install).

    kopf would list and watch Namespaces (to match its namespace patterns) and
    watch CRDs; the namespaced install grants neither, so scanning is off and
    the kinds are found once, through API discovery, when kopf starts after
    the start-up handlers. Until the CRDs are served that would find nothing,
    so this raises a TemporaryError (kopf retries the start-up handler) until
    each kind can be listed in the first namespace.
    """
    settings.scanning.disabled = True
    missing = []
    for kind, plural in ((ImageStream, "imagestreams"), (BuildConfig, "buildconfigs"),
                         (Build, "builds")):  # fmt: skip
        try:
            async for _ in kube.list(kind, namespace=namespaces[0], chunk_size=1):
                break
        except ApiError as exc:
            if not is_gone(exc):
                raise
            missing.append(plural)
    if missing:
        raise kopf.TemporaryError(
            f"{', '.join(missing)} not served yet: apply the CRDs (crds/) first; retrying",
            delay=5,
        )


def memo_config(memo: kopf.Memo) -> Config:
    """The operator Config the runtime put on ``memo``, else the one the environment gives."""
    config = memo.get(MEMO_CONFIG)
    if config is None:
        # Started as `kopf run -m headwater.handlers` (kopf's KopfRunner in the
        # tests) rather than `headwater operator run`: same sources, same rules.
        config = load_config(os.environ)
        memo[MEMO_CONFIG] = config
    if not isinstance(config, Config):
        raise TypeError(f"kopf memo holds {type(config).__name__} as the headwater Config")
    return config


@kopf.on.startup()
async def startup(
    settings: kopf.OperatorSettings, memo: kopf.Memo, logger: kopf.Logger, **_: Any
) -> None:
    """Apply settings and open the shared Kubernetes and registry clients."""
    configure_settings(settings, os.environ.get("HOSTNAME", "headwater"))
    config = memo_config(memo)
    if config.namespaces:
        kube = AsyncClient(field_manager=FIELD_MANAGER)
        try:
            await namespaced_mode(settings, config.namespaces, kube)
        finally:
            await kube.close()
    # Registry hosts with a metric label of their own; tenants' others are "other".
    set_known_registries(filter(None, (config.registry_host, *config.insecure_registries)))
    memo[MEMO_KUBE] = AsyncClient(field_manager=FIELD_MANAGER)
    memo[MEMO_HTTP] = aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=60, connect=10),
        headers={"User-Agent": "headwater-operator"},
    )
    # Imports, builder images, realms and redirects go only where the admin allows.
    registry = RegistryClient(policy=AccessPolicy.from_config(config))
    memo[MEMO_REGISTRY] = registry
    runner = ImportRunner(memo[MEMO_KUBE], registry, config)
    memo[MEMO_IMPORTS] = runner
    tags = TagFeed(config.registry)
    memo[MEMO_TAGS] = tags
    runner.on_status = tags.observe
    runner.scheduler.start()
    runner.urgent.start()
    # The safety net: every stream is looked at again now and then, whatever was missed.
    memo[MEMO_IMPORT_RESYNC_TASK] = asyncio.create_task(
        runner.scheduler.resync_every(RESYNC_SECONDS, lambda: list(runner.bodies))
    )
    builds = BuildController(
        memo[MEMO_KUBE], registry, config, settings_from_config(config), imports=runner, tags=tags
    )
    tags.subscribe(builds.on_tag_moved)
    memo[MEMO_BUILDS] = builds
    # Signatures of tags with a verification policy, and of images verified rollouts need.
    verifier = make_verifier(memo[MEMO_KUBE], registry, config, runner)
    workloads = WorkloadTriggers(memo[MEMO_KUBE], tags, verifier=verifier)
    tags.subscribe(workloads.on_tag_moved)
    memo[MEMO_WORKLOADS] = workloads
    memo[MEMO_BUILD_RESYNC_TASK] = asyncio.create_task(builds.resync())
    deliveries = memo.get(MEMO_DELIVERIES)
    if isinstance(deliveries, Deliveries):
        # `headwater operator run` serves the webhook port on every replica, for
        # the whole process; from now on this replica acts on calls in process.
        deliveries.attach(builds, runner)
    else:
        # Run by kopf alone (`kopf run`, the tests' KopfRunner): serve it here.
        deliveries = Deliveries(memo[MEMO_KUBE], config.namespaces)
        deliveries.attach(builds, runner)
        memo[MEMO_WEBHOOKS] = await start_site(
            deliveries_app(config, deliveries), "0.0.0.0", config.webhook_port
        )
    logger.info(
        "operator started: namespaces=%s registry=%s import interval=%ss",
        ",".join(config.namespaces) or "(all)",
        config.registry or "(none)",
        config.import_interval_seconds,
    )


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    """Close what :func:`startup` opened."""
    deliveries = memo.get(MEMO_DELIVERIES)
    if isinstance(deliveries, Deliveries):
        deliveries.detach()  # calls from now on are written for the next leader
    webhooks = memo.pop(MEMO_WEBHOOKS, None)
    if isinstance(webhooks, web.AppRunner):
        await webhooks.cleanup()
    for key in (MEMO_IMPORT_RESYNC_TASK, MEMO_BUILD_RESYNC_TASK):
        task = memo.pop(key, None)
        if isinstance(task, asyncio.Task):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    builds = memo.pop(MEMO_BUILDS, None)
    if isinstance(builds, BuildController):
        await builds.stop()
    workloads = memo.pop(MEMO_WORKLOADS, None)
    if isinstance(workloads, WorkloadTriggers):
        await workloads.stop()
    tags = memo.pop(MEMO_TAGS, None)
    if isinstance(tags, TagFeed):
        await tags.stop()
    runner = memo.pop(MEMO_IMPORTS, None)
    if isinstance(runner, ImportRunner):
        await runner.scheduler.stop()
        await runner.urgent.stop()
    registry = memo.pop(MEMO_REGISTRY, None)
    if isinstance(registry, RegistryClient):
        await registry.close()
    http = memo.pop(MEMO_HTTP, None)
    if isinstance(http, aiohttp.ClientSession):
        await http.close()
    kube = memo.pop(MEMO_KUBE, None)
    if isinstance(kube, AsyncClient):
        await kube.close()


def memo_import_runner(memo: kopf.Memo) -> ImportRunner:
    """The import runner the start-up handler made."""
    runner = memo.get(MEMO_IMPORTS)
    if not isinstance(runner, ImportRunner):
        raise RuntimeError("no import runner on kopf's memo: the start-up handler did not run")
    return runner


def memo_build_controller(memo: kopf.Memo) -> BuildController:
    """The build controller the start-up handler made."""
    controller = memo.get(MEMO_BUILDS)
    if not isinstance(controller, BuildController):
        raise RuntimeError("no build controller on kopf's memo: the start-up handler did not run")
    return controller


def memo_tag_feed(memo: kopf.Memo) -> TagFeed:
    """The feed of ImageStream tag moves the start-up handler made."""
    feed = memo.get(MEMO_TAGS)
    if not isinstance(feed, TagFeed):
        raise RuntimeError("no tag feed on kopf's memo: the start-up handler did not run")
    return feed
