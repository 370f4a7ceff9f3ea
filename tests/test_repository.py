from __future__ import annotations

import errno
import hashlib
import os
import stat
import threading
import time
from pathlib import Path
from typing import ClassVar

import pytest

from casrepo import (
    AmbiguousRev,
    Conflict,
    DirectoryArtifact,
    FileArtifact,
    IntegrityError,
    NotARepository,
    NotFound,
    Registry,
    Repository,
    UsageError,
)
from casrepo.canonical import canonical_json
from casrepo.copying import CHUNK
from casrepo.errors import InvalidName
from casrepo.fsck import check
from casrepo.refs import RefKind
from casrepo.store import LARGE_FILE


def write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


def test_init_is_idempotent(project: Path) -> None:
    repo = Repository.init(project)
    assert repo.created
    assert sorted(p.name for p in (project / ".casrepo").iterdir()) == [
        "config.yaml", "logs", "objects", "refs", "tmp"]
    before = tree(project / ".casrepo")
    again = Repository.init(project)
    assert not again.created
    assert tree(project / ".casrepo") == before
    assert not [p for p in project.iterdir() if p.name.startswith(".casrepo-init")]


def test_open_and_discover(project: Path, tmp_path: Path) -> None:
    Repository.init(project)
    sub = project / "a" / "b"
    sub.mkdir(parents=True)
    assert Repository.discover(sub).dir == (project / ".casrepo").resolve()
    with pytest.raises(NotARepository):
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        Repository.discover(elsewhere)
    with pytest.raises(NotARepository):
        Repository.open(tmp_path)
    (project / ".casrepo" / "config.yaml").write_text("format_version: 99\n")
    with pytest.raises(NotARepository, match="format version 99"):
        Repository.open(project / ".casrepo")


def test_add_file_and_versions(repo: Repository, project: Path) -> None:
    src = write(project / "data.csv", "a,b\n1,2\n")
    first = repo.add(src, name="datasets/iris", message="first cut")
    m = first.manifest
    assert isinstance(m, FileArtifact) and m.size == 8 and m.filename == "data.csv"
    assert repo.store.read_bytes(m.content) == b"a,b\n1,2\n"
    assert repo.resolve("datasets/iris") == first.id
    assert repo.load("datasets/iris").message == "first cut"  # type: ignore[union-attr]

    write(src, "a,b\n1,2\n3,4\n")
    second = repo.add(src, name="datasets/iris", message="more rows")
    assert second.previous == first.id
    assert repo.resolve("datasets/iris~1") == first.id
    assert repo.resolve("datasets/iris~") == first.id
    assert repo.resolve(second.id[:8] + "~1") == first.id
    with pytest.raises(NotFound):
        repo.resolve("datasets/iris~2")
    assert [v.id for v in repo.history("datasets/iris")] == [second.id, first.id]
    assert [v.id for v in repo.history("datasets/iris", limit=1)] == [second.id]
    log = repo.refs.log("names/datasets/iris")
    assert [(e.old, e.new, e.message) for e in log] == [
        (None, first.id, "first cut"), (first.id, second.id, "more rows")]


def test_readd_unchanged_makes_no_version(repo: Repository, project: Path) -> None:
    src = write(project / "f.txt", "same")
    one = repo.add(src, name="x")
    two = repo.add(src, name="x", message="again")
    assert two.unchanged and two.id == one.id
    assert len(repo.history("x")) == 1


def test_add_directory(repo: Repository, project: Path) -> None:
    d = project / "images"
    write(d / "b.txt", "bee")
    write(d / "a" / "deep" / "x.bin", bytes(range(256)))
    script = write(d / "run.sh", "#!/bin/sh\n")
    script.chmod(0o755)
    write(d / "a" / "same.txt", "bee")  # same content as b.txt: stored once
    result = repo.add(d, name="datasets/images")
    m = result.manifest
    assert isinstance(m, DirectoryArtifact)
    assert [e.path for e in m.entries] == ["a/deep/x.bin", "a/same.txt", "b.txt", "run.sh"]
    assert [e.executable for e in m.entries] == [False, False, False, True]
    assert m.entries[1].content == m.entries[2].content
    out = project / "out"
    got = repo.get("datasets/images", out)
    assert got.files == 4
    assert tree(out) == tree(d)
    assert os.access(out / "run.sh", os.X_OK) and not os.access(out / "b.txt", os.X_OK)


