"""Hostile input: paths, names and arguments chosen to break casrepo.

Each test checks the documented exit code (never an internal error), that
nothing is written where it should not be, and that the repository still
works afterwards.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest
from cli_support import (
    add,
    assert_error,
    assert_ok,
    last_id,
    make_tree,
    sha256,
    snapshot,
    tree,
    write,
)
from pydantic import ValidationError

from casrepo.canonical import canonical_json
from casrepo.manifest import DirectoryArtifact, DirEntry, FileArtifact
from casrepo.repository import Repository

USAGE, CONFLICT, INTEGRITY = 2, 5, 6


def assert_healthy(run: Any, *names: str) -> None:
    """fsck finds nothing wrong and every name in ``names`` is still listed."""
    assert_ok(run("fsck"))
    listed = assert_ok(run("refs")).stdout
    for name in names:
        assert name in listed, listed


def objects(repo: Repository) -> set[str]:
    return {info.id for info in repo.store.scan()}


def no_staging(directory: Path) -> None:
    left = [p.name for p in directory.iterdir() if p.name.startswith((".casrepo-get-", ".casrepo-"))
            and p.name != ".casrepo"]
    assert left == [], left


@pytest.fixture
def stored(run: Any, repo: Repository, project: Path) -> dict[str, str]:
    """A directory artifact `d` and a file artifact `good`."""
    write(project / "d" / "a.txt", b"a\n")
    write(project / "f.txt", b"hello\n")
    return {"d": last_id(run("add", "d", "--name", "d")),
            "good": last_id(run("add", "f.txt", "--name", "good"))}


# -- 1. get never replaces or writes into the repository ------------------------------


@pytest.mark.parametrize(("dest", "reason"), [
    ("self/.casrepo", "is the repository"),       # ln -s . self
    ("self", "holds the repository"),             # a symlink to the project
    (".casrepo", "is the repository"),
    (".casrepo/tmp", "is inside the repository"),
    ("self/.casrepo/objects/new", "is inside the repository"),
    ("objects-link/new", "is inside the repository"),  # objects-link -> .casrepo/objects
])
@pytest.mark.parametrize("force", [True, False])
def test_get_refuses_to_write_the_repository(run: Any, project: Path, tmp_path: Path,
                                             stored: dict[str, str], dest: str, reason: str,
                                             force: bool) -> None:
    (project / "self").symlink_to(".")
    (project / "objects-link").symlink_to(".casrepo/objects")
    before = snapshot(tmp_path, skip=("index.sqlite", "index.sqlite-wal", "index.sqlite-shm",
                                      "locks"))
    for name in ("d", "good"):
        args = ["get", name, dest] + (["--force"] if force else [])
        assert_error(run(*args), CONFLICT, "refusing to write", reason)
    assert snapshot(tmp_path, skip=("index.sqlite", "index.sqlite-wal", "index.sqlite-shm",
                                    "locks")) == before
    assert_healthy(run, "d", "good")


def test_get_refuses_the_project_through_a_symlinked_parent(
        run: Any, project: Path, tmp_path: Path, stored: dict[str, str]) -> None:
    # As /home -> /data/home: the repository is found under its resolved path,
    # the destination typed through the link.
    alias = tmp_path / "alias"
    alias.symlink_to(tmp_path, target_is_directory=True)
    for dest in (alias / "project" / ".casrepo",
                 alias / "alias" / "project" / ".casrepo" / "refs"):
        assert_error(run("get", "d", str(dest), "--force"), CONFLICT, "refusing to write")
    # The project itself, or a directory above it, is updated in place: written
    # into, never replaced, and never into the repository.
    assert_ok(run("get", "d", str(alias / "project"), "--force", "--delete"))
    assert sorted(p.name for p in project.iterdir()) == [".casrepo", "a.txt"]
    assert_healthy(run, "d", "good")


def test_get_still_writes_beside_the_repository(run: Any, project: Path, tmp_path: Path,
                                                stored: dict[str, str]) -> None:
    """Through a symlinked parent, or replacing a symlink to elsewhere, get still works."""
    (project / "self").symlink_to(".")
    assert_ok(run("get", "good", "self/copy.txt"))
    assert (project / "copy.txt").read_bytes() == b"hello\n"
    elsewhere = tmp_path / "elsewhere"
    write(elsewhere / "keep.txt", b"keep\n")
    (project / "out").symlink_to(elsewhere, target_is_directory=True)
    assert_ok(run("get", "d", "out", "--force"))
    assert tree(project / "out") == {"a.txt": (b"a\n", False)}
    assert (elsewhere / "keep.txt").read_bytes() == b"keep\n"
    assert_healthy(run, "d", "good")


def test_get_refuses_a_dest_that_names_no_entry(run: Any, tmp_path: Path,
                                                stored: dict[str, str]) -> None:
    """'x/..' outside the project: not the repository, but nothing get can replace."""
    other = tmp_path / "other"
    (other / "x").mkdir(parents=True)
    assert_error(run("get", "good", str(other / "missing" / ".."), "--force"), USAGE, "DEST")
    assert sorted(p.name for p in other.iterdir()) == ["x"]
    # An existing directory, however spelled, is a directory to write into (as cp).
    assert_ok(run("get", "good", str(other / "x" / "..")))
    assert sorted(p.name for p in other.iterdir()) == ["f.txt", "x"]


# -- 1b. add never reads the repository, and --link move never deletes from it ---------


def _store_file(blob: str) -> str:
    """The path, relative to the project, of the stored object ``blob``."""
    return f".casrepo/objects/{blob[:2]}/{blob[2:]}"


@pytest.mark.parametrize(("source", "reason"), [
    (".casrepo", "is the repository"),
    (".casrepo/objects", "is inside the repository"),
    ("self/.casrepo", "is the repository"),               # self -> .
    ("objects-link", "links to a path that is inside"),   # objects-link -> .casrepo/objects
    ("STORED", "is inside the repository"),               # one stored object's file
    ("blob-link", "links to a path that is inside"),      # blob-link -> that file
    ("alias/project/.casrepo/objects", "is inside the repository"),  # alias -> tmp_path
])
@pytest.mark.parametrize("link", ["copy", "hardlink", "move"])
def test_add_refuses_the_repository(run: Any, project: Path, tmp_path: Path, repo: Repository,
                                    stored: dict[str, str], source: str, reason: str,
                                    link: str) -> None:
    blob = sha256(b"hello\n")  # the file artifact `good`
    (project / "self").symlink_to(".")
    (project / "objects-link").symlink_to(".casrepo/objects")
    (project / "blob-link").symlink_to(_store_file(blob))
    (tmp_path / "alias").symlink_to(tmp_path, target_is_directory=True)
    if source == "STORED":
        source = _store_file(blob)
    elif source.startswith("alias/"):
        source = str(tmp_path / source)
    skip = ("index.sqlite", "index.sqlite-wal", "index.sqlite-shm", "locks")
    before, held = snapshot(tmp_path, skip=skip), objects(repo)
    assert_error(run("add", source, "--name", "self", "--link", link), CONFLICT,
                 "refusing to add", reason)
    assert snapshot(tmp_path, skip=skip) == before
    assert objects(repo) == held
    assert "self" not in assert_ok(run("refs")).stdout
    assert_healthy(run, "d", "good")


@pytest.mark.parametrize("link", ["copy", "hardlink", "move"])
def test_add_of_a_directory_holding_the_repository_leaves_it_out(
        run: Any, project: Path, tmp_path: Path, repo: Repository, stored: dict[str, str],
        link: str) -> None:
    """The project, a directory above it (the repository nested deeper), the project
    through a symlink, a rule that re-includes `.casrepo/` and a symlink to the
    repository inside: the scan never enters the repository, so a move never
    deletes the store's files."""
    (project / "repo-link").symlink_to(".casrepo", target_is_directory=True)
    alias = tmp_path.parent / f"{tmp_path.name}-alias"
    alias.symlink_to(project, target_is_directory=True)
    held = objects(repo)
    for n, source in enumerate((str(alias), str(tmp_path), ".")):
        write(project / ".casrepoignore", b"!.casrepo/\n")  # a move took the last one
        write(project / "data" / f"x{n}.txt", f"x{n}\n".encode())
        assert_ok(run("add", source, "--name", f"whole{n}", "--link", link))
        paths = [entry["path"] for entry in assert_ok(run("ls", f"whole{n}", "-R", "--json")).json()]
        assert f"{'project/' if n == 1 else ''}data/x{n}.txt" in paths
        assert not {".casrepo", "repo-link"} & {part for p in paths for part in p.split("/")}, paths
        assert held <= objects(repo)
        assert_healthy(run, "d", "good", f"whole{n}")
    assert (project / "repo-link").is_symlink() and (project / ".casrepo" / "config.yaml").is_file()


