"""The kinds ``get``, ``describe`` and ``set triggers`` take, and the names users give them.

kubectl-style: short names (``is``, ``bc``), singular and plural, and the
fully qualified ``buildconfigs.build.headwater.dev``, case-insensitive;
``KIND/NAME`` works where ``KIND NAME`` does.
"""

from __future__ import annotations

from dataclasses import dataclass


class KindError(ValueError):
    """A kind the verb does not know; the message lists the ones it does."""


@dataclass(frozen=True)
class Kind:
    kind: str
    plural: str
    group: str
    """API group; "" for the core group."""
    version: str
    short: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()
    """Accepted too, never suggested."""
    virtual: bool = False
    """Not stored by the API server: a view the CLI computes (ImageStreamTag)."""

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def qualified(self) -> str:
        """``buildconfigs.build.headwater.dev``, as kubectl's errors name a resource."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def object_name(self, name: str) -> str:
        """``-o name``: ``buildconfig.build.headwater.dev/web``."""
        prefix = f"{self.singular}.{self.group}" if self.group else self.singular
        return f"{prefix}/{name}"

    @property
    def hint(self) -> str:
        """The name help and errors suggest: the short one, else the singular."""
        return self.short[0] if self.short else self.singular

    @property
    def names(self) -> tuple[str, ...]:
        names = [*self.short, self.singular, self.plural, *self.aliases]
        if self.group:
            names += [f"{self.singular}.{self.group}", f"{self.plural}.{self.group}"]
        return tuple(names)


IMAGESTREAM = Kind("ImageStream", "imagestreams", "image.headwater.dev", "v1", ("is",))
IMAGESTREAMTAG = Kind(
    "ImageStreamTag", "imagestreamtags", "image.headwater.dev", "v1", ("istag",), virtual=True
)
BUILDCONFIG = Kind("BuildConfig", "buildconfigs", "build.headwater.dev", "v1", ("bc",))
# The CRD's short name is hwbuild (kubectl's "build" is ambiguous on OpenShift); "build" is
# already short here.
BUILD = Kind("Build", "builds", "build.headwater.dev", "v1", aliases=("hwbuild",))

DEPLOYMENT = Kind("Deployment", "deployments", "apps", "v1", ("deploy",))
STATEFULSET = Kind("StatefulSet", "statefulsets", "apps", "v1", ("sts",))
DAEMONSET = Kind("DaemonSet", "daemonsets", "apps", "v1", ("ds",))
CRONJOB = Kind("CronJob", "cronjobs", "batch", "v1", ("cj",))
JOB = Kind("Job", "jobs", "batch", "v1")

VIEWABLE = (IMAGESTREAM, IMAGESTREAMTAG, BUILDCONFIG, BUILD)
"""What ``get`` and ``describe`` show."""
WORKLOADS = (DEPLOYMENT, STATEFULSET, DAEMONSET, CRONJOB, JOB)
TRIGGERABLE = (BUILDCONFIG, *WORKLOADS)
"""What ``set triggers`` edits."""


def resolve(text: str, among: tuple[Kind, ...] = VIEWABLE) -> Kind:
    wanted = text.strip().lower()
    for kind in among:
        if wanted in kind.names:
            return kind
    accepted = ", ".join(k.hint for k in among)
    raise KindError(f"unknown resource type {text!r}: use one of {accepted}")


def split_target(text: str, among: tuple[Kind, ...] = VIEWABLE) -> tuple[Kind, str]:
    """``bc/web`` -> (BuildConfig, "web")."""
    kind, sep, name = text.partition("/")
    if not sep or not name:
        raise KindError(f"{text!r}: expected TYPE/NAME, e.g. bc/web")
    return resolve(kind, among), name


def kind_and_names(
    kind_arg: str, names: tuple[str, ...], among: tuple[Kind, ...] = VIEWABLE
) -> tuple[Kind, tuple[str, ...]]:
    """``get bc web`` and ``get bc/web``, as kubectl takes them (one kind per call)."""
    if "/" not in kind_arg:
        return resolve(kind_arg, among), names
    kind, first = split_target(kind_arg, among)
    rest = []
    for name in names:
        other, sep, plain = name.partition("/")
        if sep:
            if resolve(other, among) != kind:
                raise KindError("give names of one type per call")
            rest.append(plain)
        else:
            raise KindError(f"{name!r}: after TYPE/NAME, give more names as TYPE/NAME too")
    return kind, (first, *rest)
