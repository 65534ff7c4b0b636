"""-n/--namespace, --context and --kubeconfig before the verb as well as after it (as kubectl)."""

from __future__ import annotations

from collections.abc import Iterator

import click
import pytest
from click.testing import CliRunner

from headwater.cli import builds
from headwater.cli.main import cli

GLOBAL = ["-n", "shop", "--context", "ctx", "--kubeconfig", "/kube/config"]


def leaf_commands(group: click.Group, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            yield from leaf_commands(command, (*path, name))
        else:
            yield (*path, name)


def parsed(path: tuple[str, ...], before: list[str], after: list[str]) -> dict[str, object]:
    """The params the verb at ``path`` gets, with ``before`` given before it and ``after`` after."""
    ctx = cli.make_context("headwater", [*before, *path], resilient_parsing=True)
    command: click.Command = cli
    for name in path:
        assert isinstance(command, click.Group)
        command = command.commands[name]
        is_last = name == path[-1] and not isinstance(command, click.Group)
        ctx = command.make_context(
            name, list(after) if is_last else [], parent=ctx, resilient_parsing=True
        )
    return ctx.params


CLUSTER_VERBS = [
    path
    for path in leaf_commands(cli)
    if path[0] != "operator" and "namespace" in parsed(path, [], [])
]


def test_the_client_verbs_are_found() -> None:
    names = {" ".join(p) for p in CLUSTER_VERBS}
    assert {"get", "describe", "logs", "start-build", "tag", "import-image"} <= names


@pytest.mark.parametrize("path", CLUSTER_VERBS, ids=" ".join)
def test_every_verb_takes_the_global_flags_before_it(path: tuple[str, ...]) -> None:
    params = parsed(path, GLOBAL, [])
    assert (params["namespace"], params["context"], params["kubeconfig"]) == (
        "shop",
        "ctx",
        "/kube/config",
    )


@pytest.mark.parametrize("path", CLUSTER_VERBS, ids=" ".join)
def test_after_the_verb_wins(path: tuple[str, ...]) -> None:
    params = parsed(path, GLOBAL, ["-n", "other", "--context", "mine"])
    assert (params["namespace"], params["context"], params["kubeconfig"]) == (
        "other",
        "mine",
        "/kube/config",
    )
    assert parsed(path, [], [])["namespace"] is None


def test_logs_with_namespace_before_the_verb(monkeypatch: pytest.MonkeyPatch) -> None:
    """The report of issue 16: `headwater -n shop logs build/web-1` said "No such option '-n'"."""
    seen: list[tuple[object, ...]] = []

    def connect(*args: object) -> None:
        seen.append(args)
        raise click.ClickException("stop here")

    monkeypatch.setattr(builds, "connect", connect)
    result = CliRunner().invoke(cli, [*GLOBAL, "logs", "build/web-1"])
    assert "No such option" not in result.output
    assert seen == [("/kube/config", "ctx", "shop")]


def test_operator_run_watches_the_namespace_given_before_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from headwater import runtime

    seen: list[tuple[str, ...]] = []

    async def fake_run(config: object, options: object) -> int:
        seen.append(config.namespaces)  # type: ignore[attr-defined]
        return 0

    monkeypatch.setattr(runtime, "run", fake_run)
    monkeypatch.delenv("HEADWATER_NAMESPACES", raising=False)
    result = CliRunner().invoke(cli, ["-n", "shop", "operator", "run"])
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(cli, ["-n", "shop", "operator", "run", "-n", "a"])
    assert result.exit_code == 0, result.output
    assert seen == [("shop",), ("a",)]
    result = CliRunner().invoke(cli, ["--context", "x", "operator", "run"])
    assert result.exit_code == 2
    assert "not --context/--kubeconfig" in result.output


def test_help_names_both_places() -> None:
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    assert "-n, --namespace" in result.output
    assert "before the verb or after it" in result.output
