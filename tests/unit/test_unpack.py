import io
import tarfile

import pytest

from slipway.builder.plan import BuildError
from slipway.platform.builds import extract_source


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
    extract_source(tmp_path / "a.tar", dest)
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
        extract_source(tmp_path / "a.tar", dest)
    assert list(dest.iterdir()) == []
