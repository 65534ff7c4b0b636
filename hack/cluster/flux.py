"""Flux's source-controller and kustomize-controller, built here for the GitOps tests.

Both are compiled statically from the Go module proxy at pinned versions (Flux
2.7's controllers, which build with this machine's Go) and cached under
``~/.cache/headwater/go-bin/`` by module@version (see gobin.py): a cold build
takes a few minutes once. Their CRDs (all of them: each controller
watches every source kind) come from each module's ``config/crd/bases``.

    python3 hack/cluster/flux.py build   # prints {"source-controller": path, ..., "crds": [...]}

Only the Python standard library is used: this runs before any venv exists.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from gobin import build_command, go_binary, module_dir

CACHE = Path(os.environ.get("HEADWATER_CACHE", Path.home() / ".cache" / "headwater"))

# (module, version, go.sum h1: hash of the module zip). Both keep their `api`
# submodule beside them (replaced by ./api in go.mod, which the published zip
# lacks): the build takes the published api module at the version go.mod requires.
CONTROLLERS = {
    "source-controller": (
        "github.com/fluxcd/source-controller",
        "v1.7.3",
        "h1:gFfeBiNUgF0kFFGap/rrMeJqz+0Tod0ARENJO8w/UA8=",
    ),
    "kustomize-controller": (
        "github.com/fluxcd/kustomize-controller",
        "v1.7.3",
        "h1:SzNnGn/4ObAPEHHleM5U7y/AKxKXph3Vj6ZhteeXw8M=",
    ),
}


def build(cache: Path = CACHE) -> dict[str, object]:
    """Each controller's binary (built when absent) and the CRDs they need."""
    result: dict[str, object] = {}
    crds: list[str] = []
    for name, (module, version, zip_sum) in CONTROLLERS.items():
        binary = go_binary(
            cache, module, version, zip_sum, name=name, published_submodules=("api",)
        )
        result[name] = str(binary)
        result[f"{name}-version"] = version
        bases = module_dir(module, version, zip_sum) / "config" / "crd" / "bases"
        # Every kind each controller watches must be served, or it does not start.
        crds += sorted(str(crd) for crd in bases.glob("*.yaml"))
    result["crds"] = crds
    return result


def main(argv: list[str]) -> int:
    return build_command(argv, __doc__, build)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
