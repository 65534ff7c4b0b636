"""Image verification: policies, key configuration, the verifier's cache and retry schedule,
the tag's Verified condition and verified rollouts (the workload controller's decisions)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from headwater.config import ConfigError, config_from_mapping
from headwater.imports.keys import KeyProblem, KeyStore, PublicKey, load_public_key
from headwater.imports.tagfeed import TagImage, tag_images
from headwater.imports.throttle import HostBackoff, HostBuckets
from headwater.imports.verification import (
    MAX_KEYS,
    RETRY_MAX_SECONDS,
    VERIFIED,
    Policy,
    PolicyError,
    Verdict,
    combine,
    retry_delay,
    rollout_requirements,
    tag_policies,
    tag_policy,
    verified_conditions,
)
from headwater.imports.verifier import FetchFailed, Signatures, Verifier
from headwater.workloads.controller import REASON_UNVERIFIED, REASON_UPDATED, WorkloadRef
from headwater.workloads.triggers import TriggerError, parse_triggers, plan_workload
from tests.unit.test_workload_triggers import (
    NAME_PATH,
    NEW,
    OLD,
    FakeKube,
    annotation,
    controller,
    lookup_of,
    reasons,
    tag_image,
    trigger_json,
    workload,
)

DIGEST = "sha256:" + "b" * 64
REF = f"registry.local/shop/web@{DIGEST}"
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def pem_of(key: Any) -> str:
    return str(
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


EC_KEY = ec.generate_private_key(ec.SECP256R1())
OTHER_KEY = ec.generate_private_key(ec.SECP256R1())


# --- policies -----------------------------------------------------------------------------


def test_tag_policy_parses_keys_and_required() -> None:
    policy = tag_policy({"name": "x", "verification": {"keys": ["headwater", "release"]}})
    assert policy == Policy(("headwater", "release"), required=False)
    assert tag_policy({"name": "x"}) is None
    assert tag_policy({"verification": {"keys": ["a", "a"], "required": True}}) == Policy(
        ("a",), True
    )


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({}, "non-empty list"),
        ({"keys": []}, "non-empty list"),
        ({"keys": ["UPPER"]}, "not a key name"),
        ({"keys": ["ok"], "required": "yes"}, "expected true or false"),
        ({"keys": [f"k{i}" for i in range(MAX_KEYS + 1)]}, f"at most {MAX_KEYS}"),
        ("headwater", "must be an object"),
    ],
)
def test_tag_policy_errors(value: Any, message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        tag_policy({"verification": value})


def test_tag_policies_keep_errors_per_tag() -> None:
    spec = {
        "tags": [
            {"name": "a", "verification": {"keys": ["headwater"]}},
            {"name": "b", "verification": {"keys": []}},
            {"name": "c"},
        ]
    }
    found = tag_policies(spec)
    assert found["a"] == Policy(("headwater",))
    assert isinstance(found["b"], PolicyError)
    assert "c" not in found


def test_tag_feed_carries_the_policy_and_an_invalid_one_blocks() -> None:
    body = {
        "metadata": {"namespace": "shop", "name": "web"},
        "spec": {
            "tags": [
                {"name": "a", "verification": {"keys": ["headwater"], "required": True}},
                {"name": "b", "verification": {"keys": "nope", "required": False}},
            ]
        },
        "status": {
            "tags": [
                {"tag": t, "items": [{"image": DIGEST, "dockerImageReference": REF}]}
                for t in ("a", "b")
            ]
        },
    }
    by_tag = {i.tag: i for i in tag_images(body, None)}
    assert by_tag["a"].verification == Policy(("headwater",), True)
    # Fail closed: an unusable policy requires verification against no key.
    assert by_tag["b"].verification == Policy((), True)


def test_rollout_requirements_combine_trigger_and_tag() -> None:
    assert rollout_requirements((), None) == ()
    assert rollout_requirements((), Policy(("a",), required=False)) == ()
    assert rollout_requirements((), Policy(("a",), required=True)) == (("a",),)
    assert rollout_requirements(("b",), Policy(("a",), required=True)) == (("b",), ("a",))
    assert rollout_requirements(("a",), Policy(("a",), required=True)) == (("a",),)


def test_combine_prefers_a_verified_key_then_the_most_telling_failure() -> None:
    ok = Verdict("True", "Verified", "signed by key a", "a")
    none = Verdict("False", "NoSignature", "key b: no signature")
    other = Verdict("False", "SignatureMismatch", "key c: signed by another key")
    assert combine({"a": ok, "b": none}, ["b", "a"], REF) == ok
    got = combine({"b": none, "c": other}, ["b", "c"], REF)
    assert (got.status, got.reason) == ("False", "SignatureMismatch")
    assert "key b" in got.message
    assert "key c" in got.message
    assert combine({}, ["a"], REF).status == "Unknown"


def test_verified_condition_is_stable_and_moves_on_change() -> None:
    verdict = Verdict("False", "NoSignature", "key headwater: no signature")
    first = verified_conditions({"conditions": [{"type": "ImportSuccess"}]}, verdict, 1, NOW)
    assert [c["type"] for c in first] == ["ImportSuccess", VERIFIED]
    later = datetime(2026, 1, 2, tzinfo=UTC)
    assert verified_conditions({"conditions": first}, verdict, 1, later) == first
    signed = Verdict("True", "Verified", "signed by key headwater", "headwater")
    moved = verified_conditions({"conditions": first}, signed, 1, later)
    assert moved[-1]["status"] == "True"
    assert moved[-1]["lastTransitionTime"] != first[-1]["lastTransitionTime"]
    assert verified_conditions({"conditions": moved}, None, 1, later) == [{"type": "ImportSuccess"}]


def test_retry_delay_is_bounded() -> None:
    assert retry_delay(1) == 5.0
    assert retry_delay(2) == 10.0
    assert retry_delay(1000) == RETRY_MAX_SECONDS


# --- trigger annotation option ------------------------------------------------------------


def test_trigger_verify_option() -> None:
    value = annotation(trigger_json(verify={"keys": ["headwater", "release"]}))
    [trigger] = parse_triggers(value, "Deployment", "shop")
    assert trigger.verify_keys == ("headwater", "release")
    [plain] = parse_triggers(annotation(trigger_json()), "Deployment", "shop")
    assert plain.verify_keys == ()


@pytest.mark.parametrize(
    ("verify", "message"),
    [
        (True, "expected an object"),
        ({"keys": []}, "non-empty list"),
        ({"keys": ["Bad Name"]}, "not a key name"),
        ({"keys": ["a"], "key": "b"}, "unknown field"),
        ({"keys": [f"k{i}" for i in range(MAX_KEYS + 1)]}, f"at most {MAX_KEYS}"),
    ],
)
def test_trigger_verify_option_errors(verify: Any, message: str) -> None:
    with pytest.raises(TriggerError, match=message):
        parse_triggers(annotation(trigger_json(verify=verify)), "Deployment", "shop")


def test_plan_with_a_gate_keeps_unverified_images() -> None:
    body = workload(
        value="", containers=[{"name": "web", "image": OLD}, {"name": "side", "image": OLD}]
    )
    triggers = parse_triggers(
        annotation(
            trigger_json(verify={"keys": ["headwater"]}),
            trigger_json("side:latest", 'spec.template.spec.containers[?(@.name=="side")].image'),
        ),
        "Deployment",
        "shop",
    )
    side = tag_image(stream="side")
    plan = plan_workload(
        body,
        triggers,
        lookup_of(tag_image(), side),
        gate=lambda t, image: "NoSignature" if t.verify_keys else None,
    )
    assert [c.container for c in plan.changes] == ["side"]
    [(trigger, image, why)] = plan.unverified
    assert (trigger.stream, image.image, why) == ("web", DIGEST, "NoSignature")
    assert plan.apply is not None
    containers = plan.apply["spec"]["template"]["spec"]["containers"]
    assert containers == [{"name": "side", "image": side.pull_spec}]


def test_plan_gate_is_not_asked_when_the_image_already_matches() -> None:
    body = workload(value="", containers=[{"name": "web", "image": NEW}])
    triggers = parse_triggers(
        annotation(trigger_json(verify={"keys": ["headwater"]})), "Deployment", "shop"
    )
    asked: list[str] = []

    def gate(t: Any, image: TagImage) -> str | None:
        asked.append(image.image)
        return "no"

    plan = plan_workload(body, triggers, lookup_of(tag_image()), gate=gate)
    assert plan.unverified == ()
    assert plan.apply is None
    assert asked == []


# --- key configuration --------------------------------------------------------------------


def test_config_verification_keys() -> None:
    config = config_from_mapping(
        {
            "verificationKeys": {
                "release": {"publicKey": pem_of(EC_KEY)},
                "team-a": {"secret": "team-a-cosign"},
                "ops": {"configMap": "ops-keys", "key": "ops.pub"},
            }
        }
    )
    by_name = {k.name: k for k in config.verification_keys}
    assert by_name["team-a"].secret == "team-a-cosign"
    assert by_name["team-a"].key == "cosign.pub"
    assert (by_name["ops"].config_map, by_name["ops"].key) == ("ops-keys", "ops.pub")


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"headwater": {"secret": "x"}}, "built in"),
        ({"Bad": {"secret": "x"}}, "key names"),
        ({"a": {"secret": "x", "configMap": "y"}}, "exactly one"),
        ({"a": {}}, "exactly one"),
        ({"a": {"secret": "x", "extra": 1}}, "unknown key"),
        ({"a": {"secret": "x", "key": "a/b"}}, "data key"),
    ],
)
def test_config_verification_keys_errors(entry: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        config_from_mapping({"verificationKeys": entry})


def test_bad_key_material_is_an_answer_not_a_crash() -> None:
    assert isinstance(load_public_key("k", "not a pem"), KeyProblem)
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    problem = load_public_key("k", pem_of(rsa_key))
    assert isinstance(problem, KeyProblem)
    assert "ECDSA" in problem.message
    good = load_public_key("k", pem_of(EC_KEY))
    assert isinstance(good, PublicKey)
    assert good.fingerprint.startswith("sha256:")


async def test_key_store_inline_unknown_and_secret() -> None:
    class Kube:
        def __init__(self) -> None:
            self.gets = 0

        async def get(self, res: Any, name: str, namespace: str) -> Any:
            self.gets += 1
            assert namespace == "headwater-system"  # never another namespace
            from tests.unit.test_workload_triggers import api_error

            raise api_error(404)

    kube = Kube()
    config = config_from_mapping(
        {"verificationKeys": {"release": {"publicKey": pem_of(EC_KEY)}, "bad": {"publicKey": "x"}}}
    )
    store = KeyStore(kube, config)  # type: ignore[arg-type]
    assert isinstance(await store.get("release"), PublicKey)
    bad = await store.get("bad")
    assert isinstance(bad, KeyProblem)
    assert bad.reason == "InvalidKey"
    unknown = await store.get("nope")
    assert isinstance(unknown, KeyProblem)
    assert unknown.reason == "KeyNotFound"
    missing = await store.get("headwater")
    assert isinstance(missing, KeyProblem)
    assert "headwater-signing-key not found" in missing.message
    await store.get("headwater")
    assert kube.gets == 1  # kept for a while


# --- the verifier ---------------------------------------------------------------------------


class Registry:
    """Signatures per digest: each one the name of the key that made it."""

    def __init__(self) -> None:
        self.signed: dict[str, list[str]] = {}
        self.fail: FetchFailed | None = None
        self.fetches = 0
        self.insecure: list[bool] = []

    async def fetch(
        self, reference: str, digest: str, namespace: str, insecure: bool
    ) -> Signatures | FetchFailed:
        self.fetches += 1
        self.insecure.append(insecure)
        if self.fail is not None:
            return self.fail
        return Signatures(tuple(self.signed.get(digest, [])))

    @staticmethod
    def check(signature: object, key: PublicKey, digest: str) -> bool:
        return signature == key.name


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def verifier_for(registry: Registry, clock: Clock, **kw: Any) -> Verifier:
    config = config_from_mapping(
        {
            "verificationKeys": {
                "release": {"publicKey": pem_of(EC_KEY)},
                "other": {"publicKey": pem_of(OTHER_KEY)},
            }
        }
    )
    store = KeyStore(None, config, monotonic=clock)  # type: ignore[arg-type]
    return Verifier(store, registry.fetch, registry.check, monotonic=clock, **kw)


async def test_verified_answers_cost_no_further_requests() -> None:
    registry, clock = Registry(), Clock()
    registry.signed[DIGEST] = ["release"]
    verifier = verifier_for(registry, clock)
    verdict = await verifier.verify(REF, DIGEST, ["release"])
    assert (verdict.status, verdict.reason, verdict.key) == ("True", "Verified", "release")
    for _ in range(5):
        clock.now += 10_000
        assert (await verifier.verify(REF, DIGEST, ["release"])).verified
    assert registry.fetches == 1
    assert verifier.next_check(DIGEST, ["release"]) is None


async def test_unsigned_then_signed_is_found_on_the_backoff_schedule() -> None:
    registry, clock = Registry(), Clock()
    verifier = verifier_for(registry, clock)
    heard: list[str] = []

    async def listener(digest: str) -> None:
        heard.append(digest)

    verifier.subscribe(listener)
    first = await verifier.verify(REF, DIGEST, ["release"])
    assert (first.status, first.reason) == ("False", "NoSignature")
    assert "key release" in first.message
    assert verifier.next_check(DIGEST, ["release"]) == 5.0
    registry.signed[DIGEST] = ["release"]
    # Not due yet: answered from the cache, no request.
    assert not (await verifier.verify(REF, DIGEST, ["release"])).verified
    assert registry.fetches == 1
    clock.now += 5.0
    assert (await verifier.verify(REF, DIGEST, ["release"])).verified
    assert registry.fetches == 2
    assert heard == [DIGEST, DIGEST]  # first answer, then the change


async def test_backoff_grows_and_recheck_looks_at_once() -> None:
    registry, clock = Registry(), Clock()
    verifier = verifier_for(registry, clock)
    await verifier.verify(REF, DIGEST, ["release"])
    clock.now += 5.0
    await verifier.verify(REF, DIGEST, ["release"])
    assert verifier.next_check(DIGEST, ["release"]) == 10.0
    registry.signed[DIGEST] = ["release"]
    verifier.recheck(DIGEST)  # headwater import-image
    assert (await verifier.verify(REF, DIGEST, ["release"])).verified
    assert registry.fetches == 3


async def test_wrong_key_is_a_mismatch_and_the_right_one_verifies() -> None:
    registry, clock = Registry(), Clock()
    registry.signed[DIGEST] = ["other"]
    verifier = verifier_for(registry, clock)
    wrong = await verifier.verify(REF, DIGEST, ["release"])
    assert (wrong.status, wrong.reason) == ("False", "SignatureMismatch")
    either = await verifier.verify(REF, DIGEST, ["release", "other"])
    assert either.verified
    assert either.key == "other"


async def test_registry_errors_are_unknown_and_back_the_host_off() -> None:
    registry, clock = Registry(), Clock()
    registry.fail = FetchFailed("503 Service Unavailable", reason="ServerError")
    backoff = HostBackoff(clock=clock)
    verifier = verifier_for(registry, clock, backoff=backoff)
    verdict = await verifier.verify(REF, DIGEST, ["release"])
    assert (verdict.status, verdict.reason) == ("Unknown", "RegistryError")
    assert backoff.remaining("registry.local") > 0
    verifier.recheck(DIGEST)
    again = await verifier.verify(REF, DIGEST, ["release"])
    assert again.reason == "RegistryError"
    assert registry.fetches == 1


async def test_key_problems_are_answers() -> None:
    registry, clock = Registry(), Clock()
    verifier = verifier_for(registry, clock)
    verdict = await verifier.verify(REF, DIGEST, ["missing"])
    assert (verdict.status, verdict.reason) == ("False", "KeyNotFound")
    assert "missing" in verdict.message
    assert registry.fetches == 0


async def test_fetches_take_a_token_of_the_hosts_bucket() -> None:
    registry, clock = Registry(), Clock()
    buckets = HostBuckets(60)
    verifier = verifier_for(registry, clock, buckets=buckets)
    before = buckets.bucket("registry.local", "now").tokens
    await verifier.verify(REF, DIGEST, ["release"], lane="now")
    assert buckets.bucket("registry.local", "now").tokens == pytest.approx(before - 1, abs=0.1)


async def test_signature_fetches_are_counted_by_host_and_result() -> None:
    from headwater.metrics import REGISTRY, registry_label

    def count(result: str) -> float:
        labels = {"registry": registry_label("registry.local"), "result": result}
        return REGISTRY.get_sample_value("headwater_signature_fetches_total", labels) or 0.0

    before = {r: count(r) for r in ("signed", "unsigned", "failed")}
    registry, clock = Registry(), Clock()
    verifier = verifier_for(registry, clock)
    await verifier.verify(REF, DIGEST, ["release"])  # unsigned
    registry.signed[DIGEST] = ["release"]
    verifier.recheck(DIGEST)
    await verifier.verify(REF, DIGEST, ["release"])  # signed
    registry.fail = FetchFailed("no answer", reason="Unreachable")
    await verifier.verify(REF, "sha256:" + "f" * 64, ["release"])  # failed
    assert {r: count(r) - before[r] for r in before} == {"signed": 1, "unsigned": 1, "failed": 1}


async def test_concurrent_callers_share_one_fetch() -> None:
    registry, clock = Registry(), Clock()
    registry.signed[DIGEST] = ["release"]
    gate = asyncio.Event()
    plain = registry.fetch

    async def slow(
        reference: str, digest: str, namespace: str, insecure: bool
    ) -> Signatures | FetchFailed:
        await gate.wait()
        return await plain(reference, digest, namespace, insecure)

    verifier = verifier_for(registry, clock)
    verifier.fetch = slow
    tasks = [asyncio.create_task(verifier.verify(REF, DIGEST, ["release"])) for _ in range(3)]
    await asyncio.sleep(0)
    gate.set()
    assert all(v.verified for v in await asyncio.gather(*tasks))
    assert registry.fetches == 1


# --- verified rollouts (the controller) --------------------------------------------------


async def test_unverified_image_does_not_roll_out_then_does_once_signed() -> None:
    registry, clock = Registry(), Clock()
    verifier = verifier_for(registry, clock)
    kube = FakeKube()
    triggers, _ = controller(kube, tag_image())
    triggers.clock = lambda: datetime.now(UTC)
    triggers.verifier = verifier
    verifier.subscribe(triggers.on_verdict)
    body = workload(value=annotation(trigger_json(verify={"keys": ["release"]})))
    kube.objects[("shop", "web")] = body
    ref = WorkloadRef("Deployment", "shop", "web")
    await triggers.on_event("ADDED", body)
    await triggers.settle()
    assert kube.patches == []
    assert reasons(kube) == [REASON_UNVERIFIED]
    message = str(kube.events[0].message)
    assert "NoSignature" in message
    assert "key release" in message
    assert NAME_PATH in message
    # A retry is planned on the verifier's schedule (level-based: it re-plans then).
    assert triggers.queue.planned(ref) is not None
    # The same state again: no second Event.
    await triggers.reconcile(ref)
    assert reasons(kube) == [REASON_UNVERIFIED]
    # Signed later: the next check finds it, and the workload rolls out.
    registry.signed[DIGEST] = ["release"]
    clock.now += 5.0
    await triggers.reconcile(ref)
    await triggers.settle()
    assert len(kube.patches) == 1
    containers = kube.patches[0][2]["spec"]["template"]["spec"]["containers"]
    assert containers == [{"name": "web", "image": NEW}]
    assert REASON_UPDATED in reasons(kube)


async def test_tag_policy_required_gates_triggers_without_the_option() -> None:
    registry, clock = Registry(), Clock()
    registry.signed[DIGEST] = ["other"]
    verifier = verifier_for(registry, clock)
    kube = FakeKube()
    image = tag_image(verification=Policy(("release",), required=True))
    triggers, _ = controller(kube, image)
    triggers.verifier = verifier
    await triggers.on_event("ADDED", workload(value=annotation(trigger_json())))
    await triggers.settle()
    assert kube.patches == []
    assert reasons(kube) == [REASON_UNVERIFIED]
    assert "SignatureMismatch" in str(kube.events[0].message)


async def test_report_only_policy_does_not_gate() -> None:
    registry, clock = Registry(), Clock()
    verifier = verifier_for(registry, clock)
    kube = FakeKube()
    triggers, _ = controller(kube, tag_image(verification=Policy(("release",), required=False)))
    triggers.verifier = verifier
    await triggers.on_event("ADDED", workload(value=annotation(trigger_json())))
    await triggers.settle()
    assert len(kube.patches) == 1
    assert registry.fetches == 0


async def test_verify_option_without_a_verifier_refuses() -> None:
    kube = FakeKube()
    triggers, _ = controller(kube, tag_image())
    body = workload(value=annotation(trigger_json(verify={"keys": ["release"]})))
    await triggers.on_event("ADDED", body)
    await triggers.settle()
    assert kube.patches == []
    assert reasons(kube) == [REASON_UNVERIFIED]


# --- cosign's formats (headwater.registry.cosign) through the verifier's check ----------


def signed_layer(signer: Any, digest: str = DIGEST) -> Any:
    from headwater.registry import cosign

    payload = cosign.simple_signing_payload("registry.local/shop/web", digest)
    layer = cosign.signature_layer(payload, cosign.SigningKey(signer).sign(payload))
    fetched = cosign.FetchedLayer(layer.digest, layer.media_type, layer.annotations, layer.data)
    return cosign.FetchedManifest(
        "registry.local/shop/web:sha256-b.sig", "sha256:x", (fetched,), ()
    )


def test_cosign_check_accepts_the_right_key_only() -> None:
    from headwater.imports.signatures import cosign_check

    key = load_public_key("release", pem_of(EC_KEY))
    other = load_public_key("other", pem_of(OTHER_KEY))
    assert isinstance(key, PublicKey)
    assert isinstance(other, PublicKey)
    assert cosign_check(signed_layer(EC_KEY), key, DIGEST)
    assert not cosign_check(signed_layer(EC_KEY), other, DIGEST)
    # A signature of another image does not verify this one.
    assert not cosign_check(signed_layer(EC_KEY, "sha256:" + "c" * 64), key, DIGEST)
    assert not cosign_check("garbage", key, DIGEST)


# --- the ImageStream side: the tag's Verified condition -------------------------------------


def verified_stream(policy: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "image.headwater.dev/v1",
        "kind": "ImageStream",
        "metadata": {"name": "web", "namespace": "shop", "generation": 1},
        # A build output tag: no `from`, only the policy.
        "spec": {"tags": [{"name": "latest", "verification": policy}]},
        "status": {
            "tags": [
                {
                    "tag": "latest",
                    "items": [
                        {
                            "image": DIGEST,
                            "dockerImageReference": REF,
                            "generation": 1,
                            "created": "2026-01-01T00:00:00Z",
                        }
                    ],
                }
            ]
        },
    }


def verified_of(kube: Any) -> dict[str, Any] | None:
    [body] = [b for key, b in kube.objects.items() if key[2] == "web" and "status" in b]
    [entry] = body["status"]["tags"]
    found = [c for c in entry.get("conditions") or [] if c["type"] == VERIFIED]
    return found[0] if found else None


async def test_stream_tag_gets_verified_condition_and_steady_state_is_free() -> None:
    from headwater.config import Config
    from headwater.imports.model import StreamRef
    from headwater.imports.runner import ImportRunner
    from headwater.registry.client import RegistryClient
    from tests.fakekube import FakeKube as StreamKube
    from tests.fakekube import converged, running

    kube = StreamKube()
    body = kube.add(verified_stream({"keys": ["release"], "required": True}))
    registry, clock = Registry(), Clock()
    imports = ImportRunner(kube.client, RegistryClient(), Config())
    imports.verifier = verifier_for(registry, clock)
    imports.verifier.subscribe(imports.on_verdict)
    async with running(imports.scheduler), running(imports.urgent):
        await imports.observe(body)
        await converged(imports.scheduler, imports.urgent)
        condition = verified_of(kube)
        assert condition is not None
        assert (condition["status"], condition["reason"]) == ("False", "NoSignature")
        assert "key release" in condition["message"]
        # Looked at again on the verifier's schedule.
        assert imports.scheduler.planned(StreamRef("shop", "web")) is not None
        registry.signed[DIGEST] = ["release"]
        clock.now += 5.0
        await imports.reconcile(StreamRef("shop", "web"))
        await converged(imports.scheduler, imports.urgent)
        condition = verified_of(kube)
        assert condition is not None
        assert (condition["status"], condition["reason"]) == ("True", "Verified")
        fetches, writes = registry.fetches, len(kube.calls)
        for _ in range(3):
            clock.now += 1000.0
            await imports.reconcile(StreamRef("shop", "web"))
        # Verified: no registry request and no API write in the steady state.
        assert registry.fetches == fetches
        assert len(kube.calls) == writes


async def test_stream_tag_with_unknown_key_says_so() -> None:
    from headwater.config import Config
    from headwater.imports.runner import ImportRunner
    from headwater.registry.client import RegistryClient
    from tests.fakekube import FakeKube as StreamKube
    from tests.fakekube import converged, running

    kube = StreamKube()
    body = kube.add(verified_stream({"keys": ["nobody"]}))
    registry, clock = Registry(), Clock()
    imports = ImportRunner(kube.client, RegistryClient(), Config())
    imports.verifier = verifier_for(registry, clock)
    async with running(imports.scheduler), running(imports.urgent):
        await imports.observe(body)
        await converged(imports.scheduler, imports.urgent)
    condition = verified_of(kube)
    assert condition is not None
    assert (condition["status"], condition["reason"]) == ("False", "KeyNotFound")
    assert "nobody" in condition["message"]
    assert registry.fetches == 0


async def test_signatures_of_an_insecure_tag_are_read_over_plain_http() -> None:
    """A tag imported with importPolicy.insecure has its signatures read the same way."""
    from headwater.config import Config
    from headwater.imports.runner import ImportRunner
    from headwater.registry.client import RegistryClient
    from tests.fakekube import FakeKube as StreamKube
    from tests.fakekube import converged, running

    stream = verified_stream({"keys": ["release"]})
    stream["spec"]["tags"].append(
        {"name": "plain", "importPolicy": {"insecure": True}, "verification": {"keys": ["release"]}}
    )
    stream["status"]["tags"].append({**stream["status"]["tags"][0], "tag": "plain"})
    stream["status"]["tags"][1]["items"] = [
        {**stream["status"]["tags"][0]["items"][0], "image": "sha256:" + "e" * 64}
    ]
    kube = StreamKube()
    body = kube.add(stream)
    registry, clock = Registry(), Clock()
    imports = ImportRunner(kube.client, RegistryClient(), Config())
    imports.verifier = verifier_for(registry, clock)
    async with running(imports.scheduler), running(imports.urgent):
        await imports.observe(body)
        await converged(imports.scheduler, imports.urgent)
    assert sorted(registry.insecure) == [False, True]


async def test_cosign_fetch_asks_for_plain_http_only_where_allowed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from headwater.config import Config
    from headwater.imports import signatures
    from headwater.registry.client import RegistryClient, Repository

    seen: list[Repository] = []

    async def fake_fetch_signatures(registry: Any, repo: Repository, digest: str) -> None:
        seen.append(repo)

    monkeypatch.setattr(signatures, "fetch_signatures", fake_fetch_signatures)
    import time

    config = Config(insecure_registries=("plain.example:5000",))
    logins: dict[str, tuple[float, list[Any]]] = {
        "shop": (time.monotonic(), [])
    }  # the namespace's pull secrets: none
    fetch = signatures.cosign_fetch(object(), RegistryClient(), config, logins)  # type: ignore[arg-type]
    for reference, insecure in [
        ("secure.example/a/b@" + DIGEST, False),
        ("secure.example/a/b@" + DIGEST, True),
        ("plain.example:5000/a/b@" + DIGEST, False),
    ]:
        assert await fetch(reference, DIGEST, "shop", insecure) == Signatures(())
    assert [r.insecure for r in seen] == [False, True, True]


# --- describe -------------------------------------------------------------------------------


def test_describe_is_and_istag_show_the_verified_condition() -> None:
    from headwater.cli.describe import describe_imagestream, describe_istag, verification_lines

    stream = verified_stream({"keys": ["headwater"], "required": True})
    entry = stream["status"]["tags"][0]
    entry["conditions"] = verified_conditions(
        entry, Verdict("False", "NoSignature", f"key headwater: {REF} has no signature"), 1, NOW
    )
    text = describe_imagestream(stream, NOW)
    assert "Verification: keys headwater (required for rollouts)" in text
    assert "  Verified: False (NoSignature): key headwater" in text
    assert "Import failed" not in text
    lines = verification_lines(Policy(("headwater",), True), entry["conditions"][0])
    shown = describe_istag("shop/web:latest", entry["items"][0], None, "offline", lines)
    assert "Verified:\tFalse (NoSignature)" in shown
    assert verification_lines(None, None) == []


async def test_import_image_looks_again_at_once() -> None:
    from headwater.config import Config
    from headwater.imports.plan import REQUEST_ANNOTATION
    from headwater.imports.runner import ImportRunner
    from headwater.registry.client import RegistryClient
    from tests.fakekube import FakeKube as StreamKube
    from tests.fakekube import converged, running

    kube = StreamKube()
    body = kube.add(verified_stream({"keys": ["release"]}))
    registry, clock = Registry(), Clock()
    imports = ImportRunner(kube.client, RegistryClient(), Config())
    imports.verifier = verifier_for(registry, clock)
    async with running(imports.scheduler), running(imports.urgent):
        await imports.observe(body)
        await converged(imports.scheduler, imports.urgent)
        condition = verified_of(kube)
        assert condition is not None
        assert condition["reason"] == "NoSignature"
        registry.signed[DIGEST] = ["release"]
        # `headwater import-image web`: no time passes, the signature is found.
        [stored] = [b for key, b in kube.objects.items() if key[2] == "web" and "status" in b]
        stored["metadata"].setdefault("annotations", {})[REQUEST_ANNOTATION] = "*"
        stored["metadata"]["resourceVersion"] = "999999"
        await imports.observe(stored)
        await converged(imports.scheduler, imports.urgent)
    condition = verified_of(kube)
    assert condition is not None
    assert (condition["status"], condition["reason"]) == ("True", "Verified")


def test_stream_events_on_verification_transitions() -> None:
    from headwater.imports.history import transitions

    item = {"image": DIGEST, "dockerImageReference": REF}
    unsigned = Verdict("False", "NoSignature", "key a: no signature")
    signed = Verdict("True", "Verified", "signed by key a", "a")
    before = {"tag": "latest", "items": [item]}
    failed = {**before, "conditions": verified_conditions(before, unsigned, 1, NOW)}
    ok = {**before, "conditions": verified_conditions(failed, signed, 1, NOW)}
    assert [(t.type, t.reason) for t in transitions([before], [failed])] == [
        ("Warning", "VerificationFailed")
    ]
    assert transitions([failed], [failed]) == []
    assert [(t.type, t.reason) for t in transitions([failed], [ok])] == [
        ("Normal", "ImageVerified")
    ]


async def test_the_cache_is_bounded() -> None:
    registry, clock = Registry(), Clock()
    verifier = verifier_for(registry, clock, max_cached=3)
    digests = [f"sha256:{i:064x}" for i in range(5)]
    for digest in digests:
        await verifier.verify(f"registry.local/shop/web@{digest}", digest, ["release"])
    assert len(verifier) == 3
    assert verifier.next_check(digests[0], ["release"]) is None  # forgotten with its entry
    assert verifier.next_check(digests[4], ["release"]) == 5.0
