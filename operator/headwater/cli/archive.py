"""The gzipped tar of a local folder that ``start-build --from-dir`` uploads.

What goes in is what git would commit: ``.gitignore`` files (the root's and
nested ones) and the root's ``.headwaterignore`` are honoured with git's rules,
through pathspec rather than a matcher of our own, and ``.git`` is never sent.
Symlinks travel as symlinks and are never followed, so nothing outside the
folder can leak into a build.
"""

from __future__ import annotations

import gzip
import os
import stat
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from pathspec import GitIgnoreSpec

GITIGNORE = ".gitignore"


class ArchiveError(ValueError):
    """The folder cannot be archived; the message is the one line the CLI prints."""


@dataclass(frozen=True)
class ArchiveStats:
    """``files``: regular files (hard links included); ``bytes_uncompressed``: their
    sizes added up; ``bytes_compressed``: what was written to ``out``."""

    files: int
    bytes_uncompressed: int
    bytes_compressed: int


@dataclass(frozen=True)
class _Rules:
    """The patterns of one ignore file, which apply below ``base`` ("" or "dir/")."""

    base: str
    spec: GitIgnoreSpec

    def verdict(self, rel: str) -> bool | None:
        """True: ignored, False: re-included by a ``!`` pattern, None: no pattern matched."""
        if not rel.startswith(self.base):
            return None
        return self.spec.check_file(rel[len(self.base) :]).include


def _is_ignored(rel: str, layers: Sequence[_Rules]) -> bool:
    # git's precedence: a deeper file's match beats a shallower one's, and within
    # one file the last matching pattern wins (which check_file already does).
    for rules in layers:
        verdict = rules.verdict(rel)
        if verdict is not None:
            return verdict
    return False


def _load_rules(path: Path, base: str, shown: str) -> _Rules | None:
    # git does not follow a symlinked .gitignore either; neither do we.
    try:
        if not stat.S_ISREG(path.lstat().st_mode):
            return None
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ArchiveError(f"cannot read {shown}: {exc.strerror or exc}") from None
    return _Rules(base, GitIgnoreSpec.from_lines(text.splitlines()))


class _CountingWriter:
    """Counts the compressed bytes on their way to ``out``."""

    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self.count = 0

    def write(self, data: bytes) -> int:
        self._out.write(data)
        self.count += len(data)
        return len(data)

    def flush(self) -> None:
        self._out.flush()


class _SourceReader:
    """A file's content for tarfile, whose read errors name the file in the archive."""

    def __init__(self, fh: BinaryIO, rel: str, size: int) -> None:
        self._fh = fh
        self._rel = rel
        self._left = size

    def read(self, n: int = -1) -> bytes:
        want = self._left if n < 0 else min(n, self._left)
        try:
            data = self._fh.read(want)
        except OSError as exc:
            raise ArchiveError(f"cannot read {self._rel}: {exc.strerror or exc}") from None
        # tarfile would say only "unexpected end of data".
        if len(data) < want:
            raise ArchiveError(f"{self._rel} shrank while it was being archived; try again")
        self._left -= len(data)
        return data


class _Archiver:
    def __init__(self, root: Path, tar: tarfile.TarFile, top: _Rules | None) -> None:
        self.root = root
        self.tar = tar
        self.top = top
        self.files = 0
        self.size = 0

    def add_tree(self, rel_dir: str, gitignores: list[_Rules]) -> None:
        """Add what is in ``rel_dir`` ("" or "a/b/"); ``gitignores`` deepest first."""
        where = self.root / rel_dir if rel_dir else self.root
        rules = _load_rules(where / GITIGNORE, rel_dir, rel_dir + GITIGNORE)
        if rules is not None:
            gitignores = [rules, *gitignores]
        layers = [self.top, *gitignores] if self.top else gitignores
        try:
            with os.scandir(where) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            raise ArchiveError(f"cannot list {rel_dir or '.'}: {exc.strerror or exc}") from None
        for entry in entries:
            # Nested repositories' and submodules' .git too: git never commits one.
            if entry.name == ".git":
                continue
            rel = rel_dir + entry.name
            try:
                is_dir = entry.is_dir(follow_symlinks=False)
            except OSError as exc:
                raise ArchiveError(f"cannot stat {rel}: {exc.strerror or exc}") from None
            # A trailing slash lets dir-only patterns ("build/") match directories alone.
            if _is_ignored(rel + "/" if is_dir else rel, layers):
                continue
            self.add_entry(Path(entry.path), rel)
            if is_dir:
                self.add_tree(rel + "/", gitignores)

    def add_entry(self, path: Path, rel: str) -> None:
        try:
            info = self.tar.gettarinfo(str(path), arcname=rel)
        except OSError as exc:
            raise ArchiveError(f"cannot stat {rel}: {exc.strerror or exc}") from None
        if info is None or not (info.isreg() or info.isdir() or info.issym() or info.islnk()):
            # Sockets, FIFOs and devices mean nothing to a build (and a FIFO would block).
            return
        # The developer's user and group names are of no use in the pod, and
        # whole seconds keep the headers plain ustar.
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        info.mtime = max(0, int(info.mtime))
        if not info.isreg():
            if info.islnk():
                self.files += 1
            self.tar.addfile(info)
            return
        try:
            fh = path.open("rb")
        except OSError as exc:
            raise ArchiveError(f"cannot read {rel}: {exc.strerror or exc}") from None
        with fh:
            self.tar.addfile(info, _SourceReader(fh, rel, info.size))
        self.files += 1
        self.size += info.size


def make_archive(
    source: Path, out: BinaryIO, *, ignore_file: str = ".headwaterignore"
) -> ArchiveStats:
    """Write a gzipped tar of ``source``'s contents to ``out``; names are relative
    to ``source`` ("src/app.py"), sorted, so the same tree gives the same archive.

    Ignore rules: every ``.gitignore`` (git's semantics: ``!`` negation,
    ``dir/`` for directories only, ``/``-anchored patterns, deeper files first),
    then ``ignore_file`` at the root, which has the last word (so it can also
    re-include what a ``.gitignore`` leaves out). ``.git`` is always skipped; so
    are sockets, FIFOs and devices. Raises ``ArchiveError``.
    """
    root = Path(source)
    try:
        st = root.stat()
    except FileNotFoundError:
        raise ArchiveError(f"{source}: no such directory") from None
    except OSError as exc:
        raise ArchiveError(f"{source}: {exc.strerror or exc}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise ArchiveError(f"{source} is not a directory")
    writer = _CountingWriter(out)
    # mtime=0 and no name in the gzip header: the same tree gives the same bytes.
    with (
        gzip.GzipFile(filename="", mode="wb", fileobj=writer, mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        # The root's ignore file outranks every .gitignore, the root's included.
        archiver = _Archiver(root, tar, _load_rules(root / ignore_file, "", ignore_file))
        archiver.add_tree("", [])
    writer.flush()
    return ArchiveStats(archiver.files, archiver.size, writer.count)
