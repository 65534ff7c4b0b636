"""``logs -f`` on a build that cannot start: it says what it waits for, and a build that
ends without a pod ends the command with exit status 1 (issue 19), the cluster faked at
its edge."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from click.testing import CliRunner

from headwater.cli import builds
from headwater.cli.builds import ended_line, waiting_line
from headwater.cli.main import cli


class Obj:
    def __init__(self, body: dict[str, Any]) -> None:
        self.body = body

    def to_dict(self) -> dict[str, Any]:
        return self.body


def build(phase: str, reason: str = "", message: str = "") -> dict[str, Any]:
    return {
        "metadata": {"name": "web-1", "namespace": "shop"},
        "status": {"phase": phase, "reason": reason, "message": message},
    }


class Builds:
    """Each get of the Build returns the next state (the last one stays); no pods."""

    def __init__(self, states: list[dict[str, Any]]) -> None:
        self.states = states
        self.gets = 0

    def get(self, resource: Any, name: str, namespace: str | None = None) -> Obj:
        state = self.states[min(self.gets, len(self.states) - 1)]
        self.gets += 1
        return Obj(state)

    def list(self, resource: Any, **_: Any) -> Iterator[Obj]:
        return iter(())


@pytest.fixture(autouse=True)
def no_sleep(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("headwater.cli.builds.time.sleep", lambda _: None)


def follow(client: Builds, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setattr(builds, "connect", lambda *a: (client, "shop"))
    return CliRunner().invoke(cli, ["logs", "-f", "build/web-1"])


def test_a_build_held_in_new_says_why_once_and_ends_when_cancelled(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    held = build("New", "MissingPushSecret", "push secret 'reg' does not exist")
    # The first get is the check that the build exists.
    client = Builds([build("New")] * 2 + [held] * 3 + [build("Cancelled", "CancelledBuild")])
    result = follow(client, monkeypatch)
    assert result.exit_code == 1, result.output
    assert result.stderr.splitlines() == [
        "waiting for the build pod: New",
        "waiting for the build pod: New (MissingPushSecret): push secret 'reg' does not exist",
        "Error: build web-1 ended (Cancelled) before its log began: CancelledBuild",
    ]


def test_a_build_that_fails_without_a_pod_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    failed = build("Failed", "InvalidOutputReference", "no registry")
    result = follow(Builds([failed]), monkeypatch)
    assert result.exit_code == 1
    assert result.stderr == (
        "Error: build web-1 ended (Failed) before its log began: InvalidOutputReference:"
        " no registry\n"
    )


def test_waiting_line_names_the_pod_step_and_its_state() -> None:
    pod = {
        "metadata": {"name": "web-1-build-x"},
        "status": {
            "initContainerStatuses": [
                {
                    "name": "fetch-source",
                    "state": {"waiting": {"reason": "ErrImagePull", "message": "no such\nhost"}},
                }
            ]
        },
    }
    assert waiting_line(build("Pending"), pod, "fetch-source") == (
        "waiting for the fetch-source step of pod web-1-build-x: Pending (ErrImagePull):"
        " no such host"
    )
    held = build("Pending", "PullBuilderImageFailed", "quay.io unreachable")
    assert waiting_line(held, pod, "fetch-source").endswith(
        "Pending (PullBuilderImageFailed): quay.io unreachable"
    )
    assert ended_line(build("Error")) == "build web-1 ended (Error) before its log began"
