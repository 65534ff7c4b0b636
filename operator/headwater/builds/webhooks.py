"""Build webhooks (pure): what a GitHub, GitLab, Bitbucket or Generic hook call asks for.

OpenShift's URL shape, under Headwater's API group::

    /apis/build.headwater.dev/v1/namespaces/<ns>/buildconfigs/<name>/webhooks/<secret>/<type>

The URL secret is the credential: it must equal the secret of one of the
BuildConfig's triggers of that type (the Secret named by
``secretReference.name``, key ``WebHookSecretKey``, or the deprecated inline
``secret``). Everything here is a decision on values the caller read:
:func:`decide` turns (the call, the BuildConfig, the secret values) into a
:class:`HookResult` — a status, a JSON body and, when a build should start,
the :class:`StartRequest` to instantiate. The aiohttp side lives in
:mod:`headwater.builds.webhook_server`.

Secrets never leave this module in a message: refusals are uniform (no
BuildConfig, no trigger of that type and a wrong secret all get the same
answer, as OpenShift answers), and logs name the URL by
:func:`redacted_path`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import re
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, quote

from headwater.builds.instantiate import RequestError, StartRequest, parse_request
from headwater.documents import DocumentError, Limits, load_json, load_yaml, shown

API_PREFIX = "/apis/build.headwater.dev/v1"
PATH_TEMPLATE = API_PREFIX + "/namespaces/{namespace}/buildconfigs/{name}/webhooks/{secret}/{hook}"
"""The aiohttp route (its placeholders are aiohttp's) and the URL the CLI prints."""
WEBHOOK_SECRET_KEY = "WebHookSecretKey"  # noqa: S105 - the key's name, not a secret
REDACTED = "<redacted>"
UNKNOWN = "<secret>"
"""In a printed URL whose secret could not be read (oc prints the same)."""
MAX_BODY_BYTES = 1 << 20
"""GitHub caps payloads at 25 MB but real push payloads are a few KB to a few
hundred; 1 MiB leaves room for a push of many commits and bounds the memory a
caller can make the operator spend before it even knows the secret."""
PAYLOAD_LIMITS = Limits(max_bytes=MAX_BODY_BYTES, max_nodes=250_000, max_depth=64)
"""A provider's push payload (GitHub lists up to 2048 commits, a few dozen values each)."""
GENERIC_LIMITS = Limits(max_bytes=256 * 1024, max_nodes=10_000, max_depth=20)
"""A Generic body: a Git revision, env and build args (at most 128 of each), as JSON or
YAML without anchors or aliases."""
_MAX_FORM_FIELDS = 100

GITHUB, GITLAB, BITBUCKET, GENERIC = "github", "gitlab", "bitbucket", "generic"
HOOK_TYPES: dict[str, str] = {
    GITHUB: "GitHub",
    GITLAB: "GitLab",
    BITBUCKET: "Bitbucket",
    GENERIC: "Generic",
}
"""URL segment -> the trigger ``type`` (whose block is the segment itself)."""
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
_DNS_LABEL_RE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_DNS_SUBDOMAIN_RE = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
_COMMIT_RE = re.compile(r"^[0-9a-fA-F]{7,64}$")
"""Hex only: the commit reaches ``git checkout``, so nothing option-like or ref-like."""
_NAME_MAX, _MESSAGE_MAX = 1024, 4096  # the CRD's limits on revision fields
_MAX_SECRETS = 16
"""Secrets read for one call at most: a BuildConfig with more triggers of one
type than that is not worth an API read per trigger on an unauthenticated path."""
_YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml")
_JSON_TYPE = "application/json"
_FORM_TYPE = "application/x-www-form-urlencoded"
_FALLBACK_DEFAULT_BRANCHES = ("master", "main")
"""An empty ``source.git.ref`` builds the repository's default branch; when the
payload does not name it, these count as default (OpenShift: ``master`` only)."""


# --- the call and the answer ---------------------------------------------------------


@dataclass(frozen=True)
class HookCall:
    """One HTTP call to a build webhook URL."""

    namespace: str
    name: str
    secret: str = field(repr=False)
    hook: str
    method: str = "POST"
    headers: Mapping[str, str] = field(default_factory=dict)
    """Any case; looked up case-insensitively."""
    body: bytes = b""

    def header(self, name: str) -> str | None:
        wanted = name.lower()
        for key, value in self.headers.items():
            if key.lower() == wanted:
                return value
        return None

    @property
    def redacted_path(self) -> str:
        return redacted_path(self.namespace, self.name, self.hook)


@dataclass(frozen=True)
class HookResult:
    """The answer: HTTP status, JSON body, and the build to start (if any)."""

    status: int
    body: Mapping[str, Any]
    request: StartRequest | None = None
    retry_after: int | None = None
    """Seconds, for a 429."""


def webhook_path(namespace: str, name: str, secret: str, hook: str) -> str:
    """The URL path of a webhook; the secret is percent-encoded (it is a path segment)."""
    return PATH_TEMPLATE.format(
        namespace=namespace, name=name, secret=quote(secret, safe=""), hook=hook
    )


def redacted_path(namespace: str, name: str, hook: str) -> str:
    """The URL path with the secret segment replaced: what logs may show."""
    return PATH_TEMPLATE.format(namespace=namespace, name=name, secret=REDACTED, hook=hook)


def refusal(call: HookCall) -> HookResult:
    """The one answer for "no such BuildConfig", "no such trigger" and "wrong secret".

    OpenShift's status and wording: a caller without the secret learns nothing
    about which BuildConfigs exist or which hooks they have.
    """
    hook = call.hook if call.hook in HOOK_TYPES else "unknown"
    return _error(401, f'the webhook "{hook}" for "{call.name}" did not accept your secret')


def _error(status: int, message: str) -> HookResult:
    return HookResult(status, {"status": "Failure", "code": status, "message": message})


def _ok(message: str, **extra: Any) -> HookResult:
    return HookResult(200, {"status": "Success", "code": 200, "message": message, **extra})


# --- checks that need no Kubernetes read ---------------------------------------------


def precheck(call: HookCall) -> HookResult | None:
    """The answer for a call that fails before the BuildConfig is read, else None.

    Cheap refusals first, so a flood of junk never reaches the API server.
    """
    if call.hook not in HOOK_TYPES:
        return _error(404, f"unknown webhook type {call.hook!r}: use {', '.join(HOOK_TYPES)}")
    if call.method.upper() != "POST":
        return _error(405, f"method {call.method} not allowed: webhooks take POST")
    if len(call.body) > MAX_BODY_BYTES:
        return _error(413, f"body larger than {MAX_BODY_BYTES} bytes")
    if (
        not _DNS_LABEL_RE.fullmatch(call.namespace)
        or not _DNS_SUBDOMAIN_RE.fullmatch(call.name)
        or not call.secret
    ):
        # Names no object can have: the same answer as a BuildConfig that does not exist.
        return refusal(call)
    return None


# --- triggers and secrets -------------------------------------------------------------


@dataclass(frozen=True)
class Trigger:
    """A webhook trigger of the BuildConfig's spec."""

    block: Mapping[str, Any]
    """The type's block (``github: {...}``)."""

    @property
    def secret_name(self) -> str | None:
        ref = self.block.get("secretReference")
        name = ref.get("name") if isinstance(ref, Mapping) else None
        return str(name) if name else None

    @property
    def inline_secret(self) -> str | None:
        value = self.block.get("secret")
        return str(value) if value else None

    @property
    def allow_env(self) -> bool:
        return self.block.get("allowEnv") is True


def triggers_of(bc: Mapping[str, Any], hook: str) -> list[Trigger]:
    """The BuildConfig's triggers of this webhook type."""
    kind = HOOK_TYPES.get(hook)
    found = []
    for trigger in (bc.get("spec") or {}).get("triggers") or []:
        if not isinstance(trigger, Mapping) or trigger.get("type") != kind:
            continue
        block = trigger.get(hook)
        found.append(Trigger(block if isinstance(block, Mapping) else {}))
    return found


def inline_secret_fields(bc: Mapping[str, Any]) -> list[str]:
    """The spec fields that hold a webhook secret written into the BuildConfig itself.

    Anyone with ``view`` in the namespace reads a BuildConfig, and with it such a
    secret, and can then start builds; a Secret named in ``secretReference`` is
    readable only by those who may read Secrets.
    """
    found = []
    for i, trigger in enumerate((bc.get("spec") or {}).get("triggers") or []):
        if not isinstance(trigger, Mapping):
            continue
        for hook, kind in HOOK_TYPES.items():
            block = trigger.get(hook)
            if trigger.get("type") == kind and isinstance(block, Mapping) and block.get("secret"):
                found.append(f"spec.triggers[{i}].{hook}.secret")
    return found


def inline_secret_warning(fields: Sequence[str]) -> str:
    """What the condition, the Event and the admission warning say about those fields."""
    return (
        f"{', '.join(fields)}: a webhook secret written in the BuildConfig can be read by"
        " anyone who may view it, and then used to start builds; put it in a Secret (key"
        f" {WEBHOOK_SECRET_KEY}) and name that in secretReference instead"
    )


def referenced_secrets(bc: Mapping[str, Any], hook: str) -> list[str]:
    """Names of the Secrets this type's triggers reference (what the caller reads)."""
    names: list[str] = []
    for trigger in triggers_of(bc, hook):
        name = trigger.secret_name
        if name and name not in names:
            names.append(name)
    return names[:_MAX_SECRETS]


def shared_secret(raw: bytes) -> bytes:
    """A webhook secret as read from its Secret: without surrounding whitespace.

    ``kubectl create secret generic --from-file=WebHookSecretKey=f`` keeps the
    file's trailing newline, which no URL or signature ever carries; the operator
    and the URLs the CLI prints use the same trimmed value.
    """
    return raw.strip()


def matching_trigger(
    triggers: Sequence[Trigger], secrets: Mapping[str, bytes | None], given: str
) -> tuple[Trigger, bytes] | None:
    """The first trigger whose secret equals ``given``, with that secret.

    Every candidate is compared (in constant time), not just up to the first
    match, so the answer's timing says nothing about which trigger matched.
    """
    offered = given.encode()
    found: tuple[Trigger, bytes] | None = None
    for trigger in triggers:
        candidates: list[bytes] = []
        if trigger.inline_secret:
            candidates.append(trigger.inline_secret.encode())
        if trigger.secret_name:
            value = secrets.get(trigger.secret_name)
            if value:
                candidates.append(value)
        for expected in candidates:
            if hmac.compare_digest(expected, offered) and found is None:
                found = (trigger, expected)
    return found


# --- the decision ----------------------------------------------------------------------


@dataclass(frozen=True)
class Revision:
    """What a hook says was pushed."""

    commit: str | None = None
    author: Mapping[str, str] | None = None
    committer: Mapping[str, str] | None = None
    message: str | None = None

    def as_source_revision(self) -> dict[str, Any]:
        git: dict[str, Any] = {}
        if self.commit:
            git["commit"] = self.commit
        for key, person in (("author", self.author), ("committer", self.committer)):
            if person:
                git[key] = dict(person)
        if self.message:
            git["message"] = self.message
        return {"type": "Git", "git": git}


class _BadRequest(ValueError):
    """The call is malformed; answered with this status and message."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def decide(
    call: HookCall,
    bc: Mapping[str, Any] | None,
    secrets: Mapping[str, bytes | None],
    new_id: Callable[[], str] = lambda: uuid.uuid4().hex,
) -> HookResult:
    """What to answer ``call``, given the BuildConfig (None: not found) and secret values.

    ``secrets`` maps the names :func:`referenced_secrets` gave to the value of
    their ``WebHookSecretKey`` (None: no such Secret or key). ``new_id`` makes
    the request id when the call carries no delivery id.
    """
    early = precheck(call)
    if early is not None:
        return early
    if bc is None or (bc.get("metadata") or {}).get("deletionTimestamp"):
        return refusal(call)
    matched = matching_trigger(triggers_of(bc, call.hook), secrets, call.secret)
    if matched is None:
        return refusal(call)
    trigger, secret = matched
    try:
        return _handle(_PROVIDERS[call.hook], call, bc, trigger, secret, new_id)
    except _BadRequest as exc:
        return _error(exc.status, str(exc))


def request_id(call: HookCall, new_id: Callable[[], str]) -> str:
    """The start request's id: from the provider's delivery id when there is one.

    A redelivered hook carries the same delivery id, so it names the same
    request, and instantiation (one Build per request id) starts no second
    build. Ids that are not label-safe or are too long are hashed.
    """
    delivery = (call.header(_PROVIDERS[call.hook].delivery_header) or "").strip()
    if not delivery:
        return f"{call.hook}-{new_id()}"[:63].rstrip("-_.")
    candidate = f"{call.hook}-{delivery}"
    if _REQUEST_ID_RE.fullmatch(candidate):
        return candidate
    digest = hashlib.sha256(delivery.encode()).hexdigest()[:40]
    return f"{call.hook}-{digest}"


def _start(
    call: HookCall, bc: Mapping[str, Any], wanted: _Build, new_id: Callable[[], str]
) -> HookResult:
    """The answer that starts a build: validated like any start request."""
    provider, revision = _PROVIDERS[call.hook], wanted.revision
    cause: dict[str, Any] = {"message": provider.cause_message}
    block: dict[str, Any] = {}
    if revision is not None:
        block["revision"] = revision.as_source_revision()
    cause[provider.cause_key] = block
    doc: dict[str, Any] = {"triggeredBy": [cause]}
    if revision is not None and revision.commit and _git_source(bc):
        doc["commit"] = revision.commit
    if wanted.env:
        doc["env"] = list(wanted.env)
    if wanted.build_args:
        doc["buildArgs"] = list(wanted.build_args)
    if wanted.no_cache is not None:
        doc["noCache"] = wanted.no_cache
    rid = request_id(call, new_id)
    try:
        # The annotation path's parser: the same rules for env names, sizes
        # and types, whichever way a build is asked for.
        request = parse_request(rid, json.dumps(doc))
    except RequestError as exc:
        raise _BadRequest(str(exc)) from None
    body: dict[str, Any] = {"status": "Success", "code": 200, "message": "build started"}
    if wanted.notes:
        body["warnings"] = list(wanted.notes)
    return HookResult(200, body, request)


# --- payload helpers ---------------------------------------------------------------------


def _media_type(call: HookCall) -> str:
    value = call.header("content-type") or ""
    return value.split(";", 1)[0].strip().lower()


def _json_object(
    data: bytes, what: str = "body", limits: Limits = PAYLOAD_LIMITS
) -> dict[str, Any]:
    try:
        doc = load_json(data, limits, what)
    except DocumentError as exc:
        raise _BadRequest(str(exc), status=_document_status(data, limits)) from None
    if not isinstance(doc, dict):
        raise _BadRequest(f"{what} must be a JSON object")
    return doc


def _document_status(data: bytes, limits: Limits) -> int:
    return 413 if len(data) > limits.max_bytes else 400


def _require_json(call: HookCall) -> dict[str, Any]:
    media = _media_type(call)
    if media != _JSON_TYPE:
        raise _BadRequest(
            f"unsupported Content-Type {media or '(none)'}: send {_JSON_TYPE}", status=415
        )
    return _json_object(call.body)


def _text(value: object, limit: int) -> str | None:
    if not isinstance(value, str) or not value:
        return None
    return value[:limit]


def _person(value: object) -> dict[str, str] | None:
    if not isinstance(value, Mapping):
        return None
    person = {key: text for key in ("name", "email") if (text := _text(value.get(key), _NAME_MAX))}
    return person or None


def _commit(value: object) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not _COMMIT_RE.fullmatch(value):
        raise _BadRequest("the commit must be a hexadecimal SHA of 7 to 64 digits")
    if set(value) == {"0"}:
        return None  # git's "no commit": the ref was deleted
    return value.lower()


def _branch(ref: str) -> str:
    return ref.removeprefix("refs/heads/")


def _git_source(bc: Mapping[str, Any]) -> Mapping[str, Any] | None:
    git = ((bc.get("spec") or {}).get("source") or {}).get("git")
    return git if isinstance(git, Mapping) else None


def configured_ref(bc: Mapping[str, Any]) -> str:
    """The branch the BuildConfig builds ("" for the repository's default)."""
    git = _git_source(bc) or {}
    return _branch(str(git.get("ref") or ""))


def ref_matches(event_ref: str, bc: Mapping[str, Any], default_branch: str | None) -> bool:
    """Whether a push to ``event_ref`` is a push to the branch the BuildConfig builds.

    An empty ``source.git.ref`` means the repository's default branch: the one
    the payload names, else ``master`` or ``main``.
    """
    pushed = _branch(event_ref)
    wanted = configured_ref(bc)
    if wanted:
        return pushed == wanted
    if default_branch:
        return pushed == _branch(default_branch)
    return pushed in _FALLBACK_DEFAULT_BRANCHES


def _skip(event_ref: str, bc: Mapping[str, Any]) -> HookResult:
    wanted = configured_ref(bc) or "the default branch"
    return _ok(f"skipping build: {shown(event_ref)} is not the configured branch ({shown(wanted)})")


def _verify_signature(call: HookCall, header: str, secret: bytes) -> None:
    """Check an ``sha256=<hex>`` HMAC of the raw body, when the sender sent one.

    A missing header is accepted: GitHub (and Bitbucket) send it only when a
    secret is set in the hook's settings on their side, and the URL secret
    already authenticated the call; a header that is present must be right.
    """
    given = call.header(header)
    if given is None:
        return
    expected = "sha256=" + hmac.new(secret, call.body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected.encode(), given.strip().lower().encode()):
        raise _BadRequest(f"{header} does not match the body signed with the secret", status=401)


# --- one skeleton for every provider ----------------------------------------------------------


@dataclass(frozen=True)
class _Build:
    """What a call asks to build, read from its payload."""

    revision: Revision | None = None
    env: Sequence[Any] | None = None
    build_args: Sequence[Any] | None = None
    no_cache: bool | None = None
    notes: Sequence[str] = ()


_Payload = Mapping[str, Any] | None
_Extract = Callable[[HookCall, Mapping[str, Any], Trigger, _Payload, str], "HookResult | _Build"]


@dataclass(frozen=True)
class _Provider:
    """How one provider's calls are read. The steps are the same for all (see
    :func:`_handle`); what differs is named here."""

    cause_key: str
    """The ``triggeredBy`` block the Build records."""
    cause_message: str
    """OpenShift's BuildTriggerCause*Msg, so ``describe`` and dashboards read the same."""
    delivery_header: str
    """The provider's delivery id, the same when it redelivers (see :func:`request_id`)."""
    extract: _Extract
    """Ref, commit and author out of the payload: what to build, or the answer."""
    authenticate: Callable[[HookCall, bytes], None] | None = None
    """Checks, in constant time, a signature or token sent beside the URL secret."""
    event_header: str | None = None
    """The header naming the event (as messages spell it); None: every call asks for a build."""
    pings: frozenset[str] = frozenset()
    pushes: frozenset[str] = frozenset()
    starts: str = ""
    """Which events start a build, for the answer to any other event."""
    read: Callable[[HookCall], _Payload] = _require_json
    """The body, parsed within bounds."""


def _handle(
    provider: _Provider,
    call: HookCall,
    bc: Mapping[str, Any],
    trigger: Trigger,
    secret: bytes,
    new_id: Callable[[], str],
) -> HookResult:
    """Authenticate, sort out the event, parse the body, extract, start: for any provider."""
    if provider.authenticate is not None:
        provider.authenticate(call, secret)
    event = ""
    if provider.event_header is not None:
        event = call.header(provider.event_header) or ""
        if not event:
            raise _BadRequest(f"missing {provider.event_header}")
        if event in provider.pings:
            return _ok("pong: the hook is set up; pushes will start builds")
        if event not in provider.pushes:
            return _ok(f"ignoring the {shown(event)} event: {provider.starts}")
    wanted = provider.extract(call, bc, trigger, provider.read(call), event)
    if isinstance(wanted, HookResult):
        return wanted
    return _start(call, bc, wanted, new_id)


def _signature(header: str) -> Callable[[HookCall, bytes], None]:
    def check(call: HookCall, secret: bytes) -> None:
        _verify_signature(call, header, secret)

    return check


def _event_ref(doc: Mapping[str, Any]) -> str:
    ref = doc.get("ref")
    if not isinstance(ref, str) or not ref:
        raise _BadRequest("the push event has no ref")
    return ref


def _string_at(doc: Mapping[str, Any], *path: str) -> str | None:
    """The string at ``doc[path[0]][path[1]]...``, or None where anything is missing or not."""
    value: object = doc
    for key in path:
        value = value.get(key) if isinstance(value, Mapping) else None
    return value if isinstance(value, str) else None


def _revision(
    commit: str | None,
    entry: Mapping[str, Any],
    person: Callable[[object], dict[str, str] | None] = _person,
    *,
    committer: bool = True,
) -> Revision:
    """A commit's revision from its payload entry; without a committer the author stands in
    (GitLab and Bitbucket report none; OpenShift does the same)."""
    author = person(entry.get("author"))
    return Revision(
        commit=commit,
        author=author,
        committer=person(entry.get("committer")) if committer else author,
        message=_text(entry.get("message"), _MESSAGE_MAX),
    )


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


# --- GitHub ---------------------------------------------------------------------------------


def _github_body(call: HookCall) -> dict[str, Any]:
    if _media_type(call) != _FORM_TYPE:
        return _require_json(call)
    # GitHub's other content type: the JSON document in the `payload` field.
    try:
        form = parse_qs(call.body.decode(), strict_parsing=True, max_num_fields=_MAX_FORM_FIELDS)
    except (UnicodeDecodeError, ValueError):
        raise _BadRequest("body is not a form") from None
    payload = form.get("payload")
    if not payload:
        raise _BadRequest("the form has no payload field")
    return _json_object(payload[0].encode(), "payload")


def _github(
    call: HookCall, bc: Mapping[str, Any], trigger: Trigger, doc: _Payload, event: str
) -> HookResult | _Build:
    doc = doc or {}
    ref = _event_ref(doc)
    if doc.get("deleted") is True:
        return _ok(f"skipping build: {shown(ref)} was deleted")
    if not ref_matches(ref, bc, _string_at(doc, "repository", "default_branch")):
        return _skip(ref, bc)
    head = _mapping(doc.get("head_commit"))
    commit = _commit(head.get("id") or doc.get("after"))
    if commit is None:
        return _ok(f"skipping build: {shown(ref)} points at no commit")
    return _Build(_revision(commit, head))


# --- GitLab ---------------------------------------------------------------------------------


def _gitlab_token(call: HookCall, secret: bytes) -> None:
    token = call.header("x-gitlab-token")
    if token is not None and not hmac.compare_digest(token.encode(), secret):
        raise _BadRequest("X-Gitlab-Token does not match the secret", status=401)


def _gitlab(
    call: HookCall, bc: Mapping[str, Any], trigger: Trigger, doc: _Payload, event: str
) -> HookResult | _Build:
    doc = doc or {}
    ref = _event_ref(doc)
    if not ref_matches(ref, bc, _string_at(doc, "project", "default_branch")):
        return _skip(ref, bc)
    commits = [c for c in doc.get("commits") or [] if isinstance(c, Mapping)]
    # The pushed head is checkout_sha (null when the branch was deleted), else
    # `after`, else the newest commit listed (GitLab lists them oldest first).
    newest = commits[-1].get("id") if commits else None
    commit = _commit(doc.get("checkout_sha") or doc.get("after") or newest)
    if commit is None:
        return _ok(f"skipping build: {shown(ref)} was deleted")
    entry = next((c for c in commits if str(c.get("id") or "").lower() == commit), {})
    return _Build(_revision(commit, entry, committer=False))


# --- Bitbucket ------------------------------------------------------------------------------


def _split_raw_author(raw: str) -> tuple[str, str] | None:
    """``Name <email>`` as (name, email), in one pass (a regex here backtracked
    quadratically on a long run of spaces)."""
    text = raw.strip()
    if not text.endswith(">"):
        return None
    name, bracket, email = text[:-1].partition("<")
    if not bracket or ">" in email:
        return None
    return name.strip(), email


def _raw_person(value: object) -> dict[str, str] | None:
    """Bitbucket Cloud's ``{"raw": "Name <email>", "user": {"display_name"}}``."""
    if not isinstance(value, Mapping):
        return None
    raw = value.get("raw")
    if isinstance(raw, str) and (split := _split_raw_author(raw)) is not None:
        person = {"name": split[0][:_NAME_MAX], "email": split[1][:_NAME_MAX]}
        return {k: v for k, v in person.items() if v} or None
    user = value.get("user")
    if isinstance(user, Mapping) and (name := _text(user.get("display_name"), _NAME_MAX)):
        return {"name": name}
    return None


def _bitbucket(
    call: HookCall, bc: Mapping[str, Any], trigger: Trigger, doc: _Payload, event: str
) -> HookResult | _Build:
    doc = doc or {}
    if event == "repo:push":
        return _bitbucket_cloud(bc, doc)
    return _bitbucket_server(bc, doc)


def _bitbucket_cloud(bc: Mapping[str, Any], doc: Mapping[str, Any]) -> HookResult | _Build:
    push = doc.get("push")
    changes = push.get("changes") if isinstance(push, Mapping) else None
    if not isinstance(changes, list) or not changes:
        raise _BadRequest("the push event has no push.changes")
    default = _string_at(doc, "repository", "mainbranch", "name")
    pushed: list[str] = []
    # One push can move several branches: the newest change to the configured one.
    for change in reversed(changes):
        new = change.get("new") if isinstance(change, Mapping) else None
        if not isinstance(new, Mapping) or new.get("type", "branch") != "branch":
            continue  # a deleted branch (new is null) or a tag
        name = str(new.get("name") or "")
        pushed.append(name)
        if not ref_matches(name, bc, default):
            continue
        target = _mapping(new.get("target"))
        commit = _commit(target.get("hash"))
        if commit is None:
            continue
        return _Build(_revision(commit, target, _raw_person, committer=False))
    return _skip(", ".join(pushed) or "(no branch)", bc)


def _bitbucket_server(bc: Mapping[str, Any], doc: Mapping[str, Any]) -> HookResult | _Build:
    changes = doc.get("changes")
    if not isinstance(changes, list) or not changes:
        raise _BadRequest("the refs_changed event has no changes")
    pushed: list[str] = []
    for change in reversed(changes):
        if not isinstance(change, Mapping) or change.get("type") == "DELETE":
            continue
        ref = _mapping(change.get("ref"))
        if ref.get("type", "BRANCH") != "BRANCH":
            continue
        name = str(ref.get("displayId") or ref.get("id") or "")
        pushed.append(name)
        if not ref_matches(name, bc, None):
            continue
        commit = _commit(change.get("toHash"))
        if commit is None:
            continue
        return _Build(Revision(commit=commit))
    return _skip(", ".join(pushed) or "(no branch)", bc)


# --- Generic --------------------------------------------------------------------------------


def _generic_doc(call: HookCall) -> Mapping[str, Any] | None:
    if not call.body.strip():
        return None
    media = _media_type(call)
    if media == _JSON_TYPE:
        return _json_object(call.body, limits=GENERIC_LIMITS)
    if media in _YAML_TYPES:
        try:
            doc = load_yaml(call.body, GENERIC_LIMITS)
        except DocumentError as exc:
            raise _BadRequest(
                str(exc), status=_document_status(call.body, GENERIC_LIMITS)
            ) from None
        if doc is None:
            return None
        if not isinstance(doc, dict):
            raise _BadRequest("body must be a mapping")
        return doc
    raise _BadRequest(
        f"unsupported Content-Type {media or '(none)'}: send {_JSON_TYPE} or application/yaml",
        status=415,
    )


def _generic_revision(git: Mapping[str, Any]) -> Revision:
    return _revision(_commit(git.get("commit")), git)


def _generic(
    call: HookCall, bc: Mapping[str, Any], trigger: Trigger, doc: _Payload, event: str
) -> HookResult | _Build:
    if doc is None:
        # No body: build what the BuildConfig names, as `start-build` would.
        return _Build()
    notes: list[str] = []
    revision: Revision | None = None
    git = doc.get("git")
    if git is not None and not isinstance(git, Mapping):
        raise _BadRequest("git must be an object")
    if git and _git_source(bc) is None:
        notes.append("git ignored: the BuildConfig has no Git source")
    elif git:
        refs = git.get("refs")
        if refs is not None:
            if not isinstance(refs, list) or not all(isinstance(r, Mapping) for r in refs):
                raise _BadRequest("git.refs must be a list of objects")
            chosen = next((r for r in refs if ref_matches(str(r.get("ref") or ""), bc, None)), None)
            if chosen is None:
                names = shown(", ".join(str(r.get("ref")) for r in refs[:10])) or "(none)"
                return _ok(f"skipping build: none of the refs ({names}) is the configured branch")
            revision = _generic_revision(chosen)
        else:
            ref = git.get("ref")
            # No ref: the caller names a commit (or nothing) on the configured branch.
            if ref is not None and not isinstance(ref, str):
                raise _BadRequest("git.ref must be a string")
            if ref and not ref_matches(ref, bc, None):
                return _skip(ref, bc)
            revision = _generic_revision(git)
    env = doc.get("env")
    options = doc.get("dockerStrategyOptions")
    if options is not None and not isinstance(options, Mapping):
        raise _BadRequest("dockerStrategyOptions must be an object")
    options = options or {}
    build_args, no_cache = options.get("buildArgs"), options.get("noCache")
    if not trigger.allow_env:
        if env:
            notes.append("env ignored: the Generic trigger does not set allowEnv")
        if build_args or no_cache is not None:
            notes.append("dockerStrategyOptions ignored: the Generic trigger does not set allowEnv")
        env, build_args, no_cache = None, None, None
    if no_cache is not None and not isinstance(no_cache, bool):
        raise _BadRequest("dockerStrategyOptions.noCache must be true or false")
    for what, value in (("env", env), ("dockerStrategyOptions.buildArgs", build_args)):
        if value is not None and not isinstance(value, list):
            raise _BadRequest(f"{what} must be a list of {{name, value}} objects")
    return _Build(revision, env=env, build_args=build_args, no_cache=no_cache, notes=notes)


# --- the table ------------------------------------------------------------------------------

_PROVIDERS: dict[str, _Provider] = {
    GITHUB: _Provider(
        cause_key="githubWebHook",
        cause_message="GitHub WebHook",
        delivery_header="x-github-delivery",
        extract=_github,
        authenticate=_signature("X-Hub-Signature-256"),
        event_header="X-GitHub-Event",
        pings=frozenset({"ping"}),
        pushes=frozenset({"push"}),
        starts="only push starts a build",
        read=_github_body,
    ),
    GITLAB: _Provider(
        cause_key="gitlabWebHook",
        cause_message="GitLab WebHook",
        delivery_header="x-gitlab-event-uuid",
        extract=_gitlab,
        authenticate=_gitlab_token,
        event_header="X-Gitlab-Event",
        pushes=frozenset({"Push Hook"}),
        starts="only Push Hook starts a build",
    ),
    BITBUCKET: _Provider(
        cause_key="bitbucketWebHook",
        cause_message="Bitbucket WebHook",
        delivery_header="x-request-uuid",
        extract=_bitbucket,
        # Bitbucket Cloud and Data Center sign with X-Hub-Signature when the hook has a secret.
        authenticate=_signature("X-Hub-Signature"),
        event_header="X-Event-Key",
        pings=frozenset({"diagnostics:ping"}),
        pushes=frozenset({"repo:push", "repo:refs_changed"}),
        starts="only pushes start a build",
    ),
    GENERIC: _Provider(
        cause_key="genericWebHook",
        cause_message="Generic WebHook",
        # Nothing standard for hand-rolled calls: the IETF draft's idempotency header.
        delivery_header="idempotency-key",
        extract=_generic,
        read=_generic_doc,
    ),
}


# --- rate limiting --------------------------------------------------------------------------


@dataclass
class _Bucket:
    tokens: float
    stamp: float


class RateLimiter:
    """A token bucket per source address, with a bounded number of addresses.

    The webhook path is unauthenticated until the secret is checked, and each
    call that passes the cheap checks costs API reads; the bucket bounds what
    one address can make the operator do. The least recently seen addresses
    are forgotten first (a forgotten address starts again with a full bucket,
    which is the worst it can gain).
    """

    def __init__(
        self, per_minute: float = 30.0, burst: int = 10, max_addresses: int = 4096
    ) -> None:
        self.rate = per_minute / 60.0
        self.burst = float(burst)
        self.max_addresses = max_addresses
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, address: str, now: float) -> tuple[bool, int]:
        """Spend a token of ``address`` at monotonic time ``now``.

        Returns (allowed, seconds to wait before the next call is allowed).
        """
        bucket = self._buckets.pop(address, None)
        if bucket is None:
            bucket = _Bucket(self.burst, now)
        else:
            elapsed = max(0.0, now - bucket.stamp)
            bucket = _Bucket(min(self.burst, bucket.tokens + elapsed * self.rate), now)
        self._buckets[address] = bucket  # most recently seen last
        while len(self._buckets) > self.max_addresses:
            self._buckets.popitem(last=False)
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return True, 0
        return False, max(1, math.ceil((1.0 - bucket.tokens) / self.rate))


def too_many(retry_after: int) -> HookResult:
    return HookResult(
        429,
        {"status": "Failure", "code": 429, "message": "too many webhook calls from this address"},
        retry_after=retry_after,
    )


# --- URLs for the CLI -----------------------------------------------------------------------


@dataclass(frozen=True)
class HookUrl:
    """One webhook trigger's URL (secret included, by OpenShift's design)."""

    hook: str
    url: str
    secret_known: bool
    """False when the Secret could not be read; the URL then has ``<secret>``."""
    allow_env: bool = False


def hook_urls(
    bc: Mapping[str, Any],
    secrets: Mapping[str, bytes | None],
    base: str,
    hooks: Iterable[str] = tuple(HOOK_TYPES),
) -> list[HookUrl]:
    """The URL of each webhook trigger of ``bc`` of the ``hooks`` types, in spec order."""
    metadata = bc.get("metadata") or {}
    namespace, name = str(metadata.get("namespace")), str(metadata.get("name"))
    wanted = set(hooks)
    found: list[HookUrl] = []
    for trigger in (bc.get("spec") or {}).get("triggers") or []:
        if not isinstance(trigger, Mapping):
            continue
        hook = next((h for h, kind in HOOK_TYPES.items() if kind == trigger.get("type")), None)
        if hook is None or hook not in wanted:
            continue
        block = trigger.get(hook)
        parsed = Trigger(block if isinstance(block, Mapping) else {})
        value: str | None = None
        if parsed.secret_name:
            raw = secrets.get(parsed.secret_name)
            value = raw.decode(errors="replace") if raw else None
        elif parsed.inline_secret:
            value = parsed.inline_secret
        path = (
            webhook_path(namespace, name, value, hook)
            if value
            else PATH_TEMPLATE.format(namespace=namespace, name=name, secret=UNKNOWN, hook=hook)
        )
        found.append(HookUrl(hook, base.rstrip("/") + path, value is not None, parsed.allow_env))
    return found
