"""The Kubernetes adapter (headwater.kube): what each failure means, the three calls, and
that no other module compares API status codes itself."""

from __future__ import annotations

import re
import ssl
from pathlib import Path
from typing import Any

import httpx2
import pytest
from lightkube import codecs
from lightkube.core.exceptions import ApiError

import headwater
from headwater.kube import (
    API_ERRORS,
    Failure,
    already_exists,
    classify,
    create_or_conflict,
    get_or_none,
    is_conflict,
    is_gone,
    older,
    patch_status,
    plain_dict,
    resource_version,
    status_code,
)
from headwater.resources import ImageStream
from tests.fakekube import FakeKube, api_error

# --- classify ----------------------------------------------------------------------------------

CODES = [
    (400, Failure.INVALID),
    (401, Failure.FORBIDDEN),
    (403, Failure.FORBIDDEN),
    (404, Failure.GONE),
    (405, Failure.INVALID),
    (406, Failure.INVALID),
    (408, Failure.TRANSIENT),
    (409, Failure.CONFLICT),
    (410, Failure.GONE),
    (413, Failure.INVALID),
    (415, Failure.INVALID),
    (422, Failure.INVALID),
    (429, Failure.TRANSIENT),
    (500, Failure.TRANSIENT),
    (502, Failure.TRANSIENT),
    (503, Failure.TRANSIENT),
    (504, Failure.TRANSIENT),
]


@pytest.mark.parametrize(("code", "expected"), CODES)
def test_classify_api_errors_by_code(code: int, expected: Failure) -> None:
    exc = api_error(code)
    assert classify(exc) is expected
    assert status_code(exc) == code
    assert is_gone(exc) is (expected is Failure.GONE)
    assert is_conflict(exc) is (expected is Failure.CONFLICT)
    assert isinstance(exc, API_ERRORS)


def request() -> httpx2.Request:
    return httpx2.Request("GET", "https://127.0.0.1:6443/api")


@pytest.mark.parametrize(
    "exc",
    [
        httpx2.ReadTimeout("read timed out", request=request()),
        httpx2.ConnectTimeout("connect timed out", request=request()),
        httpx2.ConnectError("connection refused", request=request()),
        httpx2.RemoteProtocolError("server disconnected", request=request()),
        ssl.SSLError("handshake failed"),
        ConnectionResetError("reset by peer"),
        TimeoutError(),
    ],
    ids=lambda e: type(e).__name__,
)
def test_anything_but_an_answer_is_transient(exc: BaseException) -> None:
    assert classify(exc) is Failure.TRANSIENT
    assert status_code(exc) is None
    assert not is_gone(exc)
    assert not is_conflict(exc)
    assert not already_exists(exc)
    assert isinstance(exc, API_ERRORS)


def test_already_exists_is_a_create_conflict_not_a_write_conflict() -> None:
    exists = api_error(409, reason="AlreadyExists")
    stale = api_error(409, reason="Conflict")
    assert already_exists(exists)
    assert not already_exists(stale)
    assert is_conflict(exists)
    assert is_conflict(stale)


def test_resource_versions_compare_as_numbers() -> None:
    def body(version: object) -> dict[str, Any]:
        return {"metadata": {"resourceVersion": version}}

    assert resource_version(body("1234")) == 1234
    assert resource_version(body(None)) is None
    assert resource_version(body("opaque-x")) is None
    assert resource_version(None) is None
    assert older(body("99"), body("100"))  # not as text: "99" > "100"
    assert not older(body("100"), body("99"))
    assert not older(body("5"), None)
    assert not older(body("x"), body("7"))


# --- the three calls, against the in-memory API server ---------------------------------------


def stream(**status: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "image.headwater.dev/v1",
        "kind": "ImageStream",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {"tags": [{"name": "latest"}]},
    }
    if status:
        body["status"] = status
    return body


async def test_get_or_none() -> None:
    kube = FakeKube()
    assert await get_or_none(kube.client, ImageStream, "web", "shop") is None
    kube.add(stream())
    found = await get_or_none(kube.client, ImageStream, "web", "shop")
    assert found is not None
    assert found["spec"] == {"tags": [{"name": "latest"}]}
    for code in (403, 500):
        kube.fail("get", "imagestreams", code=code)
        with pytest.raises(ApiError):
            await get_or_none(kube.client, ImageStream, "web", "shop")
    kube.fail("get", error=httpx2.ReadTimeout("slow", request=request()))
    with pytest.raises(httpx2.ReadTimeout):
        await get_or_none(kube.client, ImageStream, "web", "shop")


