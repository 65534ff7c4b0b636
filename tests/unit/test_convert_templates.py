"""Templates in ``headwater convert``: processed as ``oc process --local`` does, or kept."""

from __future__ import annotations

import json
import random
import string
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from headwater.cli.convert import (
    REPO_CRD_DIR,
    Options,
    convert,
    convert_object,
    convert_text,
    load_schemas,
)
from headwater.cli.templates import (
    ALPHABET,
    NUMERALS,
    SYMBOLS,
    TemplateError,
    generate_expression,
    parse_param_args,
    parse_param_lines,
    process,
)

DATA = Path(__file__).resolve().parents[1] / "data" / "openshift"
TEMPLATES = DATA / "templates"
SCHEMAS = load_schemas(REPO_CRD_DIR)


def rng(seed: int = 7) -> random.Random:
    return random.Random(seed)  # noqa: S311 (seeded: tests repeat)


def run(*args: str) -> Any:
    return CliRunner().invoke(convert, list(args))


# --- the expression generator (library-go pkg/template/generator) ------------------------------


def test_generated_values_have_the_length_and_the_alphabet() -> None:
    value = generate_expression("[a-zA-Z0-9]{16}", rng())
    assert len(value) == 16
    assert set(value) <= set(ALPHABET + NUMERALS)
    hexed = generate_expression("[a-f0-9]{8}", rng())
    assert len(hexed) == 8
    assert set(hexed) <= set("abcdef0123456789")


def test_text_around_expressions_is_kept_and_each_expression_replaced() -> None:
    value = generate_expression("user[A-Z0-9]{3}-[0-1]{8}x", rng())
    assert value.startswith("user")
    assert value.endswith("x")
    assert len(value) == len("user") + 3 + 1 + 8 + 1
    assert value[7] == "-"


@pytest.mark.parametrize(
    ("expression", "alphabet"),
    [
        ("[\\w]{200}", ALPHABET + NUMERALS + "_"),
        ("[\\d]{200}", NUMERALS),
        ("[\\a]{200}", ALPHABET + NUMERALS),
        ("[\\A]{200}", SYMBOLS),
    ],
)
def test_escapes(expression: str, alphabet: str) -> None:
    value = generate_expression(expression, rng())
    assert len(value) == 200
    assert set(value) <= set(alphabet)
    assert len(set(value)) > 5  # random, not one character


def test_ranges_leave_out_their_last_character_as_openshift_does() -> None:
    # library-go slices ASCII[left:right]: z, Z and 9 never come out of [a-z], [A-Z], [0-9].
    value = generate_expression("[a-zA-Z0-9]{255}", rng())
    assert not set(value) & {"z", "Z", "9"}
    assert set(generate_expression("[0-1]{50}", rng())) == {"0"}


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("[abc]{3}", "malformed expression"),
        ("[a-z]{0}", "range must be within"),
        ("[a-z]{256}", "range must be within"),
        ("[z-a]{3}", "invalid range"),
        ("[a]{3}", "malformed expression"),
        # A template is somebody else's file: bounded before any work.
        ("[a-z]{" + "9" * 4000 + "}", "range must be within"),
        ("x" * 4097, "expression longer than"),
        ("[a-z]{255}" * 300, "generates more than"),
    ],
)
def test_bad_expressions(expression: str, message: str) -> None:
    with pytest.raises(TemplateError, match=message):
        generate_expression(expression, rng())


def test_not_an_expression_is_kept_as_written() -> None:
    assert generate_expression("plain-[a-z_]{3}", rng()) == "plain-[a-z_]{3}"


@given(st.integers(min_value=1, max_value=255), st.sampled_from(["\\w", "\\d", "a-f", "A-Z0-9"]))
def test_any_length_and_class(length: int, ranges: str) -> None:
    value = generate_expression(f"p[{ranges}]{{{length}}}s")
    assert len(value) == length + 2
    assert value[0] == "p"
    assert value[-1] == "s"
    assert set(value[1:-1]) <= set(string.ascii_letters + string.digits + "_")


# --- parameters -----------------------------------------------------------------------------------


