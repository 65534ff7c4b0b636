#!/usr/bin/env python3
"""Generate Headwater's CustomResourceDefinitions into ``crds/``.

The three CRDs share many shapes (object references, env vars, conditions,
the BuildConfig/Build common spec), so they are written once here as Python
data and dumped as YAML. ``tests/unit/test_crd_schemas.py`` checks that the
committed YAML equals this script's output: edit this file, then run
``python hack/gen_crds.py`` (or ``make manifests``).

Field names and meanings follow OpenShift's ``image.openshift.io/v1`` and
``build.openshift.io/v1``; ``docs/migration.md`` lists where Headwater differs.

Cost budget: the API server estimates the worst-case cost of every CEL rule
from the schema, so every string a rule (or the Build's ``self == oldSelf``)
can reach has a ``maxLength`` and every array a ``maxItems``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

from headwater.imports.model import STREAM_NAME_PATTERN
from headwater.imports.verification import KEY_NAME_PATTERN as KEY_NAME
from headwater.registry.reference import TAG_PATTERN as TAG

Schema = dict[str, Any]

REPO = Path(__file__).resolve().parents[1]
CRD_DIR = REPO / "crds"
#: The same CRDs as package data, so an installed ``headwater convert`` checks against them.
PACKAGE_CRD_DIR = REPO / "operator" / "headwater" / "crds"

# --- grammars -------------------------------------------------------------------------------

#: A Docker tag (distribution/reference), as the operator parses it: TAG, imported.
TAG_PATTERN = f"^{TAG}$"
KEY_NAME_PATTERN = f"^{KEY_NAME}$"

_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN_NAME = _DOMAIN_COMPONENT + r"(?:\." + _DOMAIN_COMPONENT + ")*"
_IPV6 = r"\[[a-fA-F0-9:]+\]"
_DOMAIN = "(?:" + _DOMAIN_NAME + "|" + _IPV6 + ")(?::[0-9]+)?"
_NAME_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*"
_REPOSITORY = "(?:" + _DOMAIN + "/)?" + _NAME_COMPONENT + "(?:/" + _NAME_COMPONENT + ")*"
_DIGEST = r"sha256:[a-f0-9]{64}"
#: distribution's reference grammar: ``[host[:port]/]name[/name...][:tag][@sha256:<64 hex>]``.
DOCKER_IMAGE_PATTERN = "^" + _REPOSITORY + "(?::" + TAG + ")?(?:@" + _DIGEST + ")?$"

#: An ImageStream name (a DNS-1123 subdomain, like every object name).
_STREAM = STREAM_NAME_PATTERN
IMAGE_STREAM_TAG_PATTERN = "^" + _STREAM + ":" + TAG + "$"
IMAGE_STREAM_IMAGE_PATTERN = "^" + _STREAM + "@" + _DIGEST + "$"
DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
#: Kubernetes' classic environment variable name grammar (what OpenShift validates).
ENV_NAME_PATTERN = r"^[-._a-zA-Z][-._a-zA-Z0-9]*$"
QUANTITY_PATTERN = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|"
    r"([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)

# Length limits (see the cost-budget note above).
NAME_MAX = 253
REF_MAX = 512
VALUE_MAX = 4096
TEXT_MAX = 32768
DOCKERFILE_MAX = 65536

# --- small builders -------------------------------------------------------------------------


def string(description: str, max_length: int = NAME_MAX, **extra: Any) -> Schema:
    return {"type": "string", "description": description, "maxLength": max_length, **extra}


def boolean(description: str, **extra: Any) -> Schema:
    return {"type": "boolean", "description": description, **extra}


def integer(description: str, fmt: str = "int64", **extra: Any) -> Schema:
    return {"type": "integer", "format": fmt, "description": description, **extra}


def timestamp(description: str) -> Schema:
    return {"type": "string", "format": "date-time", "description": description}


def obj(
    description: str,
    properties: dict[str, Schema],
    required: list[str] | None = None,
    rules: list[Schema] | None = None,
    **extra: Any,
) -> Schema:
    schema: Schema = {"type": "object", "description": description}
    if required:
        schema["required"] = required
    schema["properties"] = properties
    if rules:
        schema["x-kubernetes-validations"] = rules
    schema.update(extra)
    return schema


def array(description: str, items: Schema, max_items: int, **extra: Any) -> Schema:
    return {
        "type": "array",
        "description": description,
        "maxItems": max_items,
        "items": items,
        **extra,
    }


def string_map(description: str) -> Schema:
    return {
        "type": "object",
        "description": description,
        "maxProperties": 128,
        "additionalProperties": {"type": "string", "maxLength": VALUE_MAX},
    }


def rule(expression: str, message: str, field_path: str | None = None) -> Schema:
    r: Schema = {"rule": expression, "message": message}
    if field_path:
        r["fieldPath"] = field_path
    return r


def quantity() -> Schema:
    return {
        "anyOf": [{"type": "integer"}, {"type": "string"}],
        "pattern": QUANTITY_PATTERN,
        "x-kubernetes-int-or-string": True,
    }


def local_ref(description: str) -> Schema:
    return obj(description, {"name": string("Name of the object.")}, required=["name"])


# --- shared shapes --------------------------------------------------------------------------

_REF_RULES = {
    "DockerImage": rule(
        "self.kind != 'DockerImage' || self.name.matches(r'" + DOCKER_IMAGE_PATTERN + "')",
        "a DockerImage name must be an image reference: "
        "[host[:port]/]repository[:tag][@sha256:<64 hex digits>]",
        ".name",
    ),
    "ImageStreamTag": rule(
        "self.kind != 'ImageStreamTag' || self.name.matches(r'" + IMAGE_STREAM_TAG_PATTERN + "')",
        "an ImageStreamTag name must be <imagestream>:<tag>",
        ".name",
    ),
    "ImageStreamImage": rule(
        "self.kind != 'ImageStreamImage' || self.name.matches(r'"
        + IMAGE_STREAM_IMAGE_PATTERN
        + "')",
        "an ImageStreamImage name must be <imagestream>@sha256:<64 hex digits>",
        ".name",
    ),
}


def image_ref(description: str, kinds: list[str]) -> Schema:
    """OpenShift's corev1.ObjectReference as used by ``from``/``to``: kind, name, namespace.

    A CEL rule per allowed kind checks the name's grammar.
    """
    return obj(
        description,
        {
            "kind": string("One of " + ", ".join(kinds) + ".", enum=kinds),
            "name": string(
                "DockerImage: an image reference; ImageStreamTag: <stream>:<tag>; "
                "ImageStreamImage: <stream>@<digest>.",
                REF_MAX,
                minLength=1,
            ),
            "namespace": string(
                "Namespace of an ImageStreamTag/ImageStreamImage; default: the object's own.",
                63,
                pattern=DNS_LABEL_PATTERN,
            ),
            "apiVersion": string("Ignored; accepted for OpenShift compatibility."),
            "uid": string("Ignored; accepted for OpenShift compatibility."),
            "resourceVersion": string("Ignored; accepted for OpenShift compatibility."),
            "fieldPath": string("Ignored; accepted for OpenShift compatibility.", REF_MAX),
        },
        required=["kind", "name"],
        rules=[_REF_RULES[k] for k in kinds],
    )


def condition() -> Schema:
    """metav1.Condition."""
    return obj(
        "A condition in the Kubernetes API conventions' shape (metav1.Condition).",
        {
            "type": string("Condition type, e.g. Ready or Succeeded.", 316),
            "status": string("True, False or Unknown.", 16, enum=["True", "False", "Unknown"]),
            "reason": string("CamelCase reason for the last transition.", 1024),
            "message": string("Human-readable detail.", TEXT_MAX),
            "lastTransitionTime": timestamp("When status last changed."),
            "observedGeneration": integer(
                "metadata.generation the condition was computed from.", minimum=0
            ),
        },
        required=["type", "status", "lastTransitionTime", "reason"],
    )


def conditions(description: str) -> Schema:
    return array(
        description,
        condition(),
        64,
        **{"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )


def observed_generation() -> Schema:
    return integer("The metadata.generation the operator last acted on.", minimum=0)


def key_selector(description: str) -> Schema:
    return obj(
        description,
        {
            "name": string("Name of the ConfigMap or Secret."),
            "key": string("The key to select."),
            "optional": boolean("Whether the object or its key must exist."),
        },
        required=["key"],
    )


def env_var(description: str = "An environment variable (core/v1 EnvVar).") -> Schema:
    return obj(
        description,
        {
            "name": string("Variable name.", pattern=ENV_NAME_PATTERN, minLength=1),
            "value": string("Literal value.", VALUE_MAX),
            "valueFrom": obj(
                "Source for the value; exactly one of its fields.",
                {
                    "configMapKeyRef": key_selector("A key of a ConfigMap."),
                    "secretKeyRef": key_selector("A key of a Secret."),
                    "fieldRef": obj(
                        "A field of the build pod.",
                        {
                            "apiVersion": string("Schema version of fieldPath."),
                            "fieldPath": string("Path of the field, e.g. metadata.name."),
                        },
                        required=["fieldPath"],
                    ),
                    "resourceFieldRef": obj(
                        "A resource of a container of the build pod.",
                        {
                            "containerName": string("Container name."),
                            "resource": string("Resource, e.g. limits.cpu."),
                            "divisor": quantity(),
                        },
                        required=["resource"],
                    ),
                },
                rules=[
                    rule(
                        "[has(self.configMapKeyRef), has(self.secretKeyRef), has(self.fieldRef),"
                        " has(self.resourceFieldRef)].filter(x, x).size() == 1",
                        "valueFrom needs exactly one of configMapKeyRef, secretKeyRef, fieldRef,"
                        " resourceFieldRef",
                    )
                ],
            ),
        },
        required=["name"],
        rules=[
            rule(
                "!has(self.valueFrom) || !has(self.value) || self.value == ''",
                "value and valueFrom are mutually exclusive",
            )
        ],
    )


def env_list(description: str) -> Schema:
    return array(description, env_var(), 256)


def resources() -> Schema:
    return obj(
        "Compute resources for the build pod (core/v1 ResourceRequirements).",
        {
            "limits": {
                "type": "object",
                "description": "Maximum resources, e.g. cpu: 2, memory: 4Gi.",
                "maxProperties": 32,
                "additionalProperties": quantity(),
            },
            "requests": {
                "type": "object",
                "description": "Minimum resources the scheduler reserves.",
                "maxProperties": 32,
                "additionalProperties": quantity(),
            },
        },
    )


def person() -> Schema:
    return obj(
        "A Git identity.",
        {"name": string("Name.", 1024), "email": string("Email address.", 1024)},
    )


def source_revision(description: str) -> Schema:
    return obj(
        description,
        {
            "type": string(
                "Kind of revision; Git.",
                32,
                enum=["Git", "Dockerfile", "Binary", "Image", "None"],
            ),
            "git": obj(
                "The Git commit built.",
                {
                    "commit": string("Commit SHA.", 128),
                    "author": person(),
                    "committer": person(),
                    "message": string("Commit message (first lines).", VALUE_MAX),
                },
            ),
        },
    )


def key_to_path_items() -> Schema:
    return array(
        "Keys to project, and where.",
        obj(
            "One key to a file.",
            {
                "key": string("The key."),
                "path": string("Relative file path.", 1024),
                "mode": integer("File mode bits.", "int32", minimum=0, maximum=511),
            },
            required=["key", "path"],
        ),
        64,
    )


def build_volumes() -> Schema:
    return array(
        "Volumes mounted into the build container (not implemented yet).",
        obj(
            "A build volume.",
            {
                "name": string("Unique name of the volume.", 63, pattern=DNS_LABEL_PATTERN),
                "source": obj(
                    "Where the volume's data comes from.",
                    {
                        "type": string(
                            "Secret, ConfigMap or CSI.", 16, enum=["Secret", "ConfigMap", "CSI"]
                        ),
                        "secret": obj(
                            "A Secret volume.",
                            {
                                "secretName": string("Secret name."),
                                "items": key_to_path_items(),
                                "defaultMode": integer("Mode bits.", "int32", minimum=0),
                                "optional": boolean("Whether the Secret must exist."),
                            },
                        ),
                        "configMap": obj(
                            "A ConfigMap volume.",
                            {
                                "name": string("ConfigMap name."),
                                "items": key_to_path_items(),
                                "defaultMode": integer("Mode bits.", "int32", minimum=0),
                                "optional": boolean("Whether the ConfigMap must exist."),
                            },
                        ),
                        "csi": obj(
                            "A CSI ephemeral volume.",
                            {
                                "driver": string("CSI driver name."),
                                "readOnly": boolean("Mount read-only."),
                                "fsType": string("Filesystem type.", 63),
                                "volumeAttributes": string_map("Driver-specific attributes."),
                                "nodePublishSecretRef": local_ref("Secret for the driver."),
                            },
                            required=["driver"],
                        ),
                    },
                    required=["type"],
                ),
                "mounts": array(
                    "Where to mount it in the build container.",
                    obj(
                        "A mount point.",
                        {"destinationPath": string("Absolute path.", 1024)},
                        required=["destinationPath"],
                    ),
                    16,
                ),
            },
            required=["name", "source", "mounts"],
        ),
        32,
    )


def build_source() -> Schema:
    source_types = ["Git", "Dockerfile", "Binary", "Image", "None"]
    return obj(
        "Where the build context comes from.",
        {
            "type": string("Git, Dockerfile, Binary, Image or None.", 16, enum=source_types),
            "git": obj(
                "A Git repository to clone.",
                {
                    "uri": string(
                        "Repository URL (https://, ssh://, git://, or scp-style).",
                        2048,
                        minLength=1,
                    ),
                    "ref": string(
                        "Branch, tag or commit to check out; default: the remote HEAD.", 1024
                    ),
                    "httpProxy": string("HTTP proxy for the clone.", 2048),
                    "httpsProxy": string("HTTPS proxy for the clone.", 2048),
                    "noProxy": string("Hosts that bypass the proxy.", 2048),
                },
                required=["uri"],
            ),
            "dockerfile": string(
                "An inline Dockerfile; replaces the one in the context.", DOCKERFILE_MAX
            ),
            "binary": obj(
                "The context is uploaded when the build starts (start-build --from-*).",
                {"asFile": string("Save a single uploaded file under this name.", 1024)},
            ),
            "images": array(
                "Files copied out of images into the context (not implemented yet).",
                obj(
                    "An image to copy files from.",
                    {
                        "from": image_ref(
                            "The image.", ["DockerImage", "ImageStreamTag", "ImageStreamImage"]
                        ),
                        "as": array(
                            "Names this image replaces in FROM lines.",
                            string("A name.", REF_MAX),
                            16,
                        ),
                        "paths": array(
                            "What to copy.",
                            obj(
                                "One copy.",
                                {
                                    "sourcePath": string("Absolute path in the image.", 1024),
                                    "destinationDir": string("Relative dir in the context.", 1024),
                                },
                                required=["sourcePath", "destinationDir"],
                            ),
                            64,
                        ),
                        "pullSecret": local_ref("Secret to pull the image."),
                    },
                    required=["from"],
                ),
                16,
            ),
            "contextDir": string("Sub-directory of the source to build from.", 1024),
            "sourceSecret": local_ref("Secret with credentials to fetch the source."),
            "secrets": array(
                "Secrets copied into the context during the build.",
                obj(
                    "A Secret to copy.",
                    {
                        "secret": local_ref("The Secret."),
                        "destinationDir": string("Relative dir in the context.", 1024),
                    },
                    required=["secret"],
                ),
                32,
            ),
            "configMaps": array(
                "ConfigMaps copied into the context during the build.",
                obj(
                    "A ConfigMap to copy.",
                    {
                        "configMap": local_ref("The ConfigMap."),
                        "destinationDir": string("Relative dir in the context.", 1024),
                    },
                    required=["configMap"],
                ),
                32,
            ),
        },
        required=["type"],
        rules=[
            # The source type names the block that carries the input.
            rule("self.type != 'Git' || has(self.git)", "git is required when type is Git", ".git"),
            rule(
                "!has(self.git) || self.type == 'Git'",
                "git is only allowed when type is Git",
                ".git",
            ),
            rule(
                "self.type != 'Dockerfile' || has(self.dockerfile)",
                "dockerfile is required when type is Dockerfile",
                ".dockerfile",
            ),
            rule(
                "!has(self.binary) || self.type == 'Binary'",
                "binary is only allowed when type is Binary",
                ".binary",
            ),
            rule(
                "self.type != 'Image' || (has(self.images) && self.images.size() > 0)",
                "images needs at least one entry when type is Image",
                ".images",
            ),
            rule(
                "self.type != 'None' || !has(self.dockerfile)",
                "dockerfile is not allowed when type is None (use type Dockerfile)",
                ".dockerfile",
            ),
        ],
    )


def build_strategy() -> Schema:
    builder_kinds = ["DockerImage", "ImageStreamTag", "ImageStreamImage"]
    pull_secret = local_ref("Secret to pull the builder/base image.")
    return obj(
        "How the image is built.",
        {
            "type": string("Docker, Source or Custom.", 16, enum=["Docker", "Source", "Custom"]),
            "dockerStrategy": obj(
                "Build the context's Dockerfile.",
                {
                    "from": image_ref("Replaces the last FROM image.", builder_kinds),
                    "pullSecret": pull_secret,
                    "noCache": boolean("Build without the layer cache."),
                    "env": env_list("Environment for the build (and a trailing ENV)."),
                    "forcePull": boolean("Always pull the base image."),
                    "dockerfilePath": string(
                        "Path of the Dockerfile relative to the context dir.",
                        1024,
                        default="Dockerfile",
                    ),
                    "buildArgs": env_list("--build-arg values (valueFrom is not supported)."),
                    "imageOptimizationPolicy": string(
                        "Layer squashing; accepted, only None is honoured.",
                        32,
                        enum=["None", "SkipLayers", "SkipLayersAndWarn"],
                    ),
                    "volumes": build_volumes(),
                },
            ),
            "sourceStrategy": obj(
                "Source-to-Image: assemble the source with a builder image.",
                {
                    "from": image_ref("The S2I builder image.", builder_kinds),
                    "pullSecret": pull_secret,
                    "env": env_list("Environment for assemble and the output image."),
                    "scripts": string("URL of the S2I scripts; default: the image's.", 2048),
                    "incremental": boolean("Reuse artifacts of the previous image."),
                    "noCache": boolean("Build without the layer cache (a Headwater addition)."),
                    "forcePull": boolean("Always pull the builder image."),
                    "volumes": build_volumes(),
                },
                required=["from"],
            ),
            "customStrategy": obj(
                "Run a builder image of your own, with OpenShift's documented environment.",
                {
                    "from": image_ref("The custom builder image.", builder_kinds),
                    "pullSecret": pull_secret,
                    "env": env_list("Environment of the builder container."),
                    "exposeDockerSocket": boolean("Not supported; must be false."),
                    "forcePull": boolean("Always pull the builder image."),
                    "secrets": array(
                        "Secrets mounted into the builder.",
                        obj(
                            "A Secret to mount.",
                            {
                                "secretSource": local_ref("The Secret."),
                                "mountPath": string("Where to mount it.", 1024),
                            },
                            required=["secretSource", "mountPath"],
                        ),
                        32,
                    ),
                    "buildAPIVersion": string("API version of the Build passed in.", 63),
                },
                required=["from"],
            ),
        },
        required=["type"],
        rules=[
            # Exactly one strategy block, and it is the one the type names.
            rule(
                "[has(self.dockerStrategy), has(self.sourceStrategy), has(self.customStrategy)]"
                ".filter(x, x).size() <= 1",
                "only one of dockerStrategy, sourceStrategy, customStrategy may be set",
            ),
            rule(
                "has(self.dockerStrategy) == (self.type == 'Docker')",
                "dockerStrategy must be set when, and only when, type is Docker",
                ".dockerStrategy",
            ),
            rule(
                "has(self.sourceStrategy) == (self.type == 'Source')",
                "sourceStrategy must be set when, and only when, type is Source",
                ".sourceStrategy",
            ),
            rule(
                "has(self.customStrategy) == (self.type == 'Custom')",
                "customStrategy must be set when, and only when, type is Custom",
                ".customStrategy",
            ),
        ],
    )


def build_output() -> Schema:
    return obj(
        "Where the built image is pushed.",
        {
            "to": image_ref(
                "ImageStreamTag (pushed to the configured registry, then tagged) or DockerImage.",
                ["ImageStreamTag", "DockerImage"],
            ),
            "pushSecret": local_ref(
                "Secret to push with; default: a docker-config secret of the build's service"
                " account that has credentials for the output registry, else none."
            ),
            "imageLabels": array(
                "Labels added to the output image.",
                obj(
                    "An image label.",
                    {
                        "name": string("Label name.", 1024, minLength=1),
                        "value": string("Label value.", VALUE_MAX),
                    },
                    required=["name"],
                ),
                64,
            ),
        },
    )


def post_commit() -> Schema:
    return obj(
        "A command run in the built image before it is pushed; failure fails the build.",
        {
            "command": array("Entrypoint override.", string("An argument.", VALUE_MAX), 64),
            "args": array("Arguments.", string("An argument.", VALUE_MAX), 64),
            "script": string("Shell script run with /bin/sh -ic.", TEXT_MAX),
        },
        rules=[
            rule(
                "!(has(self.script) && has(self.command))",
                "script and command are mutually exclusive",
            )
        ],
    )


def common_spec_properties() -> dict[str, Schema]:
    """The part of the spec a BuildConfig and its Builds share (OpenShift's CommonSpec)."""
    return {
        "serviceAccount": string(
            "Service account the build pod runs as (its token is not mounted); default: default."
        ),
        "source": build_source(),
        "revision": source_revision("The revision to build (set on Builds by webhooks)."),
        "strategy": build_strategy(),
        "output": build_output(),
        "resources": resources(),
        "postCommit": post_commit(),
        "completionDeadlineSeconds": integer(
            "Seconds a build may run after its pod is scheduled before it fails.", minimum=1
        ),
        "nodeSelector": {
            **string_map("Node labels the build pod must match."),
            "nullable": True,
        },
        "mountTrustedCA": boolean("Mount the cluster's trusted CA bundle (not implemented yet)."),
    }


def webhook_trigger(description: str, allow_env: bool = False) -> Schema:
    props: dict[str, Schema] = {
        "secret": string("Deprecated: the secret inline. Use secretReference.", 1024),
        "secretReference": local_ref("Secret whose WebHookSecretKey key is the webhook secret."),
    }
    if allow_env:
        props["allowEnv"] = boolean("Let the request body set build env vars.")
    return obj(description, props)


_TRIGGER_BLOCKS = {
    "github": "GitHub",
    "gitlab": "GitLab",
    "bitbucket": "Bitbucket",
    "generic": "Generic",
    "imageChange": "ImageChange",
}


def trigger() -> Schema:
    types = ["ConfigChange", "ImageChange", "GitHub", "GitLab", "Bitbucket", "Generic"]
    return obj(
        "What starts a build.",
        {
            "type": string(", ".join(types) + ".", 16, enum=types),
            "github": webhook_trigger("A GitHub push webhook."),
            "gitlab": webhook_trigger("A GitLab push webhook."),
            "bitbucket": webhook_trigger("A Bitbucket push webhook."),
            "generic": webhook_trigger("A generic webhook.", allow_env=True),
            "imageChange": obj(
                "Build when an ImageStreamTag moves.",
                {
                    "from": image_ref(
                        "The tag to watch; default: the strategy's from.", ["ImageStreamTag"]
                    ),
                    "paused": boolean("Do not trigger while true."),
                    "lastTriggeredImageID": string("Deprecated; see status.", REF_MAX),
                },
            ),
        },
        required=["type"],
        # Each trigger carries the block its type names, and no other.
        rules=[
            rule(
                f"has(self.{block}) == (self.type == '{kind}')",
                f"{block} must be set when, and only when, type is {kind}",
                f".{block}",
            )
            for block, kind in _TRIGGER_BLOCKS.items()
        ],
    )


# --- ImageStream ----------------------------------------------------------------------------


def imagestream_spec() -> Schema:
    tag = obj(
        "A named tag.",
        {
            "name": string("Tag name (Docker tag grammar).", 128, pattern=TAG_PATTERN),
            "annotations": string_map("Annotations of the tag."),
            "from": image_ref(
                "What the tag points at: an external image, or another tag (an alias).",
                ["DockerImage", "ImageStreamTag", "ImageStreamImage"],
            ),
            "reference": boolean("Never import: consumers get from.name as is."),
            "generation": integer(
                "Bumped when the tag changes; newer than status asks for an import.",
                nullable=True,
            ),
            "importPolicy": obj(
                "How the tag is imported.",
                {
                    "insecure": boolean("Allow plain HTTP and unverified TLS."),
                    "scheduled": boolean("Re-import periodically."),
                    "importMode": string(
                        "Legacy (one platform of a list) or PreserveOriginal (the list).",
                        32,
                        enum=["Legacy", "PreserveOriginal"],
                        default="Legacy",
                    ),
                },
                default={},
            ),
            "verification": obj(
                "Verify the tag's image against cosign signatures made with named keys"
                " (Headwater; not in OpenShift). The result is the status tag's Verified"
                " condition.",
                {
                    "keys": array(
                        "Names of the cluster's verification keys (headwater: the cluster"
                        " signing key; others from the operator's verificationKeys); one"
                        " signature by any of them verifies the image.",
                        string("A verification key's name.", 63, pattern=KEY_NAME_PATTERN),
                        8,
                        minItems=1,
                        **{"x-kubernetes-list-type": "set"},
                    ),
                    "required": boolean(
                        "Image triggers roll out only an image that verifies (default false:"
                        " the condition only reports)."
                    ),
                },
                required=["keys"],
            ),
            "referencePolicy": obj(
                "How consumers are pointed at the image.",
                {
                    "type": string(
                        "Source (the original reference) or Local (the configured registry).",
                        16,
                        enum=["Source", "Local"],
                        default="Source",
                    )
                },
                default={},
            ),
        },
        required=["name"],
    )
    return obj(
        "Desired tags of the stream.",
        {
            "lookupPolicy": obj(
                "Name resolution in pod specs.",
                {"local": boolean("Resolve <stream>[:tag] in this namespace's pod specs.")},
                required=["local"],
            ),
            "dockerImageRepository": string(
                "Deprecated in OpenShift; accepted and ignored.", REF_MAX
            ),
            "tags": array(
                "Named tags; names are unique.",
                tag,
                # 1000 tags would exceed the CEL cost budget of the from.name grammar rules.
                500,
                **{"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
            ),
        },
    )


def imagestream_status() -> Schema:
    item = obj(
        "One image the tag pointed at.",
        {
            "created": timestamp("When the tag moved to this image."),
            "dockerImageReference": string("Pull spec of the image.", REF_MAX),
            "image": string("Digest (sha256:...).", 128),
            "generation": integer("Spec generation that produced this item."),
            "platforms": array(
                "Platforms of a manifest list (PreserveOriginal).",
                obj(
                    "One platform manifest.",
                    {
                        "os": string("OS, e.g. linux.", 63),
                        "architecture": string("CPU architecture, e.g. amd64.", 63),
                        "variant": string("Variant, e.g. v8.", 63),
                        "digest": string("Digest of that platform's manifest.", 128),
                    },
                ),
                64,
            ),
        },
    )
    tag_condition = obj(
        "A condition of the tag (OpenShift's TagEventCondition).",
        {
            "type": string(
                "ImportSuccess, or Verified (tags with a verification policy).",
                32,
                enum=["ImportSuccess", "Verified"],
            ),
            "status": string("True, False or Unknown.", 16, enum=["True", "False", "Unknown"]),
            "lastTransitionTime": timestamp("When status last changed."),
            "reason": string("CamelCase reason.", 1024),
            "message": string("Human-readable detail.", TEXT_MAX),
            "generation": integer("Spec tag generation this condition is about."),
        },
        required=["type", "status"],
    )
    return obj(
        "Observed state, written by the operator.",
        {
            "observedGeneration": observed_generation(),
            "conditions": conditions("Ready and finer conditions of the stream."),
            "dockerImageRepository": string(
                "Where this stream's images live in the configured registry.", REF_MAX
            ),
            "publicDockerImageRepository": string("The same, as seen from outside.", REF_MAX),
            "tags": array(
                "History per tag.",
                obj(
                    "History of one tag.",
                    {
                        "tag": string("Tag name.", 128),
                        "items": array("Images the tag pointed at, newest first.", item, 1000),
                        "conditions": array(
                            "Import and verification conditions.", tag_condition, 16
                        ),
                        "lastImportTime": timestamp("When the tag was last imported."),
                        "nextImportTime": timestamp("When a scheduled import is due."),
                    },
                    required=["tag"],
                ),
                1000,
                **{"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["tag"]},
            ),
        },
    )


# --- BuildConfig and Build ------------------------------------------------------------------


def buildconfig_spec() -> Schema:
    props = common_spec_properties()
    props["triggers"] = array(
        "What starts builds.",
        trigger(),
        32,
        **{
            "x-kubernetes-validations": [
                rule(
                    "self.filter(t, t.type == 'ImageChange' && has(t.imageChange)"
                    " && !has(t.imageChange.from)).size() <= 1",
                    "at most one ImageChange trigger may omit from (it watches the strategy's"
                    " from)",
                )
            ]
        },
    )
    props["runPolicy"] = string(
        "Serial, Parallel or SerialLatestOnly.",
        32,
        enum=["Serial", "Parallel", "SerialLatestOnly"],
        default="Serial",
    )
    props["successfulBuildsHistoryLimit"] = integer(
        "Complete builds to keep.", "int32", minimum=0, default=5
    )
    props["failedBuildsHistoryLimit"] = integer(
        "Failed, Error and Cancelled builds to keep.", "int32", minimum=0, default=5
    )
    return obj("How to build, and when.", props, required=["strategy"])


def buildconfig_status() -> Schema:
    return obj(
        "Observed state, written by the operator.",
        {
            "observedGeneration": observed_generation(),
            "conditions": conditions("Ready and finer conditions."),
            "lastVersion": integer("Number of the newest Build (<bc>-<lastVersion>)."),
            "imageChangeTriggers": array(
                "What each ImageChange trigger last fired on.",
                obj(
                    "State of one ImageChange trigger.",
                    {
                        "lastTriggeredImageID": string("Image that last fired it.", REF_MAX),
                        "from": obj(
                            "The watched ImageStreamTag.",
                            {
                                "name": string("<stream>:<tag>.", REF_MAX),
                                "namespace": string("Its namespace.", 63),
                            },
                        ),
                        "lastTriggerTime": timestamp("When it last fired."),
                    },
                ),
                32,
            ),
        },
    )


def webhook_cause(description: str) -> Schema:
    return obj(description, {"revision": source_revision("The revision the hook named.")})


def build_spec() -> Schema:
    props = common_spec_properties()
    props["triggeredBy"] = array(
        "Why this build was started.",
        obj(
            "One cause.",
            {
                "message": string("Human-readable cause.", 1024),
                "githubWebHook": webhook_cause("A GitHub push."),
                "gitlabWebHook": webhook_cause("A GitLab push."),
                "bitbucketWebHook": webhook_cause("A Bitbucket push."),
                "genericWebHook": webhook_cause("A generic webhook call."),
                "imageChangeBuild": obj(
                    "An ImageChange trigger.",
                    {
                        "imageID": string("The new image.", REF_MAX),
                        "fromRef": image_ref(
                            "The tag that moved.",
                            ["ImageStreamTag", "DockerImage", "ImageStreamImage"],
                        ),
                    },
                ),
            },
        ),
        16,
    )
    return obj(
        "A snapshot of the BuildConfig's spec this build runs; immutable.",
        props,
        required=["strategy"],
        rules=[rule("self == oldSelf", "spec is immutable once a Build is created")],
    )


def build_status() -> Schema:
    step = obj(
        "A step of a stage.",
        {
            "name": string("Step name.", 128),
            "startTime": timestamp("When it started."),
            "durationMilliseconds": integer("How long it took."),
        },
    )
    phases = ["New", "Pending", "Running", "Complete", "Failed", "Error", "Cancelled"]
    return obj(
        "Observed state, written by the operator.",
        {
            "observedGeneration": observed_generation(),
            "conditions": conditions("Succeeded and finer conditions."),
            "phase": string(
                " -> ".join(phases[:4]) + " | Failed | Error | Cancelled.", 16, enum=phases
            ),
            "cancelled": boolean("Set to true (by the CLI) to cancel the build."),
            "reason": string("Why the build is in its phase, e.g. FetchSourceFailed.", 1024),
            "message": string("Human-readable detail.", TEXT_MAX),
            "startTimestamp": timestamp("When the build pod started running."),
            "completionTimestamp": timestamp("When the build finished."),
            # OpenShift serialises a Go time.Duration as integer nanoseconds; Headwater writes a
            # human-readable Go duration string ("1m30.5s") so the printer column reads well.
            "duration": string("How long the build ran, as a Go duration string (1m30s).", 64),
            "outputDockerImageReference": string("Where the image is pushed.", REF_MAX),
            "output": obj(
                "What was pushed.",
                {
                    "to": obj(
                        "The pushed image.",
                        {"imageDigest": string("Digest of the pushed manifest.", 128)},
                    )
                },
            ),
            "provenance": obj(
                "Where the build's SLSA v1 provenance lives (docs/supply-chain.md, Provenance).",
                {
                    "reference": string(
                        "The attestation: <repository>:sha256-<hex>.att, or "
                        "<repository>@<digest> of an OCI referrer.",
                        REF_MAX,
                    ),
                    "scheme": string("tag (cosign's .att tag) or referrers (OCI 1.1).", 16),
                    "mediaType": string("The layer's media type (a DSSE envelope).", 128),
                    "predicateType": string("https://slsa.dev/provenance/v1.", 128),
                    "signed": boolean("Signed with the cluster key (false: no key configured)."),
                    "keyId": string(
                        "sha256 of the signing key's public key (as status.signature.keyId).", 128
                    ),
                    "dependencies": integer("resolvedDependencies in the statement.", "int32"),
                    "bytes": integer("The statement's size in bytes.", "int32"),
                    "capped": boolean("The pod reported more images than are recorded."),
                    "error": string("Why no provenance was attached.", TEXT_MAX),
                },
            ),
            "config": obj(
                "The BuildConfig this build came from.",
                {
                    "kind": string("BuildConfig.", 63),
                    "name": string("Its name."),
                    "namespace": string("Its namespace.", 63),
                },
            ),
            "revision": source_revision("The revision actually built (commit SHA and author)."),
            "stages": array(
                "Timing of FetchInputs, PullImages, Build, PostCommit, PushImage.",
                obj(
                    "A stage.",
                    {
                        "name": string("Stage name.", 128),
                        "startTime": timestamp("When it started."),
                        "durationMilliseconds": integer("How long it took."),
                        "steps": array("Its steps.", step, 64),
                    },
                ),
                16,
            ),
            "logSnippet": string("Last lines of the log of a failed build.", TEXT_MAX),
            "jobName": string("The Job that runs this build."),
            "signature": obj(
                "The cosign signature of the pushed image (Complete builds), or why it has none.",
                {
                    "signed": boolean("Whether the image is signed with the cluster's key."),
                    "reference": string(
                        "The signature manifest: <repository>:sha256-<hex>.sig (cosign's tag).",
                        REF_MAX,
                    ),
                    "digest": string("Digest of that manifest when the signature was added.", 128),
                    "keyId": string(
                        "sha256 of the signing key's public key (DER SubjectPublicKeyInfo).", 128
                    ),
                    "message": string("Why the image is not signed.", TEXT_MAX),
                },
            ),
        },
    )


# --- CRDs -----------------------------------------------------------------------------------


def column(name: str, type_: str, path: str, description: str, **extra: Any) -> Schema:
    return {"name": name, "type": type_, "jsonPath": path, "description": description, **extra}


def crd(
    group: str,
    kind: str,
    plural: str,
    *,
    short_names: list[str],
    spec: Schema,
    status: Schema,
    columns: list[Schema],
    description: str,
) -> Schema:
    names: Schema = {
        "kind": kind,
        "listKind": kind + "List",
        "plural": plural,
        "singular": kind.lower(),
        "categories": ["headwater"],
    }
    if short_names:
        names["shortNames"] = short_names
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{plural}.{group}",
            "labels": {"app.kubernetes.io/part-of": "headwater"},
        },
        "spec": {
            "group": group,
            "names": names,
            "scope": "Namespaced",
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [
                        *columns,
                        column("Age", "date", ".metadata.creationTimestamp", "Age."),
                    ],
                    "schema": {
                        "openAPIV3Schema": obj(
                            description,
                            {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": spec,
                                "status": status,
                            },
                        )
                    },
                }
            ],
        },
    }