def test_add_directory_with_symlinks(repo: Repository, project: Path) -> None:
    d = project / "d"
    write(d / "real.txt", "real")
    (d / "link.txt").symlink_to("real.txt")
    m = repo.add(d).manifest
    assert isinstance(m, DirectoryArtifact)
    assert [e.path for e in m.entries] == ["link.txt", "real.txt"]
    (d / "sub").symlink_to(project)
    with pytest.raises(UsageError, match="symlinks to directories"):
        repo.add(d)


def test_inputs_meta_and_kinds(repo: Repository, project: Path) -> None:
    class CSVDataset(FileArtifact):
        kind: ClassVar[str] = "test.csv"
        delimiter: str = ","
        header: bool = True

    repo.registry.register(CSVDataset)
    raw = repo.add(write(project / "raw.csv", "a;b\n"), name="raw", kind="test.csv",
                   meta={"delimiter": ";", "header": "false", "source": "s3"})
    m = raw.manifest
    assert isinstance(m, CSVDataset) and m.delimiter == ";" and m.header is False
    assert m.meta == {"source": "s3"}
    model = repo.add(write(project / "m.json", "{}"), name="model", inputs=["raw", raw.id[:6]])
    assert model.manifest.inputs == (raw.id,)
    with pytest.raises(UsageError, match="header"):
        repo.add(project / "raw.csv", kind="test.csv", meta={"header": "maybe"})
    with pytest.raises(UsageError, match="unknown kind"):
        repo.add(project / "raw.csv", kind="nope")
    with pytest.raises(UsageError, match="cannot describe a directory"):
        repo.add(project, kind="test.csv")
    with pytest.raises(NotFound):
        repo.add(project / "raw.csv", inputs=["missing"])
    blob = m.content
    with pytest.raises(NotFound, match="blob"):
        repo.add(project / "raw.csv", inputs=[blob])


def test_bad_input_writes_nothing(repo: Repository, project: Path) -> None:
    src = write(project / "f", "data")
    before = list(repo.store.ids())
    with pytest.raises(InvalidName):
        repo.add(src, name="bad..name")
    with pytest.raises(UsageError):
        repo.add(project / "missing")
    with pytest.raises(NotFound):
        repo.add(src, inputs=["nothing-here"])
    assert list(repo.store.ids()) == before


def test_dedup_hit_refreshes_mtime(repo: Repository, project: Path) -> None:
    src = write(project / "big.bin", os.urandom(50000))
    blob = repo.add(src).manifest.content  # type: ignore[union-attr]
    path = repo.store.path(blob)
    old = time.time() - 90 * 86400
    os.utime(path, (old, old))
    repo.add(src, name="again")
    assert path.stat().st_mtime > time.time() - 60


def test_rev_resolution_rules(repo: Repository, project: Path) -> None:
    a = repo.add(write(project / "a", "a"), name="same").id
    b = repo.add(write(project / "b", "b"), name="other").id
    # tag and repo.tag refuse a tag spelled as a name; such pairs still arrive by pull
    repo.refs.update(RefKind.TAG, "same", a)  # tag and name agree: fine
    assert repo.resolve("same") == a
    repo.refs.update(RefKind.TAG, "other", a)  # tag and name disagree: ambiguous
    with pytest.raises(AmbiguousRev):
        repo.resolve("other")
    assert repo.resolve(b) == b
    with pytest.raises(UsageError):
        repo.resolve("bad..rev")
    with pytest.raises(UsageError):
        repo.resolve("")
    with pytest.raises(NotFound):
        repo.resolve("f" * 64)


def test_tags(repo: Repository, project: Path) -> None:
    a = repo.add(write(project / "a", "a"), name="x").id
    b = repo.add(write(project / "a", "b"), name="x").id
    assert repo.tag("v1", "x~1") == (a, None)
    assert repo.tag("v1", a) == (a, a)  # same target: no error
    with pytest.raises(Conflict, match="already exists"):
        repo.tag("v1", "x")
    assert repo.tag("v1", "x", force=True) == (b, a)
    assert repo.delete_tag("v1") == b
    with pytest.raises(NotFound):
        repo.delete_tag("v1")


