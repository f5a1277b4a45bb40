import io
import os
import tarfile

import pytest

from slipway.builder.plan import BuildError
from slipway.builder.unpack import unpack_source


def make_tar(path, entries):
    with tarfile.open(path, "w") as tar:
        for name, kind, extra in entries:
            info = tarfile.TarInfo(name)
            if kind == "file":
                info.size = len(extra)
                tar.addfile(info, io.BytesIO(extra))
            elif kind == "sym":
                info.type, info.linkname = tarfile.SYMTYPE, extra
                tar.addfile(info)
            elif kind == "hard":
                info.type, info.linkname = tarfile.LNKTYPE, extra
                tar.addfile(info)
            elif kind == "fifo":
                info.type = tarfile.FIFOTYPE
                tar.addfile(info)


def test_a_normal_tree_is_unpacked(tmp_path):
    make_tar(tmp_path / "a.tar", [("app.py", "file", b"print(1)\n"), ("lib/x.py", "file", b""),
                                  ("link.py", "sym", "app.py")])
    dest = tmp_path / "out"
    dest.mkdir()
    unpack_source(tmp_path / "a.tar", dest, max_bytes=1 << 20)
    assert (dest / "app.py").read_bytes() == b"print(1)\n"
    assert (dest / "link.py").resolve() == (dest / "app.py").resolve()


@pytest.mark.parametrize("entry", [
    ("../evil.py", "file", b"x"),
    ("/etc/evil", "file", b"x"),
    ("up", "sym", "../../etc/passwd"),
    ("abs", "sym", "/etc/passwd"),
    ("hard", "hard", "/etc/passwd"),
    ("pipe", "fifo", None),
])
def test_entries_outside_the_tree_are_refused(tmp_path, entry):
    make_tar(tmp_path / "a.tar", [entry])
    dest = tmp_path / "out"
    dest.mkdir()
    with pytest.raises(BuildError, match="Refusing to unpack"):
        unpack_source(tmp_path / "a.tar", dest, max_bytes=1 << 20)
    assert list(dest.iterdir()) == []


def _dir(tar, name):
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = 0o755
    tar.addfile(info)


def _file(tar, name, data=b"x", mode=0o644):
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), mode
    tar.addfile(info, io.BytesIO(data))


def _link(tar, name, target):
    info = tarfile.TarInfo(name)
    info.type, info.linkname = tarfile.SYMTYPE, target
    tar.addfile(info)


def test_a_symlink_made_by_an_earlier_member_is_never_followed(tmp_path):
    # The tree of the attack: `a -> .`, then `a/` holding `y -> ../outside`, then `y/` with
    # a file: unpacked naively, the file lands in tmp_path/outside.
    outside = tmp_path / "outside"
    outside.mkdir()
    with tarfile.open(tmp_path / "a.tar", "w") as tar:
        _link(tar, "a", ".")
        _dir(tar, "a/")
        _link(tar, "a/y", "../outside")
        _dir(tar, "y/")
        _file(tar, "y/pwned", b"root")
    dest = tmp_path / "out"
    dest.mkdir()
    with pytest.raises(BuildError, match=r"^Refusing to unpack 'a': it appears twice$"):
        unpack_source(tmp_path / "a.tar", dest, max_bytes=1 << 20)
    assert list(outside.iterdir()) == [] and list(dest.iterdir()) == []


@pytest.mark.parametrize(("entries", "message"), [
    # A file written through a symlink to a directory of the tree's own.
    ([("sym", "d", "sub"), ("file", "d/x", b"")],
     "Refusing to unpack 'd/x': its path runs through a symlink or a file"),
    # Chained: each link alone stays inside, together they climb out.
    ([("sym", "s", "."), ("sym", "t", "s/..")],
     "Refusing to unpack 't': it is a symlink that points outside the app"),
    ([("dir", "deep/", None), ("sym", "deep/up", "../.."), ],
     "Refusing to unpack 'deep/up': it is a symlink that points outside the app"),
    ([("file", "app.py", b"1"), ("file", "app.py", b"2")],
     "Refusing to unpack 'app.py': it appears twice"),
    ([("file", "app.py", b"1"), ("sym", "app.py", "x")],
     "Refusing to unpack 'app.py': it appears twice"),
    ([("file", "f", b"1"), ("file", "f/x", b"")],
     "Refusing to unpack 'f/x': its path runs through a symlink or a file"),
])
def test_unsafe_trees_are_refused_and_nothing_is_left(tmp_path, entries, message):
    with tarfile.open(tmp_path / "a.tar", "w") as tar:
        for kind, name, extra in entries:
            {"sym": _link, "file": _file, "dir": lambda t, n, _: _dir(t, n)}[kind](tar, name, extra)
    dest = tmp_path / "out"
    dest.mkdir()
    with pytest.raises(BuildError) as raised:
        unpack_source(tmp_path / "a.tar", dest, max_bytes=1 << 20)
    assert raised.value.message == message
    assert list(dest.iterdir()) == []


def test_symlinks_inside_the_tree_keep_working(tmp_path):
    with tarfile.open(tmp_path / "a.tar", "w") as tar:
        _dir(tar, "static/")
        _file(tar, "static/site.css", b"body{}")
        _dir(tar, "app/")
        _link(tar, "app/static", "../static")
        _link(tar, "current", "app")
        _link(tar, "dangling", "not-yet-built")
        _file(tar, "run.sh", b"#!/bin/sh\n", mode=0o4755)
    dest = tmp_path / "out"
    dest.mkdir()
    unpack_source(tmp_path / "a.tar", dest, max_bytes=1 << 20)
    assert (dest / "current" / "static" / "site.css").read_bytes() == b"body{}"
    assert os.readlink(dest / "dangling") == "not-yet-built"
    assert (dest / "run.sh").stat().st_mode & 0o7777 == 0o755  # no setuid bit


def test_the_unpacked_size_is_counted_against_the_limit(tmp_path):
    with tarfile.open(tmp_path / "a.tar", "w") as tar:
        _file(tar, "a", b"0" * 600)
        _file(tar, "b", b"0" * 600)
    dest = tmp_path / "out"
    dest.mkdir()
    with pytest.raises(BuildError) as raised:
        unpack_source(tmp_path / "a.tar", dest, max_bytes=1000)
    assert raised.value.message == ("The pushed tree is larger than 0.000953674 MB unpacked "
                                    "(SLIPWAY_MAX_PUSH_BYTES)")
    assert list(dest.iterdir()) == []