# -- 2. lineage -o / why -o never replace what is not a regular file -----------------


def _special_files(directory: Path) -> dict[str, str]:
    """Non-regular files to aim -o at: name -> what the error says it is."""
    directory.mkdir()
    made = {}
    try:
        os.mknod(directory / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
        made["null"] = "a character device"
    except PermissionError:  # not root: a FIFO is non-regular too
        os.mkfifo(directory / "null")
        made["null"] = "a FIFO"
    os.mkfifo(directory / "fifo")
    made["fifo"] = "a FIFO"
    write(directory / "target.txt", b"the link's target\n")
    (directory / "link").symlink_to("target.txt")
    made["link"] = "a symlink"
    (directory / "dangling").symlink_to("nowhere")
    made["dangling"] = "a symlink"
    return made


def _fingerprint(directory: Path) -> dict[str, tuple[Any, ...]]:
    found = {}
    for path in directory.iterdir():
        st = path.lstat()
        link = os.readlink(path) if path.is_symlink() else None
        data = path.read_bytes() if stat.S_ISREG(st.st_mode) else None
        found[path.name] = (st.st_mode, st.st_rdev, st.st_ino, link, data)
    return found


@pytest.mark.parametrize("command", [("lineage", "good"), ("why", "good", "d"),
                                     ("lineage", "good", "--format", "dot"),
                                     ("why", "good", "d", "--format", "json")])
def test_output_refuses_devices_and_symlinks(run: Any, tmp_path: Path, stored: dict[str, str],
                                             command: tuple[str, ...]) -> None:
    devtest = tmp_path / "devtest"
    special = _special_files(devtest)
    before = _fingerprint(devtest)
    for name, what in special.items():
        out = devtest / name
        assert_error(run(*command, "-o", str(out)), USAGE, f"it is {what}", "regular file")
    assert _fingerprint(devtest) == before  # nothing replaced, no temp file left
    assert_healthy(run, "d", "good")


def test_output_replaces_a_regular_file_atomically(run: Any, tmp_path: Path,
                                                   stored: dict[str, str]) -> None:
    out = tmp_path / "reports"
    out.mkdir()
    write(out / "lineage.txt", b"old\n")
    assert_ok(run("lineage", "good", "-o", str(out / "lineage.txt")))
    assert_ok(run("lineage", "good", "--format", "json", "-o", str(out / "new.json")))
    text = (out / "lineage.txt").read_text()
    assert "good" in text and text.endswith("\n")
    assert stat.S_ISREG((out / "new.json").lstat().st_mode)
    assert sorted(p.name for p in out.iterdir()) == ["lineage.txt", "new.json"]


def test_output_refuses_the_repository(run: Any, project: Path, stored: dict[str, str]) -> None:
    config = project / ".casrepo" / "config.yaml"
    before = config.read_bytes()
    for command in (("lineage", "good"), ("why", "good", "d", "--format", "json")):
        assert_error(run(*command, "-o", ".casrepo/config.yaml"), CONFLICT,
                     "inside the repository")
    assert config.read_bytes() == before
    assert_healthy(run, "d", "good")


# -- 12. text that is not UTF-8 is refused (exit 2), nothing half-stored ---------------

BAD = os.fsdecode(b"bad\xff")
"""A name that is not valid UTF-8, as Python holds it (a lone surrogate)."""


def test_add_refuses_a_file_name_that_is_not_utf8(run_process: Any, repo: Repository,
                                                  project: Path) -> None:
    write(project / BAD, b"data\n")
    before = objects(repo)
    assert_error(run_process("add", BAD, "--name", "x"), USAGE, "bad\\xff", "not valid UTF-8")
    assert objects(repo) == before
    assert_healthy(run_process)
    assert "x" not in assert_ok(run_process("refs")).stdout


@pytest.mark.parametrize("where", [BAD, f"sub/{BAD}", f"{BAD}/inner.txt"])
def test_add_refuses_a_directory_holding_such_a_name(run_process: Any, repo: Repository,
                                                     project: Path, where: str) -> None:
    make_tree(project / "tree")
    write(project / "tree" / where, b"x\n")
    before = objects(repo)
    line = assert_error(run_process("add", "tree", "--name", "tree"), USAGE, "not valid UTF-8")
    assert "bad\\xff" in line
    assert objects(repo) == before  # not one file of the tree stored
    assert assert_ok(run_process("refs")).stdout == ""
    assert_healthy(run_process)


@pytest.mark.parametrize("args", [
    ("add", "f.txt", "--name", "x", "-m", os.fsdecode(b"\xff")),
    ("add", "f.txt", "--name", "x", "--meta", os.fsdecode(b"k=\xff")),
    ("add", "f.txt", "--name", "x", "--meta", os.fsdecode(b"\xfe=v")),
    ("tag", "v1", "good", "-m", os.fsdecode(b"caf\xe9")),
    ("name", "x", "good", "-m", os.fsdecode(b"\xff")),
    ("tag", "-d", "v0", "-m", os.fsdecode(b"\xff")),
    ("name", "-d", "good", "-m", os.fsdecode(b"\xff")),
])
def test_arguments_that_are_not_utf8(run_process: Any, repo: Repository, project: Path,
                                     args: tuple[str, ...]) -> None:
    write(project / "f.txt", b"hello\n")
    good = last_id(run_process("add", "f.txt", "--name", "good"))
    assert_ok(run_process("tag", "v0", "good"))
    before = objects(repo)
    assert_error(run_process(*args), USAGE, "not valid UTF-8", "\\x")
    assert objects(repo) == before
    refs = assert_ok(run_process("refs")).stdout
    assert refs.split() == ["name", good[:12], "good", "tag", good[:12], "v0"]
    assert_healthy(run_process)


def test_a_parent_directory_that_is_not_utf8_is_fine(run_process: Any, project: Path,
                                                     repo: Repository) -> None:
    """Only names that would be stored must be UTF-8: the base name of a file, the
    paths inside a directory."""
    write(project / BAD / "ok.txt", b"ok\n")
    last_id(run_process("add", f"{BAD}/ok.txt", "--name", "file"))
    last_id(run_process("add", BAD, "--name", "dir"))
    assert_ok(run_process("get", "dir", "copy"))
    assert tree(project / "copy") == {"ok.txt": (b"ok\n", False)}


def test_the_api_refuses_text_that_is_not_utf8(repo: Repository) -> None:
    with pytest.raises(Exception, match="not valid UTF-8"):
        repo.pack(FileArtifact, b"x", meta={"k": BAD})
    with pytest.raises(Exception, match="not valid UTF-8"):
        repo.pack(FileArtifact, b"x", name="n", message=BAD)
    assert repo.list_refs() == []


# -- 13. absurdly long entry paths: exit 6, and no staging directory left behind -----------


@pytest.fixture
def deep_trees(tmp_path: Path) -> Any:
    """Removes the test's directory afterwards, pass or fail: pytest's own clean-up
    (shutil.rmtree) would hit the recursion limit on a tree 2,000 levels deep."""
    yield
    from casrepo.durable import remove_tree

    remove_tree(tmp_path)


def _forge(repo: Repository, run: Any, name: str, path: str) -> str:
    """Store a directory manifest with one entry at ``path`` (bypassing validation) and
    point ``name`` at it."""
    blob = repo.store.put_bytes(b"deep\n").id
    document = DirectoryArtifact(entries=(DirEntry(path="x", content=blob, size=5),)).document()
    document["entries"][0]["path"] = path
    oid = repo.store.put_bytes(canonical_json(document)).id
    assert_ok(run("name", name, oid))
    return oid


def test_get_refuses_a_forged_2100_component_path(run: Any, repo: Repository, project: Path,
                                                 stored: dict[str, str], deep_trees: None) -> None:
    oid = _forge(repo, run, "deep", "/".join(["a"] * 2100))
    for _ in range(2):  # every attempt, not only the first
        assert_error(run("get", "deep", "out"), INTEGRITY, "longer than 4095 bytes")
        assert_error(run("get", "deep", "d", "--force"), INTEGRITY, "longer than 4095 bytes")
        no_staging(project)
    assert not os.path.lexists(project / "out")
    assert tree(project / "d") == {"a.txt": (b"a\n", False)}
    assert_ok(run("refs"))
    checked = run("fsck")  # the forged manifest is invalid, and fsck says so
    assert checked.exit_code == INTEGRITY and "longer than 4095 bytes" in checked.stdout
    assert_ok(run("name", "-d", "deep"))
    assert_ok(run("gc", "--prune-expire", "now", "--reflog-expire", "now"))
    assert not repo.store.exists(oid)
    assert_healthy(run, "d", "good")


DEEP = "/".join(["a"] * 2000)
"""An entry path 2,000 directories deep, 3,999 bytes: valid, but deeper than Python's
recursion limit."""


def test_a_deep_valid_path_round_trips(run: Any, repo: Repository, project: Path, deep_trees: None) -> None:
    """Written, replaced with --force (the old tree removed), and left no staging."""
    blob = repo.store.put_bytes(b"deep\n").id
    repo.save(DirectoryArtifact(entries=(DirEntry(path=DEEP, content=blob, size=5),)),
              name="deep")
    assert_ok(run("get", "deep", "out"))
    assert (project / "out" / DEEP).read_bytes() == b"deep\n"
    assert_ok(run("get", "deep", "out", "--force"))
    assert (project / "out" / DEEP).read_bytes() == b"deep\n"
    no_staging(project)
    assert sorted(p.name for p in project.iterdir()) == [".casrepo", "out"]
    assert_healthy(run, "deep")


def test_a_path_too_long_for_dest_fails_cleanly(run: Any, repo: Repository, tmp_path: Path,
                                               project: Path, deep_trees: None) -> None:
    """Under a long DEST the same path passes PATH_MAX: an OS error (exit 1, one line,
    not an internal error), and the half-made staging tree is removed."""
    blob = repo.store.put_bytes(b"deep\n").id
    repo.save(DirectoryArtifact(entries=(DirEntry(path=DEEP, content=blob, size=5),)),
              name="deep")
    parent = tmp_path / ("p" * 200)
    parent.mkdir()
    line = assert_error(run("get", "deep", str(parent / "out")), 74, "too long")
    assert "internal error" not in line
    assert list(parent.iterdir()) == []
    assert_healthy(run, "deep")


def test_entry_paths_longer_than_path_max_are_invalid() -> None:
    from casrepo.manifest import MAX_ENTRY_PATH_BYTES

    blob = "0" * 64
    longest = "/".join(["b"] * (MAX_ENTRY_PATH_BYTES // 2)) + "cc"
    assert len(longest.encode()) == MAX_ENTRY_PATH_BYTES
    DirEntry(path=longest, content=blob, size=0)
    with pytest.raises(ValidationError, match="longer than 4095 bytes"):
        DirEntry(path=longest + "c", content=blob, size=0)
    with pytest.raises(ValidationError, match="longer than 4095 bytes"):
        DirEntry(path="é" * 2048, content=blob, size=0)  # 4,096 bytes in 2,048 characters


def test_remove_tree_however_deep(tmp_path: Path) -> None:
    from casrepo.durable import remove_tree

    top = tmp_path / "top"
    fd = os.open(tmp_path, os.O_RDONLY)
    try:
        os.mkdir("top", dir_fd=fd)
        for depth in range(3000):  # deeper than PATH_MAX allows to name by one path
            child = os.open("top" if depth == 0 else "d", os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = child
            os.mkdir("d", dir_fd=fd)
            if depth % 500 == 0:
                os.close(os.open("file", os.O_CREAT | os.O_WRONLY, 0o644, dir_fd=fd))
                os.symlink(str(tmp_path / "outside"), "link", dir_fd=fd)
    finally:
        os.close(fd)
    write(tmp_path / "outside" / "keep.txt", b"keep\n")
    remove_tree(top)
    assert not os.path.lexists(top)
    assert (tmp_path / "outside" / "keep.txt").read_bytes() == b"keep\n"


# -- 15. reserved metadata keys ------------------------------------------------------------


def test_meta_link_key_is_a_usage_error(run: Any, repo: Repository, project: Path,
                                        stored: dict[str, str]) -> None:
    before = objects(repo)
    assert_error(run("add", "f.txt", "--meta", "@link=foo"), USAGE, "@link", "reserved")
    # Nor can --meta forge a well-formed link (an input nobody declared).
    assert_error(run("add", "f.txt", "--name", "forged", "--meta", f"@link={stored['d']}",
                     "--meta", "rel=input", "--meta", "type=manifest"), USAGE, "@link")
    assert objects(repo) == before
    assert_healthy(run, "d", "good")


def test_other_reserved_words_are_plain_metadata(run: Any, project: Path,
                                                 stored: dict[str, str]) -> None:
    """kind, schema and the base fields are stored as metadata; fields add sets are
    refused."""
    oid = last_id(run("add", "f.txt", "--name", "m", "--meta", "kind=x", "--meta", "schema=9",
                      "--meta", "name=n", "--meta", "rel=input", "--meta", "type=blob"))
    manifest = assert_ok(run("show", oid, "--json")).json()["manifest"]
    assert manifest["kind"] == "file" and manifest["schema"] == 1 and manifest["name"] == "m"
    assert manifest["meta"] == {"kind": "x", "schema": "9", "name": "n", "rel": "input",
                                "type": "blob"}
    for key in ("content", "size", "filename", "executable"):
        assert_error(run("add", "f.txt", "--meta", f"{key}=1"), USAGE, "add sets this field")
    assert_healthy(run, "m")


def test_the_api_refuses_a_stray_link_key_in_meta(repo: Repository) -> None:
    with pytest.raises(ValidationError, match="reserved for links"):
        FileArtifact(content="0" * 64, size=0, meta={"@link": "foo"})
    with pytest.raises(ValidationError, match="reserved for links"):
        FileArtifact(content="0" * 64, size=0, meta={"deep": [{"@link": "0" * 64}]})
    # A well-formed link is a link, wherever it is (docs/format.md, Links).
    link = {"@link": "0" * 64, "rel": "input", "type": "manifest"}
    FileArtifact(content="0" * 64, size=0, meta={"see": link})


def test_add_with_a_stray_link_key_adds_nothing(run: Any, repo: Repository, project: Path) -> None:
    write(project / "f.txt", b"x\n")
    add_result = run("add", "f.txt", "--name", "x", "--meta", "@link=1")
    assert_error(add_result, USAGE)
    assert repo.list_refs() == []
    assert objects(repo) == set()
    add(run, project, "g.txt", b"fine\n", "--name", "g")
    assert_healthy(run, "g")
