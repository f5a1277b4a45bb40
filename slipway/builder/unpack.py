"""Unpacking a pushed revision (a ``git archive`` tarball) into a build directory.

A push is hostile until proven otherwise. Its archive can hold a symlink and,
later, a member whose path runs through that symlink (git lets such a tree in
when its objects are not checked), or absolute and ``..`` paths, or links that
point out of the tree. Nothing here ever follows a symlink while writing:
every directory is opened relative to its parent with ``O_NOFOLLOW``, every
file is created with ``O_EXCL | O_NOFOLLOW``, so a member can only land inside
the build directory whatever came before it. Symlinks themselves are kept when
they resolve inside the tree, as on Heroku.
"""

from __future__ import annotations

import os
import posixpath
import shutil
import tarfile
from pathlib import Path

from slipway.builder.plan import BuildError

CHUNK = 1024 * 1024
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class UnsafeSource(BuildError):
    """The archive holds a member that would leave the build directory."""


def unpack_source(archive_path: Path, dest: Path, *, max_bytes: int) -> None:
    """Unpack ``archive_path`` into the empty directory ``dest``.

    Regular files, directories and symlinks only; file modes keep their
    executable bits and lose setuid, setgid and sticky bits. Raises UnsafeSource
    naming the first member that is absolute, climbs out with ``..``, appears
    twice, runs through a symlink, is of another kind (hard link, device,
    fifo) or is a symlink resolving outside ``dest``; BuildError when the
    unpacked files pass ``max_bytes``. ``dest`` is left empty on any error.
    """
    root = dest.resolve()
    try:
        symlinks = _unpack(archive_path, root, max_bytes)
        for name in symlinks:
            target = Path(os.path.realpath(root / name))
            if not target.is_relative_to(root):
                raise _unsafe(name, "it is a symlink that points outside the app")
    except BaseException:
        _empty(root)
        raise


def _unpack(archive_path: Path, root: Path, max_bytes: int) -> list[str]:
    written = 0
    symlinks: list[str] = []
    root_fd = os.open(root, _DIR_FLAGS)
    try:
        with tarfile.open(archive_path) as archive:
            for member in archive:
                parts = _parts(member)
                if member.isfile():
                    written += member.size
                    if written > max_bytes:
                        raise BuildError(
                            f"The pushed tree is larger than {max_bytes / (1024 * 1024):g} MB "
                            "unpacked (SLIPWAY_MAX_PUSH_BYTES)")
                parent_fd = _open_parent(root_fd, member.name, parts[:-1])
                try:
                    _write(archive, member, parent_fd, parts[-1])
                finally:
                    if parent_fd != root_fd:
                        os.close(parent_fd)
                if member.issym():
                    symlinks.append("/".join(parts))
    except tarfile.TarError as exc:
        raise BuildError(f"The pushed revision could not be read: {exc}") from None
    finally:
        os.close(root_fd)
    return symlinks


def _parts(member: tarfile.TarInfo) -> list[str]:
    """The path components of a member's name, refused when it is not a plain relative
    path of a kind an app's tree can hold."""
    name = member.name
    if not (member.isfile() or member.isdir() or member.issym()):
        raise _unsafe(name, "only files, directories and symlinks can be unpacked")
    if name.startswith("/") or "\0" in name:
        raise _unsafe(name, "its path is absolute")
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if not parts:
        if member.isdir():
            return ["."]  # the top directory itself
        raise _unsafe(name, "it has no name")
    if ".." in parts:
        raise _unsafe(name, "its path climbs out with ..")
    if member.issym():
        link = member.linkname
        if link.startswith("/") or "\0" in link:
            raise _unsafe(name, "it is a symlink to an absolute path")
        if posixpath.normpath(posixpath.join(posixpath.dirname(name), link)).startswith(".."):
            raise _unsafe(name, "it is a symlink that points outside the app")
    return parts


def _open_parent(root_fd: int, name: str, parents: list[str]) -> int:
    """A descriptor of the directory ``parents`` under the root, made as needed; never
    through a symlink."""
    fd = root_fd
    try:
        for part in parents:
            try:
                os.mkdir(part, 0o755, dir_fd=fd)
            except FileExistsError:
                pass
            try:
                child = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except OSError:  # ELOOP: a symlink; ENOTDIR: a file
                raise _unsafe(name, "its path runs through a symlink or a file") from None
            if fd != root_fd:
                os.close(fd)
            fd = child
    except BaseException:
        if fd != root_fd:
            os.close(fd)
        raise
    return fd


def _write(archive: tarfile.TarFile, member: tarfile.TarInfo, parent_fd: int, last: str) -> None:
    name = member.name
    if member.isdir():
        if last == ".":
            return
        try:
            os.mkdir(last, 0o755, dir_fd=parent_fd)
        except FileExistsError:
            # Made already as the parent of an earlier member; anything else there is not.
            try:
                os.close(os.open(last, _DIR_FLAGS, dir_fd=parent_fd))
            except OSError:
                raise _unsafe(name, "it appears twice") from None
        return
    try:
        if member.issym():
            os.symlink(member.linkname, last, dir_fd=parent_fd)
            return
        mode = 0o755 if member.mode & 0o111 else 0o644
        fd = os.open(last, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     mode, dir_fd=parent_fd)
    except FileExistsError:
        raise _unsafe(name, "it appears twice") from None
    source = archive.extractfile(member)
    with os.fdopen(fd, "wb") as out:
        if source is not None:
            shutil.copyfileobj(source, out, CHUNK)


def _unsafe(name: str, why: str) -> UnsafeSource:
    return UnsafeSource(f"Refusing to unpack {name!r}: {why}")


def _empty(root: Path) -> None:
    for child in root.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)
