"""cosign, built here as the independent checker of Headwater's signatures.

Compiled statically from the Go module proxy at a pinned version and cached
under ``~/.cache/headwater/go-bin/`` by module@version (see gobin.py): a cold
build takes a few minutes once (measured: see docs/supply-chain.md). The e2e
tests (tests/e2e/test_signing.py) run it as ``cosign verify --key ...
--insecure-ignore-tlog=true``: no Rekor or Fulcio is reachable from the test
machines, so signatures carry no transparency-log entry.

    python3 hack/cluster/cosign_bin.py build   # prints {"cosign": path, "version": ...}

Only the Python standard library is used: this runs before any venv exists.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from gobin import build_command, go_binary

CACHE = Path(os.environ.get("HEADWATER_CACHE", Path.home() / ".cache" / "headwater"))

# (module, version, go.sum h1: hash of the module zip).
MODULE = "github.com/sigstore/cosign/v2"
VERSION = "v2.6.5"
ZIP_SUM = "h1:D7kFSWS2HzfD+LpEuBO89D1KfOAODlkWuuhzXS8yzi0="


def build(cache: Path = CACHE) -> dict[str, str]:
    """The cosign binary (built when absent)."""
    binary = go_binary(cache, MODULE, VERSION, ZIP_SUM, "cmd/cosign", name="cosign")
    return {"cosign": str(binary), "version": VERSION}


def main(argv: list[str]) -> int:
    return build_command(argv, __doc__, build)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