def imagestream_crd() -> Schema:
    return crd(
        "image.headwater.dev",
        "ImageStream",
        "imagestreams",
        short_names=["is"],
        spec=imagestream_spec(),
        status=imagestream_status(),
        columns=[
            column(
                "Image Repository",
                "string",
                ".status.dockerImageRepository",
                "Where this stream's images live.",
            ),
            # The API server prints only the first match of a column's JSONPath, so this shows
            # the first status tag; `kubectl headwater get istag` lists them all.
            column("Tags", "string", ".status.tags[*].tag", "Tags with images (first shown)."),
            # JSONPath cannot take a maximum, so "Updated" is the first status tag's newest
            # item: exact for the common single-tag stream, empty until something is imported
            # or built (unlike metadata.creationTimestamp, which would claim an update that
            # never happened).
            column(
                "Updated",
                "date",
                ".status.tags[0].items[0].created",
                "When the first tag last moved.",
            ),
        ],
        description=(
            "Named tags pointing at images (OpenShift's image.openshift.io/v1 ImageStream)."
        ),
    )


def buildconfig_crd() -> Schema:
    return crd(
        "build.headwater.dev",
        "BuildConfig",
        "buildconfigs",
        short_names=["bc"],
        spec=buildconfig_spec(),
        status=buildconfig_status(),
        columns=[
            column("Type", "string", ".spec.strategy.type", "Build strategy."),
            column("From", "string", ".spec.source.type", "Source type."),
            column("Latest", "integer", ".status.lastVersion", "Number of the newest build."),
        ],
        description=(
            "How to build an image and when (OpenShift's build.openshift.io/v1 BuildConfig)."
        ),
    )


