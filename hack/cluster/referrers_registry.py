"""A registry with the OCI referrers API, built here for the provenance e2e test.

Debian's docker-registry (the local cluster's registry) has no referrers API,
so attestations pushed there use cosign's ``sha256-<hex>.att`` tag. This is
go-containerregistry's registry (``pkg/registry``, the one ``crane registry
serve`` runs) with ``WithReferrersSupport(true)``: an independent
implementation on which Headwater pushes its provenance as an OCI referrer.
The program is ``referrers-registry/main.go``; its go.mod and go.sum pin the
module. Compiled statically and cached under ``~/.cache/headwater/go-bin/``
by that version and a hash of the program (see gobin.py); about 15 s on a warm Go cache.

    python3 hack/cluster/referrers_registry.py build   # prints {"registry": path, ...}

Only the Python standard library is used: this runs before any venv exists.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from gobin import build_command, go_binary

CACHE = Path(os.environ.get("HEADWATER_CACHE", Path.home() / ".cache" / "headwater"))
SOURCE = Path(__file__).resolve().parent / "referrers-registry"
MODULE = "github.com/google/go-containerregistry"
VERSION = "v0.22.1"
"""The go-containerregistry version referrers-registry/go.mod requires (the cache key)."""


def build(cache: Path = CACHE) -> dict[str, str]:
    """The registry binary (built when absent; a change of its source builds anew)."""
    sources = hashlib.sha256()
    for name in ("main.go", "go.mod", "go.sum"):
        sources.update((SOURCE / name).read_bytes())
    key = f"{VERSION}-referrers-{sources.hexdigest()[:12]}"
    binary = go_binary(cache, MODULE, key, None, name="referrers-registry", source=SOURCE)
    return {"registry": str(binary), "version": VERSION}


def main(argv: list[str]) -> int:
    return build_command(argv, __doc__, build)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
