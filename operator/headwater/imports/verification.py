"""Image signature verification: policies, verdicts and the tag's ``Verified`` condition (pure).

An ImageStream tag may carry a verification policy::

    spec:
      tags:
      - name: latest
        from: {kind: DockerImage, name: quay.io/team/web:latest}
        verification:
          keys: [headwater, release]
          required: true

Headwater then checks the tag's current image against cosign signatures
(``sha256-<hex>.sig`` in the image's repository) made with any of the named
keys, and records the answer as the tag's ``Verified`` condition. With
``required: true``, image triggers on workloads roll out only an image that
verifies (``headwater.workloads``). A trigger annotation entry may ask for the
same with ``"verify": {"keys": [...]}``.

Key names are names of the cluster's verification keys: ``headwater`` (the
public half of the cluster's signing key) and those an admin configures
(``verificationKeys`` in the operator's config). A tenant cannot name key
material anywhere else (see :mod:`headwater.imports.keys`).

Nothing here does I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from headwater.imports.model import tag_condition
from headwater.timefmt import format_time

VERIFIED = "Verified"
"""The status tag condition type."""

KEY_NAME_PATTERN = r"[a-z0-9](?:[-a-z0-9.]{0,61}[a-z0-9])?"
"""A verification key's name: a DNS-1123 label, dots allowed (like an object name, at most 63)."""
_KEY_NAME = re.compile(rf"^{KEY_NAME_PATTERN}$")
MAX_KEYS = 8
"""Keys one policy may name: each costs a verification of every signature found."""
BUILTIN_KEY = "headwater"
"""The public half of the cluster's signing key (Secret ``headwater-signing-key``)."""

# Reasons of the Verified condition.
REASON_VERIFIED = "Verified"
REASON_NO_SIGNATURE = "NoSignature"
REASON_MISMATCH = "SignatureMismatch"
REASON_KEY_NOT_FOUND = "KeyNotFound"
REASON_INVALID_KEY = "InvalidKey"
REASON_REGISTRY_ERROR = "RegistryError"
REASON_PENDING = "Verifying"

Status = Literal["True", "False", "Unknown"]

RETRY_FIRST_SECONDS = 5.0
RETRY_MAX_SECONDS = 300.0
"""Unverified images are checked again after 5 s, 10 s, 20 s ... then every 5 minutes."""


class PolicyError(ValueError):
    """A verification policy (of a tag or a trigger) is not usable; the message says why."""


@dataclass(frozen=True)
class Policy:
    """Which keys an image must be signed with, and whether rollouts depend on it."""

    keys: tuple[str, ...]
    required: bool = False


@dataclass(frozen=True)
class Verdict:
    """The answer for one image against a policy's keys."""

    status: Status
    reason: str
    message: str
    key: str | None = None
    """The key that verified it (status True)."""

    @property
    def verified(self) -> bool:
        return self.status == "True"


def parse_keys(value: Any, where: str) -> tuple[str, ...]:
    """A list of 1..MAX_KEYS key names, duplicates dropped (order kept)."""
    if not isinstance(value, list) or not value:
        raise PolicyError(f"{where}: a non-empty list of key names is required")
    if len(value) > MAX_KEYS:
        raise PolicyError(f"{where}: {len(value)} keys; at most {MAX_KEYS}")
    names: list[str] = []
    for i, name in enumerate(value):
        if not isinstance(name, str) or not _KEY_NAME.match(name):
            raise PolicyError(
                f"{where}[{i}]: {name!r} is not a key name (lowercase letters, digits, '-', '.')"
            )
        if name not in names:
            names.append(name)
    return tuple(names)


def tag_policy(raw: Mapping[str, Any] | None) -> Policy | None:
    """The ``verification`` policy of one ``spec.tags[]`` entry; None without one.

    The CRD's schema enforces the same limits; an object admitted before them
    (or written around admission) gets a PolicyError naming what is wrong.
    """
    value = (raw or {}).get("verification")
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise PolicyError("verification: must be an object with keys")
    required = value.get("required", False)
    if not isinstance(required, bool):
        raise PolicyError(f"verification.required: {required!r}; expected true or false")
    return Policy(parse_keys(value.get("keys"), "verification.keys"), required)


