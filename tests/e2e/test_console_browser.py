"""`headwater console` in a real browser (Debian's Chromium, headless, driven by Playwright)
against the real cluster and the real operator.

The console runs as the user runs it (``headwater console --no-browser``, a
subprocess with the test's kubeconfig); one Chromium serves the whole module.
What a person would do and see: the namespace overview; a build started from
the page whose log lines arrive while the page stays open (never reloaded); a
Deployment's trace from the commit to the rollout; a tag promoted from the
page; an action refused by RBAC explained in the page; one action done with
the keyboard alone; and axe-core finding no serious or critical accessibility
violation on any page. Each page's screenshot is kept in ``test-artifacts/console/``.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import kopf.testing
import pytest
import yaml
from playwright.sync_api import Browser, Locator, Page, sync_playwright

from tests.console_browser import Console, axe_script, launch_chromium

from .conftest import REPO
from .helpers import (
    BUILD_TIMEOUT,
    TERMINAL,
    Cluster,
    GitServer,
    build_digest,
    build_json,
    builds_of,
    eventually,
    imagestream,
    wait_until_allowed,
)
from .test_story import deployment, rolled_out

pytestmark = pytest.mark.e2e

ARTIFACTS = REPO / "test-artifacts" / "console"
LOG_LINES = 6
"""The build's Dockerfile prints ``console-line-1`` .. ``-6``, one a second."""
SERIOUS = ("serious", "critical")
ERRORS: dict[Page, list[str]] = {}
"""Per page: its script errors, console errors and failed requests (see :func:`watched`)."""
StartConsole = Callable[..., Console]
"""``start(namespace, kubeconfig=None)``: a running console (stopped after the test)."""


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = launch_chromium(playwright)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="module")
def artifacts(request: pytest.FixtureRequest) -> Iterator[Path]:
    shutil.rmtree(ARTIFACTS, ignore_errors=True)  # only this run's pictures
    ARTIFACTS.mkdir(parents=True)
    yield ARTIFACTS
    # Printed past pytest's output capture, so a plain run shows where they are.
    plugins = request.config.pluginmanager
    reporter, capture = plugins.get_plugin("terminalreporter"), plugins.get_plugin("capturemanager")
    if reporter is not None and capture is not None:
        with capture.global_and_fixture_disabled():
            reporter.write_line(f"\nconsole screenshots: {ARTIFACTS}")


@pytest.fixture
def console_factory(cluster: Cluster, tmp_path: Path) -> Iterator[StartConsole]:
    started: list[Console] = []

    def start(namespace: str, kubeconfig: Path | None = None) -> Console:
        log = tmp_path / f"console-{len(started)}.log"
        console = Console(kubeconfig or cluster.kubeconfig, namespace, log)
        started.append(console)
        console.wait_ready()
        return console

    yield start
    for console in started:
        console.stop()