def test_get_file_and_conflicts(repo: Repository, project: Path) -> None:
    data = os.urandom(70000)
    repo.add(write(project / "f.bin", data), name="f")
    out = project / "copy.bin"
    repo.get("f", out)
    assert out.read_bytes() == data
    with pytest.raises(Conflict):
        repo.get("f", out)
    out.write_bytes(b"changed by the user")  # the store is not touched
    assert repo.store.read_bytes(repo.load("f").content) == data  # type: ignore[union-attr]
    repo.get("f", out, force=True)
    assert out.read_bytes() == data
    assert not stat.S_IMODE(out.stat().st_mode) & 0o111


def test_get_never_writes_through_symlinks(repo: Repository, project: Path,
                                            tmp_path: Path) -> None:
    write(project / "src" / "f.txt", "new")
    repo.add(project / "src", name="d")
    repo.add(project / "src" / "f.txt", name="f")
    victim = tmp_path / "victim"
    write(victim / "f.txt", "precious")
    link = project / "dest"
    link.symlink_to(victim)
    with pytest.raises(Conflict):
        repo.get("d", link)
    repo.get("d", link, force=True)
    assert (victim / "f.txt").read_text() == "precious"
    assert not link.is_symlink() and (link / "f.txt").read_text() == "new"
    file_link = project / "file-dest"
    file_link.symlink_to(victim / "f.txt")
    repo.get("f", file_link, force=True)
    assert (victim / "f.txt").read_text() == "precious"
    assert file_link.read_text() == "new" and not file_link.is_symlink()


@pytest.mark.parametrize("evil", ["../evil.txt", "/tmp/evil.txt", "a/../../evil.txt"])
def test_get_refuses_forged_traversal(repo: Repository, project: Path, evil: str) -> None:
    blob = repo.store.put_bytes(b"pwned").id
    doc = {"kind": "directory", "schema": 1, "created": "2026-01-01T00:00:00Z", "name": None,
           "message": None, "meta": {}, "inputs": [], "previous": None,
           "entries": [{"path": evil, "size": 5, "executable": False,
                        "content": {"@link": blob, "rel": "content", "type": "blob"}}]}
    oid = repo.store.put_bytes(canonical_json(doc)).id
    repo.refs.update(RefKind.NAME, "evil", oid)
    before = sorted(p.name for p in project.iterdir())
    with pytest.raises(IntegrityError):
        repo.get("evil", project / "out" / "inner")
    assert not (project / "evil.txt").exists() and not (project / "out" / "evil.txt").exists()
    assert sorted(p.name for p in project.iterdir() if p.name != "out") == before
    assert not (project / "out" / "inner").exists()


def test_get_corrupt_blob_leaves_nothing(repo: Repository, project: Path) -> None:
    result = repo.add(write(project / "f", "x" * 1000), name="f")
    path = repo.store.path(result.manifest.content)  # type: ignore[union-attr]
    path.chmod(0o644)
    path.write_bytes(b"y" * 1000)
    with pytest.raises(IntegrityError, match="corrupt"):
        repo.get("f", project / "out")
    assert not (project / "out").exists()
    assert [p for p in project.iterdir() if ".casrepo-" in p.name] == []


def test_manifest_pointing_to_missing_blob(repo: Repository, project: Path) -> None:
    result = repo.add(write(project / "f", "x"), name="f")
    repo.store.delete(result.manifest.content)  # type: ignore[union-attr]
    with pytest.raises(IntegrityError, match="missing"):
        repo.get("f", project / "out")


def test_set_and_delete_name(repo: Repository, project: Path) -> None:
    a = repo.add(write(project / "a", "a"), name="x").id
    repo.add(write(project / "a", "b"), name="x")
    repo.set_name("x", "x~1", "roll back")
    assert repo.resolve("x") == a
    assert repo.delete_name("x") == a
    with pytest.raises(NotFound):
        repo.resolve("x")


def test_write_to_stream(repo: Repository, project: Path) -> None:
    import io

    data = os.urandom(5000)
    repo.add(write(project / "f.bin", data), name="f")
    sink = io.BytesIO()
    assert repo.write_to("f", sink).bytes == 5000
    assert sink.getvalue() == data
    write(project / "d" / "x", "x")
    repo.add(project / "d", name="d")
    with pytest.raises(UsageError, match="directory"):
        repo.write_to("d", io.BytesIO())