def build_crd() -> Schema:
    return crd(
        "build.headwater.dev",
        "Build",
        "builds",
        short_names=["hwbuild"],
        spec=build_spec(),
        status=build_status(),
        columns=[
            column("Type", "string", ".spec.strategy.type", "Build strategy."),
            column("From", "string", ".spec.source.type", "Source type."),
            column("Status", "string", ".status.phase", "Phase."),
            column("Started", "date", ".status.startTimestamp", "When the build started."),
            column("Duration", "string", ".status.duration", "How long it ran."),
        ],
        description="One run of a BuildConfig (OpenShift's build.openshift.io/v1 Build).",
    )


HEADER = """\
# GENERATED by hack/gen_crds.py -- do not edit; edit the generator and run `make manifests`.
#
# {summary}
# Cross-field rules are CEL (x-kubernetes-validations); each has a message and, where it
# helps, a fieldPath so the API server's error names the field. Every string has a maxLength
# and every array a maxItems so the rules fit the API server's CEL cost budget.
"""

SUMMARIES = {
    "imagestreams.image.headwater.dev.yaml": (
        "ImageStream: tag names follow the Docker tag grammar, tags are a map keyed by name\n"
        "# (duplicates are rejected), and each from.name is checked against its kind's grammar."
    ),
    "buildconfigs.build.headwater.dev.yaml": (
        "BuildConfig: the strategy/source/trigger type must match the one block present;\n"
        "# postCommit script and command are exclusive."
    ),
    "builds.build.headwater.dev.yaml": (
        "Build: the BuildConfig's spec snapshot plus triggeredBy; spec is immutable\n"
        "# (self == oldSelf). status.duration is a Go duration string, not nanoseconds."
    ),
}

