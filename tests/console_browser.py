"""What the console's browser tests and its bench share: the console process and Chromium.

The browser is Debian's Chromium (``hack/install-deps.sh`` installs the
package), driven by Playwright for Python with ``executable_path``: nothing is
ever downloaded (``playwright install`` is never run). axe-core, the
accessibility checker run inside the pages, comes from the npm registry into a
cache outside the checkout (install-deps again).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO

from playwright.sync_api import Browser, Playwright

from tests.registry_servers import free_port

CHROMIUM = os.environ.get("HEADWATER_CHROMIUM", "/usr/bin/chromium")
"""Debian's Chromium; ``HEADWATER_CHROMIUM`` names another build of it."""
HEADWATER = str(Path(sys.executable).parent / "headwater")
AXE_VERSION = "4.10.3"
"""As hack/install-deps.sh fetches it."""


def axe_script() -> Path:
    """axe.min.js in the cache install-deps fills (``$XDG_CACHE_HOME/headwater/axe-core``)."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "headwater" / "axe-core" / AXE_VERSION / "axe.min.js"


def chromium_args() -> list[str]:
    """Flags for Chromium as root in a container (no user namespaces for its sandbox)."""
    return ["--no-sandbox"] if os.geteuid() == 0 else []


def launch_chromium(playwright: Playwright) -> Browser:
    """Headless Chromium from Debian's package, through Playwright's sync API."""
    if not Path(CHROMIUM).exists():
        raise RuntimeError(f"{CHROMIUM} is missing: run hack/install-deps.sh (Debian's chromium)")
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=chromium_args())


class Console:
    """``headwater console --no-browser`` as a subprocess on a free loopback port."""

    def __init__(
        self, kubeconfig: Path, namespace: str, log: Path, *, port: int | None = None
    ) -> None:
        self.port = port or free_port()
        self.namespace = namespace
        self.log = log
        self._out: IO[bytes] = log.open("ab")
        env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
        self.process = subprocess.Popen(
            [
                HEADWATER, "console", "--no-browser", "--address", "127.0.0.1",
                "--port", str(self.port), "-n", namespace, "--kubeconfig", str(kubeconfig),
            ],
            env=env,
            stdout=self._out,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        self.base = f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 30, path: str = "/") -> None:
        """Until the console answers ``path`` on its port (it exited: raise with its
        output). ``/`` redirects to the overview, which it then renders once."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"headwater console exited:\n{self.output()[-4000:]}")
            try:
                with urllib.request.urlopen(self.base + path, timeout=5):  # noqa: S310 - loopback
                    return
            except urllib.error.HTTPError:
                return  # it answers (a redirect target may refuse; that is still an answer)
            except OSError:
                time.sleep(0.2)
        raise AssertionError(f"headwater console did not answer in {timeout}s:\n{self.output()}")

    def output(self) -> str:
        self._out.flush()
        return self.log.read_text(errors="replace")

    def url(self, path: str) -> str:
        return self.base + path

    def printed_url(self) -> str | None:
        """The address the console printed for the user, if it printed one."""
        found = re.search(r"http://127\.0\.0\.1:\d+\S*", self.output())
        return found.group(0) if found else None

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=15)
        self._out.close()