def test_add_of_the_project_leaves_the_repository_out(repo: Repository, project: Path) -> None:
    (project / "data.csv").write_text("a,b\n")
    (project / "sub").mkdir()
    (project / "sub" / "x.txt").write_text("x")
    result = repo.add(project, name="project")
    paths = [e.path for e in result.manifest.entries]  # type: ignore[attr-defined]
    assert paths == ["data.csv", "sub/x.txt"]


def test_get_copies_and_hardlinks_verified(repo: Repository, project: Path,
                                           tmp_path: Path) -> None:
    src = project / "tree"
    (src / "sub").mkdir(parents=True)
    files = {"big.bin": os.urandom(LARGE_FILE + 99), "sub/small.txt": b"small",
             "run.sh": b"#!/bin/sh\n"}
    for rel, data in files.items():
        (src / rel).write_bytes(data)
    (src / "run.sh").chmod(0o755)
    oid = repo.add(src, name="tree").id
    for link in ("copy", "hardlink"):
        out = tmp_path / link
        result = repo.get("tree", out, link=link)
        assert result.files == 3 and result.bytes == sum(map(len, files.values()))
        for rel, data in files.items():
            assert (out / rel).read_bytes() == data
        assert os.access(out / "run.sh", os.X_OK)
        stored = repo.store.path(hashlib.sha256(files["big.bin"]).hexdigest())
        assert os.path.samefile(out / "big.bin", stored) == (link == "hardlink")
        assert not os.path.samefile(out / "run.sh", repo.store.path(
            hashlib.sha256(files["run.sh"]).hexdigest()))  # executables are always copied
    (tmp_path / "copy" / "big.bin").write_bytes(b"edited")  # a copy is the user's own
    assert repo.store.compute_id(hashlib.sha256(files["big.bin"]).hexdigest()) \
        == hashlib.sha256(files["big.bin"]).hexdigest()
    assert repo.resolve("tree") == oid


def test_get_refuses_corrupt_objects_in_every_mode(repo: Repository, project: Path,
                                                   tmp_path: Path) -> None:
    src = project / "big.bin"
    src.write_bytes(os.urandom(LARGE_FILE + 1))
    blob = repo.add(src, name="big").manifest.content  # type: ignore[attr-defined]
    path = repo.store.path(blob)
    path.chmod(0o644)
    with open(path, "r+b") as f:
        f.seek(LARGE_FILE)
        f.write(b"\0")
    for link in ("copy", "hardlink"):
        with pytest.raises(IntegrityError, match="corrupt"):
            repo.get("big", tmp_path / link, link=link)
        assert not (tmp_path / link).exists()
    assert list(tmp_path.glob(".casrepo-get-*")) == []


def test_add_by_hardlink_and_by_move(repo: Repository, project: Path, tmp_path: Path) -> None:
    linked = project / "linked.bin"
    linked.write_bytes(os.urandom(LARGE_FILE + 3))
    result = repo.add(linked, name="linked", link="hardlink")
    blob = result.manifest.content  # type: ignore[attr-defined]
    assert os.path.samefile(linked, repo.store.path(blob))  # no copy was made
    assert stat.S_IMODE(linked.stat().st_mode) == 0o444  # edits by path are refused
    tree = project / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "a.txt").write_text("a")
    (tree / "sub" / "b.txt").write_text("b")
    moved = repo.add(tree, name="tree", link="move")
    assert not (tree / "a.txt").exists() and not (tree / "sub" / "b.txt").exists()
    repo.get("tree", tmp_path / "back")
    assert (tmp_path / "back" / "sub" / "b.txt").read_text() == "b"
    again = project / "again.txt"
    again.write_text("a")  # bytes the store has: a move is a dedup hit
    first = moved.manifest.entries[0].content  # type: ignore[attr-defined]
    assert repo.add(again, name="again", link="move").manifest.content == first  # type: ignore[attr-defined]
    assert not again.exists()
    with pytest.raises(UsageError, match="needs --name"):
        repo.add(linked, link="move")
    assert check(repo).ok


