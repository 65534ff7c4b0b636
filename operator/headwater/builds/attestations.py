"""Provenance for a Complete build: gather and check its facts, attach the Statement.

Called by :class:`~headwater.builds.runs.BuildRuns` when a build is Complete,
before its output tag moves. The facts: the commit (the fetch step's report),
the FROM images of every stage (the fetch step's report, made before any step
of the tenant's build ran), the digests buildah reports it pulled, and what
the registry says. What the operator checks itself is written into the
Statement (:mod:`headwater.builds.provenance`). The Statement is attached to
the image in the registry: as an OCI referrer where the registry serves the
referrers API, else in cosign's ``sha256-<hex>.att`` tag; signed with the
cluster key when its Secret exists, else unsigned.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from lightkube import AsyncClient
from lightkube.core.exceptions import ApiError
from lightkube.resources.core_v1 import Namespace

from headwater import __version__
from headwater.builds import provenance
from headwater.builds.attest import AttachError, Attester, Target
from headwater.builds.job import EXECUTOR_ANNOTATION, JobSettings
from headwater.builds.observe import Observation
from headwater.builds.outputs import Outputs
from headwater.events import post_event
from headwater.kube import API_ERRORS, Failure, classify
from headwater.registry import cosign
from headwater.registry.client import RegistryClient, RegistryError
from headwater.registry.credentials import Credentials
from headwater.registry.reference import Reference, parse_reference

logger = logging.getLogger(__name__)


def _manifest_layers(body: bytes) -> tuple[str, ...]:
    try:
        doc = json.loads(body)
        return tuple(str(layer["digest"]) for layer in doc.get("layers") or [])
    except (ValueError, TypeError, KeyError, AttributeError, RecursionError):
        return ()


def _strategy_pull_secret(spec: Mapping[str, Any]) -> str | None:
    strategy = spec.get("strategy") or {}
    for key in ("dockerStrategy", "sourceStrategy", "customStrategy"):
        name = ((strategy.get(key) or {}).get("pullSecret") or {}).get("name")
        if name:
            return str(name)
    return None


class Attestations:
    """Builds, checks and attaches the provenance of Complete builds."""

    def __init__(
        self,
        kube: AsyncClient,
        registry: RegistryClient,
        settings: JobSettings,
        outputs: Outputs,
        attester: Attester,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.kube = kube
        self.registry = registry
        self.settings = settings
        self.outputs = outputs
        self.attester = attester
        """The signer: its cluster key (one Secret, one cache) and its push target."""
        self.clock = clock or (lambda: datetime.now(UTC))
        self._cluster_id: str | None = None

    async def cluster_id(self) -> str:
        """The uid of the kube-system namespace: stable for the cluster's life."""
        if self._cluster_id is None:
            try:
                namespace = await self.kube.get(Namespace, "kube-system")
                self._cluster_id = str(namespace.metadata.uid if namespace.metadata else "")
            except ApiError:
                return "unknown"
        return self._cluster_id or "unknown"

    async def _image(
        self,
        text: str,
        image: Reference,
        digest: str | None,
        source: str,
        credentials: Credentials | None,
    ) -> tuple[provenance.ImageDependency | None, tuple[str, ...]]:
        """The dependency with its digest checked in the registry, and its layers."""
        repo = self.outputs.repository(image, credentials)
        try:
            resolved = await self.outputs.resolve(repo, digest or image.tag or "latest")
            raw = await self.registry.get_manifest(repo, resolved.digest)
        except (RegistryError, ValueError) as exc:
            if isinstance(exc, RegistryError) and exc.transient:
                raise  # retried: a registry that did not answer says nothing about the image
            if digest is None:
                return None, ()
            logger.info("provenance: %s@%s not found: %s", image.name, digest, exc)
            dependency = provenance.ImageDependency(
                text, image.name, digest, source, {provenance.CHECK_IN_REGISTRY: False}
            )
            return dependency, ()
        found = digest or resolved.digest
        checks = {provenance.CHECK_IN_REGISTRY: raw is not None}
        layers = _manifest_layers(raw.body) if raw is not None else ()
        return provenance.ImageDependency(text, image.name, found, source, checks), layers

    async def facts(
        self, build: Mapping[str, Any], seen: Observation, target: Target
    ) -> provenance.Provenance:
        """Everything the Statement needs, with the operator's own checks; ``target`` is
        where the signer writes (the built image, with the build's push login)."""
        metadata, spec = build["metadata"], build.get("spec") or {}
        namespace = str(metadata["namespace"])
        output = parse_reference(str((build.get("status") or {})["outputDockerImageReference"]))
        assert seen.digest is not None
        reported = seen.reported
        pull_secret = _strategy_pull_secret(spec)
        pulled: dict[tuple[str, str], str] = {}
        for name, pulled_digest in reported.pulled:
            named = provenance.image_reference(name)
            if named is not None:
                pulled[(named.name, named.tag or "latest")] = pulled_digest
        images: list[provenance.ImageDependency] = []
        unresolved: list[str] = []
        last_layers: tuple[str, ...] = ()
        last = provenance.image_reference(reported.last) if reported.last else None
        for text in reported.references:
            ref = provenance.image_reference(text)
            if ref is None:
                if text.lower() != "scratch":
                    unresolved.append(text)
                continue
            digest: str | None
            if ref.digest:
                digest, source = ref.digest, provenance.PINNED
            elif (ref.name, ref.tag or "latest") in pulled:
                digest, source = pulled.pop((ref.name, ref.tag or "latest")), provenance.EXECUTOR
            else:
                digest, source = None, provenance.REGISTRY
            credentials = await self.outputs.credentials(namespace, pull_secret, str(ref))
            dependency, layers = await self._image(text, ref, digest, source, credentials)
            if dependency is None:
                unresolved.append(text)
                continue
            if last is not None and ref == last:
                last_layers = layers
            images.append(dependency)
        # The last stage's base: the built image's layers must start with its layers.
        built_layers: tuple[str, ...] = ()
        try:
            raw = await self.registry.get_manifest(target.repo, seen.digest)
            built_layers = _manifest_layers(raw.body) if raw is not None else ()
        except (RegistryError, ValueError) as exc:
            if isinstance(exc, RegistryError) and exc.transient:
                raise
            # no layer list: the check is recorded as failed
        if last_layers:
            matched = built_layers[: len(last_layers)] == last_layers
            images = [
                dataclasses.replace(d, checks={**d.checks, provenance.CHECK_BASE_LAYERS: matched})
                if last is not None and provenance.image_reference(d.reference) == last
                else d
                for d in images
            ]
        executor = "custom"
        strategy = str((spec.get("strategy") or {}).get("type") or "Docker")
        if strategy != "Custom":
            annotations = metadata.get("annotations") or {}
            executor = str(annotations.get(EXECUTOR_ANNOTATION) or self.settings.executor)
        internal: dict[str, Any] = {
            "executorImage": self.settings.kaniko_image
            if executor == "kaniko"
            else self.settings.builder_image,
            "fetchImage": self.settings.builder_image,
        }
        defaults, overrides = self.settings.defaults, self.settings.overrides
        if defaults.env:
            internal["buildDefaultsEnv"] = sorted({name for name, _ in defaults.env})
        if overrides.env:
            internal["buildOverridesEnv"] = sorted({name for name, _ in overrides.env})
        labels = {**defaults.labels, **overrides.labels}
        if labels:
            internal["clusterImageLabels"] = dict(sorted(labels.items()))
        return provenance.Provenance(
            image=output.name,
            digest=seen.digest,
            executor=executor,
            headwater_version=__version__,
            cluster_id=await self.cluster_id(),
            started=seen.start,
            finished=seen.completion,
            images=tuple(images),
            unresolved=tuple(unresolved),
            capped=reported.capped,
            internal=internal,
        )

    async def attach(self, build: Mapping[str, Any], seen: Observation) -> Observation:
        """``seen`` with ``provenance`` (where the Statement now lives, or why it is not).

        A failure that may pass (no answer, 429, 5xx from the registry; an API error
        of that kind) raises :class:`AttachError`: the Build stays Running and its
        work queue retries with backoff, so the output tag never moves before the
        provenance is attached. A refusal (401, 403, 400 and the like) will not
        pass by retrying: it is recorded in ``status.provenance.error`` and in a
        Warning Event, and the build completes without provenance.
        """
        if not (build.get("status") or {}).get("outputDockerImageReference") or not seen.digest:
            return seen
        try:
            return dataclasses.replace(seen, provenance=await self._attach(build, seen))
        except RegistryError as exc:
            if exc.transient:
                raise AttachError(
                    "ProvenanceFailed", f"attaching the provenance failed: {exc}"
                ) from None
            why = f"the provenance could not be attached: {exc}"
        except API_ERRORS as exc:  # the Kubernetes API (a push secret, the key's Secret)
            said = exc.status.message if isinstance(exc, ApiError) else type(exc).__name__
            if classify(exc) is Failure.TRANSIENT:
                raise AttachError(
                    "ProvenanceFailed", f"attaching the provenance failed: {said}"
                ) from None
            why = f"the provenance could not be attached: {said}"
        except ValueError as exc:
            why = f"the provenance could not be attached: {exc}"
        why = why[:1024]
        logger.warning("provenance of %s not attached: %s", seen.digest, why)
        await post_event(self.kube, build, "Warning", "ProvenanceNotAttached", why, self.clock())
        return dataclasses.replace(seen, provenance={"error": why})

    async def _attach(self, build: Mapping[str, Any], seen: Observation) -> dict[str, Any]:
        assert seen.digest is not None
        target = await self.attester.target(build, seen.digest)
        facts = await self.facts(build, seen, target)
        with_revision = dict(build)
        if seen.revision:
            with_revision["status"] = {
                **(build.get("status") or {}),
                "revision": dict(seen.revision),
            }
        statement = provenance.statement(with_revision, facts)
        payload = json.dumps(statement, separators=(",", ":"), sort_keys=True).encode()
        key, _ = await self.attester.signing_key()
        referrers = await self.registry.has_referrers_api(target.repo, seen.digest)
        attach = cosign.attach_attestation_referrer if referrers else cosign.attach_attestation
        attached = await attach(
            self.registry, target.repo, seen.digest, payload, provenance.PREDICATE_TYPE, key
        )
        record: dict[str, Any] = {
            "reference": attached.reference,
            "scheme": "referrers" if referrers else "tag",
            "mediaType": cosign.DSSE_MEDIA_TYPE,
            "predicateType": provenance.PREDICATE_TYPE,
            "signed": key is not None,
            "dependencies": len(statement["predicate"]["buildDefinition"]["resolvedDependencies"]),
            "bytes": len(payload),
        }
        if key is not None:
            record["keyId"] = attached.key_id
        if facts.capped:
            record["capped"] = True
        return record
