"""A build's images and secrets: its output target, its base and builder images, the
secrets it pushes and pulls with, and what it pushed.

Before a build starts, :class:`Outputs` names its output (an ImageStreamTag becomes
``<registry>/<namespace>/<stream>:<tag>``), its base image and the secrets it needs;
something missing holds the build New (:class:`Waiting`). When it ends, the
registry must show the manifest the build reports, and the output
ImageStreamTag moves to it at once (:meth:`Outputs.record`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from lightkube import AsyncClient
from lightkube.core.exceptions import ApiError
from lightkube.resources.core_v1 import Secret, ServiceAccount
from lightkube.types import PatchType

from headwater.builds import strategies
from headwater.builds.buildconfigs import may
from headwater.builds.job import JobSettings, RenderError
from headwater.builds.model import COMPLETE, FAILED
from headwater.builds.observe import Observation
from headwater.config import Config
from headwater.imports.model import StreamRef, newest_item, split_stream_tag
from headwater.imports.runner import ImportRunner
from headwater.kube import get_or_none, is_gone
from headwater.registry.client import (
    ImageConfig,
    RegistryClient,
    RegistryError,
    Repository,
    Resolved,
)
from headwater.registry.credentials import (
    PULL_SECRET_TYPES,
    Credentials,
    CredentialsError,
    credentials_for,
    parse_docker_config_secret,
)
from headwater.registry.reference import Reference, ReferenceError, parse_reference
from headwater.resources import Build, ImageStream

OUTPUT_BEFORE_ANNOTATION = "build.headwater.dev/output-digest-before"
"""On Custom builds: what the output tag pointed at when the build started."""


class Waiting(Exception):
    """The build cannot start yet; it stays New with this reason until the world changes."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class Outputs:
    """Looks up a build's images and secrets, and checks and records what it pushed."""

    def __init__(
        self,
        kube: AsyncClient,
        registry: RegistryClient,
        config: Config,
        settings: JobSettings,
        imports: ImportRunner | None,
    ) -> None:
        self.kube = kube
        self.registry = registry
        self.config = config
        self.settings = settings
        self.imports = imports
        """Where pushed images are recorded on their ImageStreamTag (None: left to imports)."""

    async def output_image(self, namespace: str, spec: Mapping[str, Any]) -> str | None:
        """The pull spec the build pushes to (None: no output); RenderError or Waiting."""
        to = (spec.get("output") or {}).get("to") or {}
        if not to:
            return None
        kind, name = str(to.get("kind") or "ImageStreamTag"), str(to.get("name") or "")
        if kind == "DockerImage":
            try:
                parse_reference(name)
            except ReferenceError as exc:
                raise RenderError("InvalidOutputReference", f"output {name!r}: {exc}") from None
            return name
        if kind != "ImageStreamTag":
            raise RenderError("InvalidOutputReference", f"output kind {kind} is not supported")
        if not self.config.registry:
            raise RenderError(
                "InvalidOutputReference",
                "output to an ImageStreamTag needs the operator's registry setting",
            )
        stream, tag = split_stream_tag(name)
        if not stream or not tag:
            raise RenderError("InvalidOutputReference", f"output {name!r} is not <stream>:<tag>")
        stream_namespace = str(to.get("namespace") or namespace)
        if await get_or_none(self.kube, ImageStream, stream, stream_namespace) is None:
            raise Waiting(
                "InvalidOutputReference",
                f"output image stream {stream_namespace}/{stream} does not exist",
            )
        return f"{self.config.registry}/{stream_namespace}/{stream}:{tag}"

    async def image_of(self, namespace: str, ref: object, what: str) -> str | None:
        """A DockerImage/ImageStreamTag/ImageStreamImage reference as a pull spec."""
        if not isinstance(ref, Mapping) or not ref.get("name"):
            return None
        kind, name = str(ref.get("kind") or "DockerImage"), str(ref["name"])
        if kind == "DockerImage":
            return name
        source_ns = str(ref.get("namespace") or namespace)
        missing = f"{what}: image stream {source_ns}/{name} not found"
        if kind == "ImageStreamImage":
            stream, _, digest = name.partition("@")
            body = await get_or_none(self.kube, ImageStream, stream, source_ns)
            if body is None:
                raise Waiting("InvalidImageReference", missing)
            for entry in (body.get("status") or {}).get("tags") or []:
                for item in entry.get("items") or []:
                    if item.get("image") == digest and item.get("dockerImageReference"):
                        return str(item["dockerImageReference"])
            raise Waiting("InvalidImageReference", f"{what}: {source_ns}/{name} not found")
        stream, tag = split_stream_tag(name)
        body = await get_or_none(self.kube, ImageStream, stream, source_ns)
        if body is None:
            raise Waiting("InvalidImageReference", missing)
        item = newest_item(body.get("status"), tag)
        if not item or not item.get("dockerImageReference"):
            raise Waiting("InvalidImageReference", f"{what}: {source_ns}/{name} has no image yet")
        return str(item["dockerImageReference"])

    async def current_output(self, namespace: str, spec: Mapping[str, Any]) -> str | None:
        """The image the output tag points at now (the previous build, for incremental S2I)."""
        to = (spec.get("output") or {}).get("to") or {}
        if to.get("kind") != "ImageStreamTag":
            return None
        try:
            return await self.image_of(namespace, to, "output")
        except (Waiting, RenderError):
            return None

    async def need_secret(self, namespace: str, name: str, reason: str) -> dict[str, Any]:
        secret = await get_or_none(self.kube, Secret, name, namespace)
        if secret is None:
            raise Waiting(reason, f"secret {namespace}/{name} does not exist")
        return secret

    async def push_secret(
        self, namespace: str, spec: Mapping[str, Any], output: str | None
    ) -> str | None:
        """output.pushSecret, else a docker-config secret of the build's service account
        that holds credentials for the output registry."""
        if output is None:
            return None
        named = ((spec.get("output") or {}).get("pushSecret") or {}).get("name")
        if named:
            await self.need_secret(namespace, str(named), "MissingPushSecret")
            return str(named)
        account = str(spec.get("serviceAccount") or "default")
        try:
            sa = await self.kube.get(ServiceAccount, account, namespace=namespace)
        except ApiError as exc:
            if is_gone(exc):
                raise Waiting(
                    "CannotRetrieveServiceAccount",
                    f"service account {namespace}/{account} does not exist",
                ) from None
            raise
        names = [s.name for s in sa.secrets or [] if s.name]
        names += [s.name for s in sa.imagePullSecrets or [] if s.name and s.name not in names]
        image = parse_reference(output)
        for name in names:
            try:
                secret = await self.kube.get(Secret, name, namespace=namespace)
            except ApiError:
                continue
            if secret.type not in PULL_SECRET_TYPES:
                continue
            try:
                keyring = parse_docker_config_secret(secret.type, dict(secret.data or {}))
            except CredentialsError:
                continue
            if credentials_for(image, [keyring]):
                return name
        return None

    async def credentials(
        self, namespace: str, secret_name: str | None, image_ref: str
    ) -> Credentials | None:
        if not secret_name:
            return None
        try:
            secret = await self.kube.get(Secret, secret_name, namespace=namespace)
            keyring = parse_docker_config_secret(str(secret.type), dict(secret.data or {}))
        except (ApiError, CredentialsError):
            return None
        found = credentials_for(parse_reference(image_ref), [keyring])
        return found[0] if found else None

    def repository(self, image: Reference, credentials: Credentials | None) -> Repository:
        """``image``'s repository as builds reach it: plain HTTP where the registry is
        one of ``insecureRegistries``."""
        return Repository(
            image.api_host,
            image.path,
            credentials=credentials,
            insecure=image.domain in self.settings.insecure_registries,
        )

    async def output_repository(self, build: Mapping[str, Any], output: str) -> Repository:
        """The build's output repository with the login the build pushes with
        (output.pushSecret or its service account's), anonymous when it has none."""
        namespace = str(build["metadata"]["namespace"])
        try:
            push_secret = await self.push_secret(namespace, build.get("spec") or {}, output)
        except Waiting:
            push_secret = None
        credentials = await self.credentials(namespace, push_secret, output)
        return self.repository(parse_reference(output), credentials)

    async def image_config(
        self, namespace: str, image_ref: str, pull_secret: object
    ) -> ImageConfig:
        """The builder image's config (labels, user) read from its registry."""
        try:
            image = parse_reference(image_ref)
        except ReferenceError as exc:
            raise RenderError("InvalidImageReference", f"builder image: {exc}") from None
        credentials = await self.credentials(
            namespace, str(pull_secret) if pull_secret else None, image_ref
        )
        try:
            resolved = await self._resolve_image(image, image.digest, credentials)
        except RegistryError as exc:
            raise Waiting("PullBuilderImageFailed", f"builder image {image_ref}: {exc}") from None
        if resolved.image is None or resolved.image.config is None:
            raise RenderError(
                "PullBuilderImageFailed", f"builder image {image_ref} has no image config"
            )
        return resolved.image.config

    async def _resolve_image(
        self,
        image: Reference,
        reference: str | None,
        credentials: Credentials | None,
        *,
        preserve_original: bool = False,
    ) -> Resolved:
        """``image`` at ``reference`` (a digest), else at its tag, else ``latest``."""
        return await self.resolve(
            self.repository(image, credentials),
            reference or image.tag or "latest",
            preserve_original=preserve_original,
        )

    async def resolve(
        self, repo: Repository, reference: str, *, preserve_original: bool = False
    ) -> Resolved:
        """``reference`` (a tag or digest) in ``repo``, as its registry has it."""
        return await self.registry.resolve(
            repo.registry,
            repo.repository,
            reference,
            credentials=repo.credentials,
            insecure=repo.insecure,
            preserve_original=preserve_original,
        )

    async def _resolve_output(
        self, build: Mapping[str, Any], output: str, reference: str | None = None
    ) -> Resolved:
        """The build's output image (at ``reference``, else its tag) as the registry has it,
        read with the secret the build pushes with: output.pushSecret or the service account's."""
        repo = await self.output_repository(build, output)
        tag = parse_reference(output).tag
        return await self.resolve(repo, reference or tag or "latest", preserve_original=True)

    async def remember_before(self, build: Mapping[str, Any], output: str) -> None:
        """Note the output tag's digest before a Custom build runs ("" when it has none)."""
        annotations = build["metadata"].get("annotations") or {}
        if OUTPUT_BEFORE_ANNOTATION in annotations:
            return
        namespace = str(build["metadata"]["namespace"])
        try:
            digest = (await self._resolve_output(build, output)).digest
        except RegistryError:
            digest = ""
        await self.kube.patch(
            Build,
            str(build["metadata"]["name"]),
            {"metadata": {"annotations": {OUTPUT_BEFORE_ANNOTATION: digest}}},
            namespace=namespace,
            patch_type=PatchType.MERGE,
        )
        annotations[OUTPUT_BEFORE_ANNOTATION] = digest
        build["metadata"]["annotations"] = annotations

    async def verify(self, build: Mapping[str, Any], seen: Observation) -> Observation:
        """Complete only if the registry has the manifest the build says it pushed."""
        status = build.get("status") or {}
        output = status.get("outputDockerImageReference")
        if not output:
            return seen
        try:
            resolved = await self._resolve_output(build, str(output), seen.digest)
        except RegistryError as exc:
            return Observation(
                FAILED,
                "PushImageToRegistryFailed",
                f"the pushed image could not be verified in the registry: {exc}",
                start=seen.start,
                completion=seen.completion,
                revision=seen.revision,
                stages=seen.stages,
            )
        before = (build["metadata"].get("annotations") or {}).get(OUTPUT_BEFORE_ANNOTATION)
        if not seen.digest and before is not None and resolved.digest == before:
            # A Custom builder reports nothing: the tag must have moved.
            return Observation(
                FAILED,
                "PushImageToRegistryFailed",
                f"the builder exited 0 but {output} still points at the image it had before",
                start=seen.start,
                completion=seen.completion,
                revision=seen.revision,
                stages=seen.stages,
            )
        return dataclasses.replace(seen, phase=COMPLETE, digest=resolved.digest)

    async def record(self, build: Mapping[str, Any], seen: Observation) -> Observation | None:
        """Move the output ImageStreamTag to the pushed digest now, not at the next import."""
        spec = build.get("spec") or {}
        to = (spec.get("output") or {}).get("to") or {}
        if to.get("kind") != "ImageStreamTag" or not seen.digest or self.imports is None:
            return None
        namespace = str(build["metadata"]["namespace"])
        stream, tag = split_stream_tag(str(to["name"]))
        stream_namespace = str(to.get("namespace") or namespace)
        if stream_namespace != namespace:
            # Checked again: a grant revoked while the build ran stops the tag moving.
            account = strategies.build_service_account(spec)
            needed = strategies.ImageAccess(stream_namespace, "update", "output.to")
            if not await may(self.kube, namespace, account, needed):
                return Observation(
                    FAILED,
                    "Forbidden",
                    strategies.access_refusal(namespace, account, needed),
                    start=seen.start,
                    completion=seen.completion,
                    revision=seen.revision,
                    stages=seen.stages,
                )
        repository = f"{self.config.registry}/{stream_namespace}/{stream}"
        recorded = await self.imports.record_image(
            StreamRef(stream_namespace, stream),
            tag,
            seen.digest,
            f"{repository}@{seen.digest}",
            f"pushed by build {namespace}/{build['metadata']['name']}",
        )
        if recorded:
            return None
        return Observation(
            FAILED,
            "InvalidOutputReference",
            f"the image was pushed but image stream {stream_namespace}/{stream} is gone",
            start=seen.start,
            completion=seen.completion,
            digest=seen.digest,
            revision=seen.revision,
            stages=seen.stages,
        )
