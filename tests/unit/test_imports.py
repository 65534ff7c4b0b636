"""Import planning and status history: pure functions, no cluster, no registry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from headwater.imports.history import (
    Failed,
    Imported,
    Recorded,
    TagResult,
    Unchanged,
    apply_result,
    apply_results,
    ready_condition,
    transitions,
)
from headwater.imports.model import SpecTag, StreamRef, spec_tags
from headwater.imports.plan import (
    REQUEST_ANNOTATION,
    next_slot,
    next_wakeup,
    plan_imports,
    requested_tags,
    retry_at,
    slot_offset,
)

NOW = datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC)
STREAM = StreamRef("shop", "web")
DIGEST_A = "sha256:" + "a" * 64
DIGEST_B = "sha256:" + "b" * 64


def spec(*tags: dict[str, Any]) -> dict[str, Any]:
    return {"tags": list(tags)}


def docker_tag(name: str, image: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "from": {"kind": "DockerImage", "name": image}, **extra}


def tag(name: str = "1.0", image: str = "reg:5000/shop/web:1.0", **extra: Any) -> SpecTag:
    return spec_tags(spec(docker_tag(name, image, **extra)))[0]


def status_with(
    name: str, *, image: str, generation: int, ok: bool = True, **extra: Any
) -> dict[str, Any]:
    condition = {
        "type": "ImportSuccess",
        "status": "True" if ok else "False",
        "reason": "Imported" if ok else "Unreachable",
        "message": "",
        "lastTransitionTime": "2026-11-28T11:00:00Z",
        "generation": generation,
    }
    entry = {
        "tag": name,
        "items": [{"image": image, "dockerImageReference": f"reg:5000/shop/web@{image}"}],
        "conditions": [condition],
        **extra,
    }
    return {"tags": [entry]}


def test_spec_tags_apply_openshift_defaults() -> None:
    (t,) = spec_tags(spec(docker_tag("1.0", "busybox")))
    assert (t.import_mode, t.reference_policy, t.scheduled, t.insecure) == (
        "Legacy",
        "Source",
        False,
        False,
    )
    assert t.importable
    ref = spec_tags(spec(docker_tag("r", "busybox", reference=True)))[0]
    alias = spec_tags(
        spec({"name": "latest", "from": {"kind": "ImageStreamTag", "name": "web:1"}})
    )[0]
    assert not ref.importable
    assert not alias.importable


def test_new_tag_is_imported_and_then_left_alone() -> None:
    t = tag()
    (job,) = plan_imports(STREAM, [t], None, 1, NOW, interval=900)
    assert job.reason == "new"
    assert job.known_digest is None
    done = status_with("1.0", image=DIGEST_A, generation=1)
    assert plan_imports(STREAM, [t], done, 1, NOW, interval=900) == []


def test_spec_generation_newer_than_status_reimports() -> None:
    t = tag()
    done = status_with("1.0", image=DIGEST_A, generation=1)
    (job,) = plan_imports(STREAM, [t], done, 2, NOW, interval=900)
    assert job.reason == "generation"
    # An explicit tag generation wins over the stream's.
    pinned = tag(generation=1)
    assert plan_imports(STREAM, [pinned], done, 5, NOW, interval=900) == []


def test_request_annotation_imports_named_or_all_tags() -> None:
    assert requested_tags(None) is None
    assert requested_tags({REQUEST_ANNOTATION: "*"}) == frozenset({"*"})
    assert requested_tags({REQUEST_ANNOTATION: "1.0, 2.0"}) == frozenset({"1.0", "2.0"})
    assert requested_tags({REQUEST_ANNOTATION: ""}) == frozenset({"*"})
    done = status_with("1.0", image=DIGEST_A, generation=1)
    (job,) = plan_imports(STREAM, [tag()], done, 1, NOW, interval=900, requested={"1.0"})
    assert job.reason == "requested"
    assert plan_imports(STREAM, [tag()], done, 1, NOW, interval=900, requested={"2.0"}) == []


def test_scheduled_tag_is_due_at_its_ring_slot_only() -> None:
    t = tag(importPolicy={"scheduled": True})
    done = status_with("1.0", image=DIGEST_A, generation=1)
    key = "shop/web:1.0"
    slot = next_slot(NOW, key, 900)
    assert NOW < slot <= NOW + timedelta(seconds=900)
    assert (int(slot.timestamp()) - slot_offset(key, 900)) % 900 == 0
    checked = {key: NOW}
    assert plan_imports(STREAM, [t], done, 1, NOW, interval=900, checked=checked) == []
    (job,) = plan_imports(STREAM, [t], done, 1, slot, interval=900, checked=checked)
    assert job.reason == "scheduled"
    assert job.known_digest == DIGEST_A  # one HEAD request answers "unchanged"
    assert next_wakeup(STREAM, [t], done, 900, checked) == slot


def test_ring_spreads_tags_over_the_interval() -> None:
    offsets = {slot_offset(f"ns/s{i}:t", 900) // 90 for i in range(1000)}
    assert offsets == set(range(10))  # every tenth of the interval has tags


def test_digest_references_are_not_scheduled() -> None:
    t = tag(image=f"reg:5000/shop/web@{DIGEST_A}", importPolicy={"scheduled": True})
    done = status_with("1.0", image=DIGEST_A, generation=1)
    assert next_wakeup(STREAM, [t], done, 900, {}) is None


def test_failed_import_is_retried_with_growing_delay() -> None:
    first = datetime(2026, 11, 28, 11, 0, 0, tzinfo=UTC)
    assert retry_at(first, first, 900) == first + timedelta(seconds=30)
    later = first + timedelta(minutes=5)
    assert retry_at(later, first, 900) == later + timedelta(minutes=5)
    much_later = first + timedelta(hours=3)
    assert retry_at(much_later, first, 900) == much_later + timedelta(seconds=900)
    failing = status_with(
        "1.0", image=DIGEST_A, generation=1, ok=False, lastImportTime="2026-11-28T11:59:50Z"
    )
    assert plan_imports(STREAM, [tag()], failing, 1, NOW, interval=900) == []
    # Failing since 11:00, last tried 11:59:50: the next try is one interval later.
    assert plan_imports(STREAM, [tag()], failing, 1, NOW + timedelta(minutes=2), interval=900) == []
    (job,) = plan_imports(STREAM, [tag()], failing, 1, NOW + timedelta(minutes=15), interval=900)
    assert job.reason == "retry"


def test_import_prepends_history_bounded_and_keeps_it_on_failure() -> None:
    t = tag()
    entry = None
    for i in range(12):
        digest = f"sha256:{i:064x}"
        result = TagResult(t, Imported(digest, f"reg/shop/web@{digest}", message="ok"), 1)
        entry = apply_result(entry, result, NOW + timedelta(minutes=i), limit=10)
    assert entry is not None
    assert len(entry["items"]) == 10
    assert entry["items"][0]["image"] == f"sha256:{11:064x}"
    failed = apply_result(
        entry, TagResult(t, Failed("Unreachable", "connection refused"), 2), NOW, 10
    )
    assert failed["items"] == entry["items"]
    condition = failed["conditions"][0]
    assert (condition["status"], condition["reason"], condition["generation"]) == (
        "False",
        "Unreachable",
        2,
    )
    assert failed["lastImportTime"] == "2026-11-28T12:00:00Z"


def test_same_image_adds_no_item_and_unchanged_writes_nothing_new() -> None:
    t = tag()
    result = TagResult(t, Imported(DIGEST_A, f"reg/shop/web@{DIGEST_A}", message="m"), 1)
    first = apply_result(None, result, NOW, 10)
    again = apply_result(first, result, NOW + timedelta(minutes=1), 10)
    assert again["items"] == first["items"]
    assert again["conditions"] == first["conditions"]
    unchanged = TagResult(t, Unchanged(), 1)
    assert apply_result(first, unchanged, NOW + timedelta(hours=1), 10) == first


def test_reference_tags_record_without_condition() -> None:
    t = spec_tags(spec(docker_tag("r", "busybox", reference=True)))[0]
    entry = apply_result(
        None,
        TagResult(t, Recorded("docker.io/library/busybox:latest"), 1, attempted=False),
        NOW,
        10,
    )
    assert entry["items"][0]["dockerImageReference"] == "docker.io/library/busybox:latest"
    assert "conditions" not in entry
    assert "lastImportTime" not in entry


def test_status_only_tags_are_kept() -> None:
    status = {"tags": [{"tag": "built", "items": [{"image": DIGEST_B}]}]}
    result = TagResult(tag(), Imported(DIGEST_A, "r@" + DIGEST_A), 1)
    tags = apply_results(status, [result], NOW, 10)
    assert [e["tag"] for e in tags] == ["built", "1.0"]


@pytest.mark.parametrize(
    ("conditions", "expected"),
    [
        ([("1.0", "True")], ("True", "TagsResolved")),
        ([("1.0", "False")], ("False", "ImportFailed")),
        ([], ("Unknown", "Importing")),
    ],
)
def test_ready_follows_tag_conditions(
    conditions: list[tuple[str, str]], expected: tuple[str, str]
) -> None:
    status_tags = [
        {"tag": name, "conditions": [{"type": "ImportSuccess", "status": s, "reason": "R"}]}
        for name, s in conditions
    ]
    (ready,) = ready_condition(None, [tag()], status_tags, 3, NOW)
    assert (ready["status"], ready["reason"], ready["observedGeneration"]) == (*expected, 3)


def test_transitions_name_moves_failures_and_recoveries_once() -> None:
    t = tag()
    first = apply_result(None, TagResult(t, Imported(DIGEST_A, "r@" + DIGEST_A), 1), NOW, 10)
    (moved,) = transitions([], [first])
    assert (moved.type, moved.reason) == ("Normal", "TagMoved")
    assert transitions([first], [first]) == []
    failed = apply_result(first, TagResult(t, Failed("NotFound", "no tag"), 2), NOW, 10)
    (warning,) = transitions([first], [failed])
    assert (warning.type, warning.reason) == ("Warning", "ImportFailed")
    assert "NotFound" in warning.message
    assert transitions([failed], [failed]) == []  # the same failure again: no new Event
    back = apply_result(failed, TagResult(t, Imported(DIGEST_B, "r@" + DIGEST_B), 3), NOW, 10)
    reasons = [e.reason for e in transitions([failed], [back])]
    assert reasons == ["TagMoved", "ImportRecovered"]


def test_transitions_name_the_tags_one_write_moved_in_one_event() -> None:
    """A stream's first import moves all its tags: one Event, not one per tag
    (bench/scale.py: 10 tags x N streams were 10 N Event writes, a third of the CPU)."""
    entries = [
        apply_result(None, TagResult(tag(name), Imported(DIGEST_A, "r@" + DIGEST_A), 1), NOW, 10)
        for name in ("a", "b", "c")
    ]
    (moved,) = transitions([], entries)
    assert (moved.type, moved.reason) == ("Normal", "TagMoved")
    assert moved.message.startswith("3 tags moved: a now points at r@")
    assert "; c now points at r@" in moved.message


def test_host_backoff_grows_honours_retry_after_and_clears() -> None:
    from headwater.imports.throttle import HostBackoff

    now = [1000.0]
    backoff = HostBackoff(clock=lambda: now[0])
    backoff.failed("reg", "NotFound", None)  # the tag's problem, not the host's
    assert backoff.remaining("reg") == 0
    waits = []
    for _ in range(12):
        backoff.failed("reg", "ServerError", None)
        waits.append(backoff.remaining("reg"))
        now[0] += waits[-1]  # the next failure: the first request after the wait
    assert 0.5 <= waits[0] <= 1.0
    assert waits[3] >= 4.0
    assert max(waits) <= HostBackoff.CAP
    backoff.failed("reg", "RateLimited", 1200.0)
    assert backoff.remaining("reg") == pytest.approx(1200.0)  # Retry-After wins over the cap
    now[0] += 1300
    assert backoff.remaining("reg") == 0
    backoff.failed("reg", "Timeout", None)
    backoff.succeeded("reg")
    assert backoff.remaining("reg") == 0
    backoff.failed("reg", "Unreachable", None)
    assert backoff.remaining("reg") <= 1.0  # the count started again


def test_host_backoff_counts_failures_in_flight_together_once() -> None:
    """Twenty due tags of one registry fail at once (it restarts): the wait is the first
    failure's, not doubled twenty times; the next round after the wait doubles it once."""
    from headwater.imports.throttle import HostBackoff

    now = [1000.0]
    backoff = HostBackoff(clock=lambda: now[0])
    for _ in range(20):
        backoff.failed("reg", "Unreachable", None)
    first = backoff.remaining("reg")
    assert 0.5 <= first <= 1.0
    now[0] += first
    for _ in range(20):
        backoff.failed("reg", "Unreachable", None)
    assert 1.0 <= backoff.remaining("reg") <= 2.0
    # A Retry-After given meanwhile still lengthens the wait.
    backoff.failed("reg", "RateLimited", 30.0)
    assert backoff.remaining("reg") == pytest.approx(30.0)


def test_new_cross_namespace_sources_only_counts_added_references() -> None:
    from headwater.imports.model import new_cross_namespace_sources

    def alias(name: str, source_ns: str | None) -> dict[str, Any]:
        source: dict[str, Any] = {"kind": "ImageStreamTag", "name": "app:1"}
        if source_ns:
            source["namespace"] = source_ns
        return {"name": name, "from": source}

    old = spec(alias("a", "staging"))
    new = spec(alias("a", "staging"), alias("b", "qa"), alias("c", None), alias("d", "prod"))
    assert new_cross_namespace_sources(new, "prod", old) == {"qa": ["b"]}
    assert new_cross_namespace_sources(new, "prod", None) == {"qa": ["b"], "staging": ["a"]}