KUSTOMIZATION = """\
# The CRDs as a kustomize base (deploy/ uses ../../crds). Generated by hack/gen_crds.py.
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
- imagestreams.image.headwater.dev.yaml
- buildconfigs.build.headwater.dev.yaml
- builds.build.headwater.dev.yaml
"""


def dump(doc: Schema) -> str:
    return yaml.safe_dump(doc, sort_keys=False, width=100, default_flow_style=False)


def render_all() -> dict[str, str]:
    """File name under crds/ -> exact content."""
    docs = {
        "imagestreams.image.headwater.dev.yaml": imagestream_crd(),
        "buildconfigs.build.headwater.dev.yaml": buildconfig_crd(),
        "builds.build.headwater.dev.yaml": build_crd(),
    }
    out = {
        name: HEADER.format(summary=SUMMARIES[name]) + "---\n" + dump(doc)
        for name, doc in docs.items()
    }
    # Named "Kustomization" (a name kustomize recognises) rather than kustomization.yaml so that
    # `kubectl apply -f crds/` and globs over crds/*.yaml see only the CRDs.
    out["Kustomization"] = KUSTOMIZATION
    return out


def main(argv: list[str]) -> int:
    check = "--check" in argv
    stale = []
    rendered = render_all()
    targets = [(CRD_DIR, name) for name in rendered]
    # The package copy holds the CRDs only (no Kustomization).
    targets += [(PACKAGE_CRD_DIR, name) for name in rendered if name.endswith(".yaml")]
    for directory, name in targets:
        path = directory / name
        if check:
            if not path.exists() or path.read_text() != rendered[name]:
                stale.append(str(path.relative_to(REPO)))
        else:
            directory.mkdir(parents=True, exist_ok=True)
            path.write_text(rendered[name])
    if check and PACKAGE_CRD_DIR.is_dir():
        extra = {p.name for p in PACKAGE_CRD_DIR.iterdir()} - {n for _, n in targets}
        stale += [str((PACKAGE_CRD_DIR / n).relative_to(REPO)) + " (not generated)" for n in extra]
    if stale:
        print("out of date (run python hack/gen_crds.py): " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