def test_param_files_read_like_oc() -> None:
    text = "# comment\n\nNAME=web\nURL=https://x/?a=b\nQUOTED=\"two words\"\nSINGLE='s'\n"
    assert parse_param_lines(text, "p.env") == {
        "NAME": "web",
        "URL": "https://x/?a=b",
        "QUOTED": "two words",
        "SINGLE": "s",
    }
    with pytest.raises(TemplateError, match=r"p\.env:2: expected NAME=VALUE"):
        parse_param_lines("A=1\nnonsense\n", "p.env")
    assert parse_param_args(["A=x=y", "B="]) == {"A": "x=y", "B": ""}
    with pytest.raises(TemplateError, match="--param A: expected NAME=VALUE"):
        parse_param_args(["A"])


TEMPLATE: dict[str, Any] = {
    "apiVersion": "template.openshift.io/v1",
    "kind": "Template",
    "metadata": {"name": "t"},
    "labels": {"app": "${NAME}"},
    "objects": [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "${NAME}-config", "namespace": "hardcoded"},
            "data": {"${NAME}.key": "v=${VERSION}", "replicas": "${{REPLICAS}}"},
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "${NAME}", "namespace": "${TARGET}"},
            "spec": {"ports": "${{PORTS}}", "selector": "${{NOT_JSON}}"},
        },
    ],
    "parameters": [
        {"name": "NAME", "required": True},
        {"name": "VERSION", "value": "1.0"},
        {"name": "REPLICAS", "value": "3"},
        {"name": "PORTS", "value": '[{"port": 80}]'},
        {"name": "NOT_JSON", "value": "app: x"},
        {"name": "TARGET", "value": "prod"},
        {"name": "SECRET", "generate": "expression", "from": "[a-f0-9]{8}"},
    ],
}


def test_process_substitutes_strings_and_non_strings() -> None:
    done = process(TEMPLATE, {"NAME": "web"}, rng())
    config, service = done.objects
    assert config["metadata"] == {"name": "web-config", "labels": {"app": "web"}}
    assert config["data"] == {"web.key": "v=1.0", "replicas": 3}
    assert service["metadata"]["namespace"] == "prod"  # a parameter namespace is kept
    assert service["spec"] == {"ports": [{"port": 80}], "selector": "app: x"}
    assert done.generated == ["SECRET"]
    assert done.stripped == ["ConfigMap/${NAME}-config"]
    assert TEMPLATE["objects"][0]["metadata"]["namespace"] == "hardcoded"  # left alone


def test_required_parameter_missing_and_a_given_value_replaces_the_generator() -> None:
    with pytest.raises(TemplateError, match="parameter NAME is required"):
        process(TEMPLATE, {}, rng())
    with pytest.raises(TemplateError, match="parameter NAME is required"):
        process(TEMPLATE, {"NAME": ""}, rng())
    template = {**TEMPLATE, "objects": [{"kind": "X", "v": "${SECRET}"}]}
    done = process(template, {"NAME": "web", "SECRET": "given"}, rng())
    assert done.objects == [{"kind": "X", "v": "given", "metadata": {"labels": {"app": "web"}}}]
    assert done.generated == []


def test_unknown_generator() -> None:
    template = {"parameters": [{"name": "A", "generate": "random"}]}
    with pytest.raises(TemplateError, match="unknown generator 'random' for parameter A"):
        process(template, {}, rng())


# --- convert: kept or processed ---------------------------------------------------------------


def test_a_template_without_params_stays_a_template_with_its_objects_converted() -> None:
    result = convert_text((TEMPLATES / "django-psql-example-dc.json").read_text(), "d", SCHEMAS)
    (template,) = result.documents
    assert template["apiVersion"] == "template.openshift.io/v1"
    assert template["kind"] == "Template"
    assert (
        template["parameters"]
        == json.loads((TEMPLATES / "django-psql-example-dc.json").read_text())["parameters"]
    )
    kinds = [(o["apiVersion"], o["kind"]) for o in template["objects"]]
    assert ("image.headwater.dev/v1", "ImageStream") in kinds
    assert ("build.headwater.dev/v1", "BuildConfig") in kinds
    assert ("apps/v1", "Deployment") in kinds
    assert not any(k == "DeploymentConfig" for _, k in kinds)
    bc = next(o for o in template["objects"] if o["kind"] == "BuildConfig")
    assert bc["metadata"]["name"] == "${NAME}"  # references intact
    assert bc["spec"]["strategy"]["sourceStrategy"]["from"]["namespace"] == "${NAMESPACE}"
    # No error for fields that only hold a parameter reference.
    assert not [n for n in result.notes if n.severity == "error"], result.notes


