"""Helpers shared by the command-line tests (test_cli_*.py)."""

from __future__ import annotations

import hashlib
import os
import re
import stat
from pathlib import Path
from typing import Any

ERROR_PREFIX = "casrepo: error: "
FULL_ID = re.compile(r"[0-9a-f]{64}")
# A run of hex digits standing on its own (not part of a longer word).
_HEX_TOKEN = re.compile(r"(?<![0-9A-Za-z_])[0-9a-f]{7,}(?![0-9A-Za-z_])")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def describe(result: Any) -> str:
    return f"exit {result.exit_code}\n--- stdout:\n{result.stdout}\n--- stderr:\n{result.stderr}"


def assert_ok(result: Any) -> Any:
    assert result.exit_code == 0, describe(result)
    assert "Traceback" not in result.stdout + result.stderr, describe(result)
    return result


def last_id(result: Any) -> str:
    """The manifest id that `add` prints as its last stdout line."""
    assert_ok(result)
    lines = result.stdout.strip().splitlines()
    assert lines, describe(result)
    oid = lines[-1].strip()
    assert FULL_ID.fullmatch(oid), f"last line is not a full id: {oid!r}\n{describe(result)}"
    return oid


def assert_error(result: Any, code: int, *fragments: str) -> str:
    """One line 'casrepo: error: ...' on stderr, nothing on stdout, no traceback, exit ``code``."""
    assert result.exit_code == code, describe(result)
    assert "Traceback" not in result.stdout + result.stderr, describe(result)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, f"expected one stderr line\n{describe(result)}"
    assert result.stderr.endswith("\n"), describe(result)
    line = lines[0]
    assert line.startswith(ERROR_PREFIX), describe(result)
    assert len(line) > len(ERROR_PREFIX) + 3, describe(result)
    assert result.stdout == "", f"stdout must be empty on error\n{describe(result)}"
    for fragment in fragments:
        assert fragment in line, f"{fragment!r} not in {line!r}"
    return line


def hex_tokens(text: str) -> list[str]:
    """Stand-alone runs of at least 7 lowercase hex digits (candidate ids)."""
    return _HEX_TOKEN.findall(text)


def write(path: Path, data: bytes, executable: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.chmod(path, 0o755 if executable else 0o644)
    return path


def make_tree(root: Path) -> dict[str, tuple[bytes, bool]]:
    """A directory with nested directories and an executable file; returns what it holds."""
    files = {
        "README.md": (b"# images\n", False),
        "bin/run.sh": (b"#!/bin/sh\necho hello\n", True),
        "data/part-0001.bin": (bytes(range(256)) * 4, False),
        "data/nested/deeper/été.txt": ("café\n".encode(), False),
        "empty.txt": (b"", False),
    }
    for rel, (data, executable) in files.items():
        write(root / rel, data, executable)
    return files


def tree(root: Path) -> dict[str, tuple[bytes, bool]]:
    """Every file under ``root``: relative path -> (bytes, owner-executable). Fails on symlinks."""
    found: dict[str, tuple[bytes, bool]] = {}
    for current, dirs, files in os.walk(root):
        for name in dirs + files:
            assert not (Path(current) / name).is_symlink(), f"unexpected symlink {current}/{name}"
        for name in files:
            path = Path(current) / name
            mode = path.stat().st_mode
            found[path.relative_to(root).as_posix()] = (path.read_bytes(), bool(mode & stat.S_IXUSR))
    return found


def snapshot(root: Path, skip: tuple[str, ...] = ()) -> dict[str, tuple[Any, ...]]:
    """Every path under ``root`` with its type, mode and, for files, size, mtime and hash.

    Directory mtimes are left out (a temp file made and removed inside is no change);
    any path with a component in ``skip`` is left out.
    """
    result: dict[str, tuple[Any, ...]] = {}
    for current, dirs, files in os.walk(root, followlinks=False):
        dirs[:] = [d for d in dirs if d not in skip]
        for name in sorted(dirs + files):
            if name in skip:
                continue
            path = Path(current) / name
            rel = path.relative_to(root).as_posix()
            st = path.lstat()
            if stat.S_ISLNK(st.st_mode):
                result[rel] = ("link", os.readlink(path))
            elif stat.S_ISDIR(st.st_mode):
                result[rel] = ("dir", stat.S_IMODE(st.st_mode))
            else:
                result[rel] = ("file", stat.S_IMODE(st.st_mode), st.st_size, st.st_mtime_ns,
                               sha256(path.read_bytes()))
    return result


def corrupt(path: Path) -> None:
    """Flip one bit of a stored (read-only) object, keeping its size."""
    os.chmod(path, stat.S_IMODE(path.stat().st_mode) | stat.S_IWUSR)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def colliding_contents(width: int = 4) -> tuple[bytes, bytes, str]:
    """Two small contents whose sha256 ids share their first ``width`` hex digits."""
    seen: dict[str, bytes] = {}
    i = 0
    while True:
        data = f"collision candidate {i}\n".encode()
        prefix = sha256(data)[:width]
        if prefix in seen:
            return seen[prefix], data, prefix
        seen[prefix] = data
        i += 1


def add(run: Any, project: Path, rel: str, data: bytes, *options: str) -> str:
    """Write ``data`` to project/rel, `casrepo add` it and return the manifest id."""
    write(project / rel, data)
    return last_id(run("add", rel, *options))


def digest(path: Path) -> str:
    """sha256 of a file's bytes, or of a directory's paths, contents and executable bits."""
    if path.is_file():
        return sha256(path.read_bytes())
    h = hashlib.sha256()
    for rel, (data, executable) in sorted(tree(path).items()):
        h.update(f"{rel}\0{sha256(data)}\0{int(executable)}\n".encode())
    return h.hexdigest()
