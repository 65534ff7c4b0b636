"""Running the operator process: endpoints, leader election, kopf.

The process lives through these states:

1. Check that Kubernetes credentials exist (one clear error otherwise).
2. Serve ``/healthz`` + ``/readyz``, ``/metrics`` and the webhook port (build
   webhooks, registry notifications) for the whole lifetime, on every replica:
   a standby writes what a call asks for onto the object for the leader
   (:mod:`headwater.deliveries`). Admission too (:mod:`headwater.admission_server`).
3. Standalone (``--standalone`` or leader election off): run kopf at once.
   Otherwise stand by until this replica holds the Lease, run kopf while
   renewing it, and on loss stop kopf and exit non-zero so the pod restarts as
   a standby (see :mod:`headwater.leader`). A leader that was stalled past
   its lease (frozen, its event loop blocked) exits at once, without running
   what queued up meanwhile: :func:`exit_when_stalled`.

kopf itself always runs in its own "standalone" mode: the Lease replaces its
peering, so no KopfPeering CRDs are needed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import kopf
from kopf._core.engines.peering import Identity
from lightkube import AsyncClient
from lightkube.config.kubeconfig import KubeConfig
from lightkube.core.exceptions import ConfigError as KubeConfigError

import headwater.handlers  # noqa: F401  (registers the handlers with kopf)
from headwater import admission_server
from headwater.config import Config
from headwater.deliveries import Deliveries, deliveries_app
from headwater.handlers.lifecycle import FIELD_MANAGER, MEMO_CONFIG, MEMO_DELIVERIES
from headwater.leader import LeaderElector, LeadershipLost
from headwater.metrics import LEADER
from headwater.servers import Health, health_app, metrics_app, start_site

logger = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_LEADERSHIP_LOST = 3


class StartupError(RuntimeError):
    """The operator cannot start; the message is one line that says what to do."""


@dataclass(frozen=True)
class RunOptions:
    """How ``headwater operator run`` was asked to run."""

    standalone: bool = False
    """Skip leader election and act at once (one replica, or local development)."""
    bind_host: str = "0.0.0.0"
    """Address the probe and metrics endpoints listen on."""


def kube_config() -> KubeConfig:
    """The in-cluster service account, $KUBECONFIG or ~/.kube/config, as kopf will find them."""
    try:
        return KubeConfig.from_env()
    except KubeConfigError as exc:
        raise StartupError(
            f"no Kubernetes credentials ({exc}); set KUBECONFIG or run inside a pod"
        ) from exc


def namespaces_for(config: Config) -> tuple[bool, Sequence[str]]:
    """kopf's (clusterwide, namespaces) arguments for the configured scope."""
    if not config.namespaces:
        return True, ()
    return False, config.namespaces


def identity() -> str:
    """This replica's Lease holder identity: the pod name plus a per-process suffix."""
    # The suffix keeps a restarted container (same pod name) from believing it
    # still holds the Lease its previous incarnation took.
    return f"{os.environ.get('HOSTNAME', 'headwater')}_{uuid.uuid4().hex[:8]}"


async def run_kopf(
    config: Config,
    stop_flag: asyncio.Event,
    ready_flag: asyncio.Event,
    deliveries: Deliveries | None = None,
) -> None:
    """Run kopf with the registered handlers until ``stop_flag`` or a signal stops it."""
    clusterwide, namespaces = namespaces_for(config)
    await kopf.operator(
        # kopf would derive an identity from the user name, which fails for a
        # uid without a passwd entry (the image runs as 65532).
        identity=Identity(identity()),
        standalone=True,
        clusterwide=clusterwide,
        namespaces=namespaces,
        stop_flag=stop_flag,
        ready_flag=ready_flag,
        memo=kopf.Memo(
            {MEMO_CONFIG: config}
            if deliveries is None
            else {MEMO_CONFIG: config, MEMO_DELIVERIES: deliveries}
        ),
    )


def exit_stalled() -> None:
    """End the process now: it led, and stalled long enough that a standby may lead."""
    logger.error("lease not renewed in time (the process was stalled); exiting at once")
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(EXIT_LEADERSHIP_LOST)


def exit_when_stalled(
    elector: LeaderElector, exit_now: Callable[[], None] = exit_stalled
) -> Callable[[], None]:
    """On SIGCONT, end the process at once if it led and its lease ran out while it was
    stopped; returns the function that restores the previous handler.

    A Python-level signal handler runs in the main thread before any further
    bytecode, so before the event loop runs the watch events and timers that
    queued up while the process was stopped (an asyncio signal handler would
    run after them).
    """

    def on_continue(_signum: int, _frame: object) -> None:
        if elector.stalled():
            exit_now()

    previous = signal.signal(signal.SIGCONT, on_continue)

    def restore() -> None:
        signal.signal(signal.SIGCONT, previous)

    return restore


async def _relay(source: asyncio.Event, target: asyncio.Event) -> None:
    await source.wait()
    target.set()


async def run(config: Config, options: RunOptions) -> int:
    """The operator process; returns its exit code."""
    kube = kube_config()
    health = Health()
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        # kopf installs its own handlers while it runs; these cover standby.
        loop.add_signal_handler(sig, stopping.set)

    runners = []
    webhook_client = AsyncClient(config=kube, field_manager=FIELD_MANAGER)
    deliveries = Deliveries(webhook_client, config.namespaces)
    try:
        runners.append(await start_site(health_app(health), options.bind_host, config.health_port))
        runners.append(await start_site(metrics_app(), options.bind_host, config.metrics_port))
        runners.append(
            await start_site(
                deliveries_app(config, deliveries), options.bind_host, config.webhook_port
            )
        )
    except OSError as exc:
        for runner in runners:
            await runner.cleanup()
        await deliveries.kube.close()
        raise StartupError(f"cannot listen for probes/metrics/webhooks: {exc}") from exc
    # Admission: every replica, leader or standby, for the whole process life.
    admission = asyncio.create_task(admission_server.serve(config, kube, health.admission_ready))

    async def work(stop_flag: asyncio.Event) -> None:
        relay = asyncio.create_task(_relay(stopping, stop_flag))
        try:
            await run_kopf(config, stop_flag, health.kopf_ready, deliveries)
        finally:
            relay.cancel()

    def on_leading(leading: bool) -> None:
        health.leading = leading
        LEADER.set(1 if leading else 0)

    try:
        if options.standalone or not config.leader_election.enabled:
            on_leading(True)
            await work(asyncio.Event())
            return EXIT_OK
        client = AsyncClient(config=kube, field_manager="headwater-leader-election")
        try:
            elector = LeaderElector(
                client, config.leader_election, identity(), on_change=on_leading
            )
            if not await elector.wait_for_leadership(stopping):
                return EXIT_OK
            restore = exit_when_stalled(elector)
            try:
                await elector.lead(work, on_stall=exit_stalled)
            except LeadershipLost as exc:
                health.failure = str(exc)
                logger.error("%s; exiting so the pod restarts as a standby", exc)
                return EXIT_LEADERSHIP_LOST
            finally:
                restore()
            return EXIT_OK
        finally:
            await client.close()
    finally:
        admission.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await admission
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(sig)
        for runner in runners:
            await runner.cleanup()
        await deliveries.kube.close()