def test_a_legacy_template_gets_the_template_group() -> None:
    result = convert_text(
        (TEMPLATES / "django-psql-example-v1.json").read_text(), "v1.json", SCHEMAS
    )
    (template,) = result.documents
    assert template["apiVersion"] == "template.openshift.io/v1"
    found = {(n.obj, n.path): n.message for n in result.notes}
    assert found[("Template/django-psql-example", "apiVersion")] == (
        "v1 written as template.openshift.io/v1"
    )


def test_the_kept_template_processes_to_what_processing_the_original_gives() -> None:
    # Converting then processing == processing then converting: the references survived.
    original = json.loads((TEMPLATES / "django-psql-example-dc.json").read_text())
    params = {"NAME": "web", "DATABASE_PASSWORD": "pw", "DJANGO_SECRET_KEY": "k"}
    params |= {"DATABASE_USER": "u", "GITHUB_WEBHOOK_SECRET": "s"}
    kept, _ = convert_object(original, SCHEMAS, "f")
    first = convert_object(kept[0], SCHEMAS, "f", Options(params=params, rng=rng()))[0]
    second = convert_object(original, SCHEMAS, "f", Options(params=params, rng=rng()))[0]
    assert first == second
    assert {o["kind"] for o in first} >= {"ImageStream", "BuildConfig", "Deployment"}
    assert not any("${" in json.dumps(o) for o in first)


def test_processed_template_objects_are_converted() -> None:
    text = (TEMPLATES / "application-template-stibuild.json").read_text()
    result = convert_text(text, "t.json", SCHEMAS, Options(params={}, rng=rng()))
    kinds = [d["kind"] for d in result.documents]
    assert "Template" not in kinds
    assert kinds.count("Deployment") == 2
    secret = result.documents[0]
    assert secret["stringData"]["mysql-user"].startswith("user")
    assert len(secret["stringData"]["mysql-user"]) == 7
    assert all(
        d["metadata"]["labels"]["template"] == "application-template-stibuild"
        for d in result.documents
    )
    generated = {n.path for n in result.notes if n.message == "generated from its expression"}
    assert generated == {"parameters.MYSQL_USER", "parameters.MYSQL_PASSWORD"}
    assert result.parameters == {"MYSQL_USER", "MYSQL_PASSWORD", "MYSQL_DATABASE"}


# --- the command ------------------------------------------------------------------------------


def test_command_param_and_param_file(tmp_path: Path) -> None:
    params = tmp_path / "params.env"
    params.write_text("NAME=shop\nDATABASE_USER=fromfile\n")
    result = run(
        "-f",
        str(TEMPLATES / "django-psql-example.json"),
        "--param-file",
        str(params),
        "-p",
        "DATABASE_USER=fromflag",
    )
    assert result.exit_code == 0, result.stderr
    documents = list(yaml.safe_load_all(result.stdout))
    names = {d["metadata"]["name"] for d in documents}
    assert "shop" in names
    secret = next(d for d in documents if d["kind"] == "Secret")
    assert secret["stringData"]["database-user"] == "fromflag"  # --param wins
    assert len(secret["stringData"]["database-password"]) == 16


def test_command_required_parameter_missing_is_one_line() -> None:
    template = {
        "apiVersion": "template.openshift.io/v1",
        "kind": "Template",
        "metadata": {"name": "t"},
        "objects": [],
        "parameters": [{"name": "NAME", "required": True}],
    }
    result = CliRunner().invoke(convert, ["-f", "-", "--process"], input=yaml.safe_dump(template))
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == (
        "error: <stdin>: Template/t: parameter NAME is required and must be specified"
        " (--param NAME=VALUE)\n"
    )


def test_command_unknown_parameter() -> None:
    result = run("-f", str(TEMPLATES / "django-psql-example.json"), "-p", "NAMME=x")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert "unknown parameter name NAMME: no Template in the input has it" in result.stderr


def test_command_bad_param_and_missing_param_file(tmp_path: Path) -> None:
    bad = run("-f", str(TEMPLATES / "django-psql-example.json"), "-p", "NAME")
    assert bad.exit_code == 1
    assert bad.stderr == "Error: --param NAME: expected NAME=VALUE\n"
    missing = run("-f", str(TEMPLATES), "--param-file", str(tmp_path / "nope.env"))
    assert missing.exit_code == 1
    assert "cannot read" in missing.stderr
    assert "Traceback" not in missing.stderr