def new_page(browser: Browser) -> Page:
    """A page in a context of its own (see :func:`watched`)."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    return watched(context.new_page())


def watched(page: Page) -> Page:
    """The page, its console errors (a CSP violation, a script failing) and failed
    requests recorded in :data:`ERRORS` (:func:`no_page_errors` fails on them)."""
    page.set_default_timeout(30_000)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.on(
        "response",
        lambda r: errors.append(f"{r.status} {r.url}") if r.status >= 400 else None,
    )
    ERRORS[page] = errors
    return page


def live(page: Page) -> None:
    """Until the overview says its event stream is connected."""
    page.locator("#live-state").get_by_text("live", exact=True).wait_for()


def no_page_errors(page: Page) -> None:
    # A closed event stream when the test ends a page is not an error of the page.
    real = [e for e in ERRORS[page] if "EventSource" not in e and "ERR_ABORTED" not in e]
    assert not real, real


def accessible(page: Page, what: str) -> None:
    """axe-core (from install-deps' cache) finds nothing serious or critical in the page."""
    script = axe_script()
    assert script.exists(), f"{script} is missing: run hack/install-deps.sh (npm axe-core)"
    page.evaluate(script.read_text())
    violations = page.evaluate(
        """async () => (await axe.run(document, {resultTypes: ['violations']})).violations
             .map(v => ({id: v.id, impact: v.impact, help: v.help,
                         nodes: v.nodes.slice(0, 3).map(n => n.target.join(' '))}))"""
    )
    bad = [v for v in violations if v["impact"] in SERIOUS]
    assert not bad, f"{what}: {json.dumps(bad, indent=1)}"


def screenshot(page: Page, artifacts: Path, name: str) -> None:
    """Keep the page's picture; the page so far had no script error nor failed request."""
    page.screenshot(path=str(artifacts / f"{name}.png"), full_page=True)
    no_page_errors(page)


def build_phase(cluster: Cluster, namespace: str, name: str) -> str:
    return str((build_json(cluster, namespace, name).get("status") or {}).get("phase") or "")


def arrives(
    page: Page, log: Locator, text: str, phase: Callable[[], str], grace: float = 10
) -> None:
    """Until ``text`` is in the page's log; fail soon (not at a long timeout) when the
    build has ended ``grace`` seconds ago and the line still has not arrived."""
    deadline = time.monotonic() + BUILD_TIMEOUT
    ended: float | None = None
    while text not in log.inner_text():
        now = time.monotonic()
        if ended is None and phase() in TERMINAL:
            ended = now
        if ended is not None and now - ended > grace:
            raise AssertionError(f"the build ended and {text!r} never arrived in the open page")
        if now > deadline:
            raise AssertionError(f"{text!r} did not arrive in {BUILD_TIMEOUT}s")
        page.wait_for_timeout(300)


def view_only_kubeconfig(cluster: Cluster, namespace: str, workdir: Path) -> Path:
    """A kubeconfig of a service account bound to the built-in ``view`` role in ``namespace``."""
    account = "console-viewer"
    cluster.kubectl("create", "serviceaccount", account, "-n", namespace)
    cluster.kubectl(
        "create", "rolebinding", "console-viewer", "-n", namespace, "--clusterrole=view",
        f"--serviceaccount={namespace}:{account}",
    )  # fmt: skip
    token = cluster.kubectl("create", "token", account, "-n", namespace).stdout.strip()
    admin = yaml.safe_load(cluster.kubeconfig.read_text())
    current = next(c for c in admin["contexts"] if c["name"] == admin["current-context"])
    server = next(c for c in admin["clusters"] if c["name"] == current["context"]["cluster"])
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [server],
        "users": [{"name": account, "user": {"token": token}}],
        "contexts": [
            {
                "name": account,
                "context": {"cluster": server["name"], "user": account, "namespace": namespace},
            }
        ],
        "current-context": account,
    }
    path = workdir / "viewer.kubeconfig"
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    wait_until_allowed(
        cluster, "get", "imagestreams.image.headwater.dev", "-n", namespace, "--kubeconfig",
        str(path),
    )  # fmt: skip
    return path