def tag_policies(spec: Mapping[str, Any] | None) -> dict[str, Policy | PolicyError]:
    """Tag name -> its policy (or what is wrong with it), for tags that have one."""
    found: dict[str, Policy | PolicyError] = {}
    for raw in (spec or {}).get("tags") or []:
        if not isinstance(raw, Mapping) or "verification" not in raw:
            continue
        try:
            policy = tag_policy(raw)
        except PolicyError as exc:
            found[str(raw.get("name"))] = exc
            continue
        if policy is not None:
            found[str(raw.get("name"))] = policy
    return found


def combine(
    outcomes: Mapping[str, Verdict],
    keys: Sequence[str],
    image: str,
) -> Verdict:
    """One verdict for ``image`` from each key's own: True when any key verifies it.

    Otherwise the most telling failure, in this order: a signature made by
    another key (SignatureMismatch), a key that cannot be used (KeyNotFound,
    InvalidKey), the registry not answering (RegistryError: Unknown, since
    nothing is known), no signature at all (NoSignature).
    """
    for key in keys:
        verdict = outcomes.get(key)
        if verdict is not None and verdict.verified:
            return verdict
    order = (
        REASON_MISMATCH,
        REASON_KEY_NOT_FOUND,
        REASON_INVALID_KEY,
        REASON_REGISTRY_ERROR,
        REASON_NO_SIGNATURE,
        REASON_PENDING,
    )
    failures = [outcomes[k] for k in keys if k in outcomes]
    if not failures:
        return Verdict("Unknown", REASON_PENDING, f"{image}: not checked yet")
    failures.sort(key=lambda v: order.index(v.reason) if v.reason in order else len(order))
    first = failures[0]
    if len(keys) == 1:
        return first
    others = "; ".join(v.message for v in failures[1:])
    return Verdict(
        first.status, first.reason, f"{first.message}; {others}" if others else first.message
    )


def verified_conditions(
    entry: Mapping[str, Any] | None,
    verdict: Verdict | None,
    generation: int,
    now: datetime,
) -> list[dict[str, Any]]:
    """The status tag's conditions with ``Verified`` set (or removed, for None).

    The transition time moves only when the status changes; the position of
    the condition is kept, so an unchanged verdict yields an equal list (and
    no status write).
    """
    existing = [dict(c) for c in (entry or {}).get("conditions") or []]
    if verdict is None:
        return [c for c in existing if c.get("type") != VERIFIED]
    current = tag_condition(entry, VERIFIED)
    transition = (
        current.get("lastTransitionTime")
        if current is not None and current.get("status") == verdict.status
        else None
    ) or format_time(now)
    condition = {
        "type": VERIFIED,
        "status": verdict.status,
        "reason": verdict.reason,
        "message": verdict.message,
        "lastTransitionTime": transition,
        "generation": generation,
    }
    if current is not None and all(
        current.get(k) == condition[k] for k in ("status", "reason", "message", "generation")
    ):
        return existing
    out = [c for c in existing if c.get("type") != VERIFIED]
    return [*out, condition]


def retry_delay(attempts: int) -> float:
    """Seconds until an unverified image is checked again after ``attempts`` checks (>= 1)."""
    return float(min(RETRY_MAX_SECONDS, RETRY_FIRST_SECONDS * 2.0 ** min(30, max(0, attempts - 1))))


def rollout_requirements(
    trigger_keys: Iterable[str], policy: Policy | None
) -> tuple[tuple[str, ...], ...]:
    """The key sets a rollout of a tag's image must satisfy: one key of each set verifies it.

    A trigger's own keys (``"verify": {"keys": [...]}``) are one set; a tag policy
    with ``required: true`` is another. Both apply: a workload's author can ask
    for more than the tag's owner, never for less. Empty: no verification needed.
    """
    sets: list[tuple[str, ...]] = []
    keys = tuple(trigger_keys)
    if keys:
        sets.append(keys)
    if policy is not None and policy.required and policy.keys not in sets:
        sets.append(policy.keys)
    return tuple(sets)