@pytest.mark.parametrize("link", ["copy", "hardlink"])
def test_add_of_a_large_file_reports_bytes_as_it_reads(repo: Repository, project: Path,
                                                        link: str) -> None:
    size = 3 * CHUNK + 12345
    big = project / "big.bin"
    big.write_bytes(os.urandom(size))
    calls: list[tuple[str, str, int]] = []
    result = repo.add(big, name="big", link=link,
                      progress=lambda rel, n: calls.append(("file", rel, n)),
                      byte_progress=lambda rel, n: calls.append(("bytes", rel, n)))
    assert result.manifest.size == size  # type: ignore[attr-defined]
    assert calls[-1] == ("file", "big.bin", size)  # the file's own call comes last
    reads = calls[:-1]
    assert len(reads) >= 3, calls  # one file, several reports
    assert {(what, rel) for what, rel, _ in reads} == {("bytes", "big.bin")}
    counts = [n for _, _, n in reads]
    assert counts == sorted(set(counts)) and counts[0] > 0 and counts[-1] <= size, counts


def test_byte_progress_covers_each_large_file_of_a_directory(repo: Repository,
                                                             project: Path) -> None:
    tree = project / "tree"
    tree.mkdir()
    sizes = {"a.bin": 2 * CHUNK + 1, "b.bin": CHUNK + 7, "small.txt": 10}
    for rel, n in sizes.items():
        (tree / rel).write_bytes(os.urandom(n))
    seen: dict[str, list[int]] = {}
    lock = threading.Lock()  # files this large are read by threads

    def reading(rel: str, n: int) -> None:
        with lock:
            seen.setdefault(rel, []).append(n)

    repo.add(tree, name="tree", byte_progress=reading)
    assert set(seen) == {"a.bin", "b.bin"}  # a small file is read in one go, unreported
    for rel, counts in seen.items():
        assert counts == sorted(set(counts)) and counts[-1] <= sizes[rel], (rel, counts)
    assert len(seen["a.bin"]) >= 2


def test_a_failed_move_leaves_every_file_in_place(repo: Repository, project: Path) -> None:
    (project / "f0").write_text("zero")
    repo.add(project / "f0", name="a")
    tree = project / "e"
    tree.mkdir()
    for n in range(3):
        (tree / f"{n}.txt").write_text(f"file {n}")
    (tree / "link.txt").symlink_to(tree / "0.txt")  # stored by content, never moved as a link
    with pytest.raises(Conflict):
        repo.add(tree, name="a/b", link="move")  # name 'a' exists: the add fails at the end
    assert sorted(p.name for p in tree.iterdir()) == ["0.txt", "1.txt", "2.txt", "link.txt"]
    assert (tree / "1.txt").read_text() == "file 1"
    repo.add(tree, name="e", link="move")
    assert list(tree.iterdir()) == []


def test_links_fall_back_to_a_copy_across_filesystems(repo: Repository, project: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    def cross_device(*args: object, **kwargs: object) -> None:
        raise OSError(errno.EXDEV, "cross-device link")

    monkeypatch.setattr(os, "link", cross_device)
    src = project / "f.txt"
    src.write_text("hello")
    blob = repo.add(src, link="hardlink").manifest.content  # type: ignore[attr-defined]
    assert src.exists() and not os.path.samefile(src, repo.store.path(blob))
    other = project / "g.txt"
    other.write_text("moved across")
    repo.add(other, name="g", link="move")
    assert not other.exists()  # copied, then the source removed
    assert repo.store.compute_id(repo.load("g").content) == repo.load("g").content  # type: ignore[union-attr]


def test_one_registry_serves_two_repositories(tmp_path: Path) -> None:
    """A Registry holds kinds only: opening a second repository with it must not
    point the first one's manifest reads at the second one's store."""
    registry = Registry()
    first = Repository.init(tmp_path / "a", registry=registry)
    (tmp_path / "a" / "f.txt").write_text("in a")
    oid = first.add(tmp_path / "a" / "f.txt", name="f").id
    second = Repository.init(tmp_path / "b", registry=registry)
    (tmp_path / "b" / "g.txt").write_text("in b")
    other = second.add(tmp_path / "b" / "g.txt", name="g").id
    assert first.resolve("f") == oid and first.load(oid[:8]) == first.load("f")
    assert first.document(oid)["name"] == "f"
    assert second.document(other)["name"] == "g"
    with pytest.raises(NotFound):
        first.resolve("g")
