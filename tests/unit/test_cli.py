"""The ``headwater`` command line (no cluster: only what runs before one is needed)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from headwater import __version__
from headwater.cli.main import cli


def test_version() -> None:
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0
    assert __version__ in result.output


def test_help_lists_operator() -> None:
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    assert "operator" in result.output


def test_operator_run_help_matches_options() -> None:
    result = CliRunner().invoke(cli, ["operator", "run", "--help"])
    assert result.exit_code == 0
    for option in ("--namespace", "--all-namespaces", "--log-format", "--verbose", "--standalone"):
        assert option in result.output


def test_namespace_options_exclude_each_other() -> None:
    result = CliRunner().invoke(cli, ["operator", "run", "-n", "a", "--all-namespaces"])
    assert result.exit_code == 2
    assert "exclude each other" in result.output


def test_namespace_option_takes_a_list(monkeypatch: pytest.MonkeyPatch) -> None:
    from headwater import runtime

    seen: list[tuple[str, ...]] = []

    async def fake_run(config: object, options: object) -> int:
        seen.append(config.namespaces)  # type: ignore[attr-defined]
        return 0

    monkeypatch.setattr(runtime, "run", fake_run)
    monkeypatch.setenv("HEADWATER_NAMESPACES", "from-env")
    result = CliRunner().invoke(cli, ["operator", "run", "-n", "a,b", "-n", "c"])
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(cli, ["operator", "run"])
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(cli, ["operator", "run", "-A"])
    assert result.exit_code == 0, result.output
    assert seen == [("a", "b", "c"), ("from-env",), ()]
    result = CliRunner().invoke(cli, ["operator", "run", "-n", "a,B_AD"])
    assert result.exit_code == 1
    assert "--namespace: expected a namespace name" in result.output


def test_bad_configuration_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEADWATER_IMPORT_INTERVAL_SECONDS", "never")
    result = CliRunner().invoke(cli, ["operator", "run"])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        "Error: configuration: HEADWATER_IMPORT_INTERVAL_SECONDS: expected an integer, got 'never'"
    ]


def test_no_kubeconfig_is_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("HEADWATER_HEALTH_PORT", "1")  # never reached: credentials come first
    result = CliRunner().invoke(cli, ["operator", "run", "--standalone"])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1
    assert "no Kubernetes credentials" in lines[0]
    assert "KUBECONFIG" in lines[0]