async def test_patch_status_writes_status_on_the_version_read() -> None:
    kube = FakeKube()
    read = kube.add(stream(dockerImageRepository="old"))
    version = str(read["metadata"]["resourceVersion"])
    written = await patch_status(
        kube.client, ImageStream.Status, "web", "shop",
        {"tags": [{"tag": "latest"}]}, resource_version=version,
    )  # fmt: skip
    assert written is not None
    assert written["status"] == {"dockerImageRepository": "old", "tags": [{"tag": "latest"}]}
    assert written["metadata"]["resourceVersion"] != version
    [call] = kube.writes
    assert (call.verb, call.resource, call.subresource) == ("patch", "imagestreams", "status")
    assert call.body["metadata"] == {"resourceVersion": version}
    # On the version read before that write: a CONFLICT, and nothing written.
    with pytest.raises(ApiError) as exc:
        await patch_status(
            kube.client, ImageStream.Status, "web", "shop", {"tags": []},
            resource_version=version,
        )  # fmt: skip
    assert classify(exc.value) is Failure.CONFLICT
    assert kube.body(ImageStream, "web", "shop")["status"]["tags"] == [{"tag": "latest"}]
    # Without a precondition it always lands; on a gone object it answers None.
    assert await patch_status(kube.client, ImageStream.Status, "web", "shop", {"tags": []})
    assert await patch_status(kube.client, ImageStream.Status, "api", "shop", {"tags": []}) is None
    kube.fail("patch", "imagestreams", subresource="status", code=500)
    with pytest.raises(ApiError) as exc:
        await patch_status(kube.client, ImageStream.Status, "web", "shop", {"tags": []})
    assert classify(exc.value) is Failure.TRANSIENT


async def test_create_or_conflict() -> None:
    kube = FakeKube()
    created = await create_or_conflict(kube.client, codecs.from_dict(stream()))
    assert created is not None
    assert created["metadata"]["uid"]
    assert await create_or_conflict(kube.client, codecs.from_dict(stream())) is None
    # A 409 that is not AlreadyExists, and any other failure, is the caller's.
    kube.fail("create", code=409, reason="Conflict")
    with pytest.raises(ApiError):
        await create_or_conflict(kube.client, codecs.from_dict(stream()))
    kube.fail("create", code=422)
    with pytest.raises(ApiError):
        await create_or_conflict(kube.client, codecs.from_dict(stream()))


def test_plain_dict_of_objects_and_dicts() -> None:
    obj = ImageStream.from_dict(stream())
    assert plain_dict(obj) == stream()
    body = stream()
    assert plain_dict(body) is body


# --- no status codes outside the adapter ---------------------------------------------------------

PACKAGE = Path(headwater.__file__).parent
STATUS_CODE_CHECK = re.compile(r"\.status\.code\b|\bstatus_code\(")
ALLOWED: set[str] = set()


def status_code_checks() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        where = path.relative_to(PACKAGE).as_posix()
        if where == "kube.py":
            continue
        lines = path.read_text().splitlines()
        hits = [f"{n}: {line.strip()}" for n, line in enumerate(lines, 1)
                if STATUS_CODE_CHECK.search(line)]  # fmt: skip
        if hits:
            found[where] = hits
    return found


def test_no_module_but_the_adapter_reads_api_status_codes() -> None:
    found = status_code_checks()
    unexpected = {where: hits for where, hits in found.items() if where not in ALLOWED}
    assert unexpected == {}, "use headwater.kube (classify, is_gone, ...) instead"
    # An allowed module that no longer needs it leaves the list.
    assert set(found) >= ALLOWED, f"remove {sorted(ALLOWED - set(found))} from ALLOWED"


def test_the_scan_finds_a_check() -> None:
    assert STATUS_CODE_CHECK.search("if exc.status.code == 404:")
    assert STATUS_CODE_CHECK.search("code = kube.status_code(exc)")
    assert not STATUS_CODE_CHECK.search("response.status_code == 200")  # registry HTTP
    assert not STATUS_CODE_CHECK.search('"HTTP requests ... by status code."')