def test_a_build_started_from_the_page_streams_its_log_then_traces_to_the_rollout(
    cluster: Cluster,
    namespace: str,
    git_server: GitServer,
    operator_in_process: kopf.testing.KopfRunner,
    browser: Browser,
    artifacts: Path,
    console_factory: StartConsole,
) -> None:
    busybox = cluster.image("busybox")
    cluster.need_registry()
    url, sha = git_server.repo(
        {
            "Dockerfile": (
                f"FROM {busybox}\n"
                # Lines a second apart, after a pause: the page is open before the first.
                "RUN sleep 3; for i in $(seq 1 "
                f"{LOG_LINES}); do echo console-line-$i; sleep 1; done\n"
                'CMD ["sh", "-c", "echo up; exec sleep 3600"]\n'
            ),
        },
        message="Console test commit",
    )
    cluster.apply([imagestream("web")], namespace)
    cluster.apply(
        {
            "apiVersion": "build.headwater.dev/v1",
            "kind": "BuildConfig",
            "metadata": {"name": "web"},
            "spec": {
                "source": {"type": "Git", "git": {"uri": url, "ref": "main"}},
                "strategy": {"type": "Docker", "dockerStrategy": {}},
                "output": {"to": {"kind": "ImageStreamTag", "name": "web:latest"}},
            },
        },
        namespace,
    )
    cluster.apply(deployment("web", "web:latest"), namespace)
    console = console_factory(namespace)
    assert console.printed_url() == console.url(f"/ns/{namespace}")

    # The overview: the BuildConfig and the stream are there, no build yet. It stays
    # open in its own tab through what follows, never reloaded.
    overview = new_page(browser)
    overview.goto(console.url(f"/ns/{namespace}"))
    overview.get_by_role("heading", name=re.compile(f"Namespace.*{namespace}")).wait_for()
    overview.locator("#bcs-section").get_by_role("link", name="web", exact=True).wait_for()
    live(overview)
    assert "0 builds" in overview.locator("#builds-section").inner_text()
    accessible(overview, "overview")
    screenshot(overview, artifacts, "overview-empty")
    overview_navigations: list[str] = []
    overview.on("framenavigated", lambda frame: overview_navigations.append(frame.url))

    # Start a build from the BuildConfig's page; the build's page follows its log live.
    page = watched(overview.context.new_page())
    page.goto(console.url(f"/ns/{namespace}"))
    page.locator("#bcs-section").get_by_role("link", name="web", exact=True).click()
    page.get_by_role("heading", name=re.compile("BuildConfig web")).wait_for()
    accessible(page, "buildconfig")
    screenshot(page, artifacts, "buildconfig")
    page.get_by_role("button", name="Start build").click()
    # The new build shows up in the page's build list by itself (no reload).
    page.get_by_role("link", name="web-1", exact=True).first.click()
    page.get_by_role("heading", name=re.compile("Build web-1")).wait_for()
    log = page.get_by_role("log", name="Build log")
    navigations: list[str] = []
    page.on("framenavigated", lambda frame: navigations.append(frame.url))
    # The page was opened before the build printed its lines: they arrive into it.
    assert "console-line-1" not in log.inner_text()
    cancel = page.get_by_role("button", name="Cancel build")
    assert cancel.count() == 1, "a running build is not offered Cancel"
    arrives(page, log, "console-line-1", lambda: build_phase(cluster, namespace, "web-1"))
    early = log.inner_text()
    log.get_by_text(f"console-line-{LOG_LINES}").wait_for(timeout=60_000)
    assert f"console-line-{LOG_LINES}" not in early, "the log did not arrive line by line"
    digest = build_digest(cluster, namespace, "web-1")
    page.get_by_text("Complete").first.wait_for(timeout=60_000)
    # Ended: Cancel is withdrawn by itself; no "waiting for the build step" is left over,
    # and kaniko's colours are not shown as "[36mINFO[0m".
    cancel.wait_for(state="detached", timeout=10_000)
    # The log's stream ends once its reader sees the phase (it polls for it after the
    # build step's log ended, saying it waits): the facts may say Complete a moment before.
    ended = page.locator('p[sse-swap="end"]', has_text="The log ended: the build is Complete.")
    ended.wait_for(timeout=60_000)
    waiting = page.locator('p[sse-swap="waiting"]').inner_text()
    assert "waiting" not in waiting.lower(), f"a stale wait is shown: {waiting!r}"
    text = log.inner_text()
    assert "\x1b" not in text
    assert "[0m" not in text, "terminal colour codes in the log"
    assert navigations == [], f"the page reloaded: {navigations}"
    accessible(page, "build")
    screenshot(page, artifacts, "build")

    # The trace of the Deployment: commit -> build -> digest -> tag -> rollout, each step done.
    rolled_out(cluster, namespace, "web", digest)
    page.goto(console.url(f"/ns/{namespace}/trace?deployment=web"))
    trace = page.locator("ol.trace")
    page.get_by_text(re.compile(r": complete\b")).wait_for(timeout=60_000)
    steps = trace.locator("li")
    assert steps.count() >= 5, trace.inner_text()
    assert trace.locator("li.pending").count() == 0, trace.inner_text()
    text = trace.inner_text()
    for expected in (sha[:7], "web-1", digest[7:19], "web:latest"):
        assert expected in text, f"{expected} not in the trace:\n{text}"
    accessible(page, "trace")
    screenshot(page, artifacts, "trace")

    # Promote web:latest to web:prod from the stream's page; the tag gets the build's digest.
    page.goto(console.url(f"/ns/{namespace}/imagestreams/web"))
    page.get_by_role("heading", name=re.compile("ImageStream web")).wait_for()
    accessible(page, "imagestream")
    page.get_by_label("Source (tag or image)").fill("web:latest")
    page.get_by_label("Destination tag").fill("web:prod")
    page.get_by_role("button", name="Tag", exact=True).click()
    page.locator("#promote-result").get_by_role("status").wait_for()

    def promoted() -> bool:
        stream = cluster.get_json("is/web", "-n", namespace)
        return any(
            t.get("tag") == "prod" and (t.get("items") or [{}])[0].get("image") == digest
            for t in (stream.get("status") or {}).get("tags") or []
        )

    eventually("web:prod at the build's digest", promoted, timeout=60)
    # The page shows the new tag by itself.
    page.get_by_role("heading", name="web:prod").wait_for()
    # Who follows web:latest: the Deployment. The answer outlives a live update of the tags.
    page.get_by_role("link", name="Who follows web:latest").click()
    followers = page.locator("#followers-result")
    followers.get_by_role("cell", name="Deployment", exact=True).wait_for()
    page.evaluate("document.querySelector('#tags-h').dataset.before = 'yes'")
    cluster.kubectl("annotate", "is/web", "-n", namespace, "console-test/touched=yes")
    page.locator("#tags-h[data-before]").wait_for(state="detached", timeout=30_000)
    assert followers.get_by_role("cell", name="Deployment", exact=True).is_visible()
    accessible(page, "imagestream with its followers")
    screenshot(page, artifacts, "imagestream")

    # The overview tab, never reloaded, lists the build as Complete and the new tag.
    overview.bring_to_front()
    row = overview.locator("#builds-section tr", has_text="web-1")
    try:
        row.get_by_text("Complete").wait_for()
    except Exception:
        screenshot(overview, artifacts, "overview-not-updated")
        raise AssertionError(
            f"the open overview did not update: {overview.locator('main').inner_text()}"
        ) from None
    overview.locator("#streams-section").get_by_text("prod").wait_for()
    assert overview_navigations == [], f"the overview reloaded: {overview_navigations}"
    screenshot(overview, artifacts, "overview")
    assert [b["metadata"]["name"] for b in builds_of(cluster, namespace)] == ["web-1"]
    no_page_errors(page)
    page.context.close()


def viewer_console(
    cluster: Cluster, namespace: str, tmp_path: Path, console_factory: StartConsole
) -> Console:
    """A console of a user who may read the stream ``base`` and may not change it."""
    cluster.apply(
        {
            **imagestream("base"),
            "spec": {"tags": [{"name": "latest", "from": {"kind": "DockerImage",
                                                          "name": "127.0.0.1:9/none:1"}}]},
        },
        namespace,
    )  # fmt: skip
    viewer = view_only_kubeconfig(cluster, namespace, tmp_path)
    cant = cluster.kubectl(
        "auth", "can-i", "patch", "imagestreams.image.headwater.dev", "-n", namespace,
        "--kubeconfig", str(viewer), check=False,
    )  # fmt: skip
    assert cant.stdout.strip() == "no"
    return console_factory(namespace, viewer)


FORBIDDEN = re.compile(r"forbidden|not allowed|may not|cannot", re.I)


def test_a_forbidden_action_is_explained_and_actions_work_by_keyboard(
    cluster: Cluster,
    namespace: str,
    browser: Browser,
    artifacts: Path,
    console_factory: StartConsole,
    tmp_path: Path,
) -> None:
    console = viewer_console(cluster, namespace, tmp_path, console_factory)
    page = new_page(browser)
    page.goto(console.url(f"/ns/{namespace}/imagestreams/base"))
    page.get_by_role("heading", name=re.compile("ImageStream.*base")).wait_for()
    # Keyboard only: Tab to "Import latest now" and press Enter.
    button = page.get_by_role("button", name="Import latest now")
    button.wait_for()
    for _ in range(60):
        page.keyboard.press("Tab")
        if button.evaluate("b => b === document.activeElement"):
            break
    else:
        raise AssertionError("Import now is not reachable with Tab")
    page.keyboard.press("Enter")
    alert = page.get_by_role("alert")
    alert.wait_for()
    text = alert.inner_text()
    assert FORBIDDEN.search(text), text
    # It says who was refused what, not just that something failed.
    assert re.search(r"console-viewer|patch|update", text), text
    body = page.locator("body").inner_text()
    assert "Traceback" not in body
    assert "ApiError" not in body
    accessible(page, "forbidden")
    screenshot(page, artifacts, "forbidden")
    page.context.close()


def test_without_javascript_an_action_is_a_form_the_browser_posts(
    cluster: Cluster,
    namespace: str,
    browser: Browser,
    console_factory: StartConsole,
    tmp_path: Path,
) -> None:
    """Each action is a plain form too. Posted by the browser itself, its answer is a page
    (here the viewer's refusal): not the bare "refused: cross-origin request" it once was,
    when the pages' ``Referrer-Policy: no-referrer`` made the browser send ``Origin: null``."""
    console = viewer_console(cluster, namespace, tmp_path, console_factory)
    context = browser.new_context(java_script_enabled=False)
    page = watched(context.new_page())
    page.goto(console.url(f"/ns/{namespace}/imagestreams/base"))
    page.get_by_role("button", name="Import latest now").click()
    alert = page.get_by_role("alert")
    alert.wait_for()
    assert FORBIDDEN.search(alert.inner_text()), alert.inner_text()
    assert page.url == console.url(f"/ns/{namespace}/imagestreams/base/import")
    page.get_by_role("link", name="Back").click()
    page.get_by_role("heading", name=re.compile("ImageStream.*base")).wait_for()
    context.close()
