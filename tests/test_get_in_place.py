"""`get` with DEST left out, into an existing directory, and `--force` updating a
directory in place (`--delete` removing what the artifact lacks), with every safety
property of a fresh get: never through a symlink, never into the repository, every
byte verified, no temp file left."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from cli_support import (
    add,
    assert_error,
    assert_ok,
    corrupt,
    last_id,
    make_tree,
    sha256,
    snapshot,
    tree,
    write,
)

from casrepo.manifest import DirectoryArtifact, DirEntry
from casrepo.repository import Repository

USAGE = 2
CONFLICT = 5
INTEGRITY = 6


def leftovers(root: Path) -> list[str]:
    """Temp files or directories get may have left anywhere under ``root``."""
    found = []
    for current, dirs, files in os.walk(root):
        for name in dirs + files:
            if name.startswith((".casrepo-get-", "..old-")) or ".old-" in name:
                found.append(os.path.join(current, name))
    return found


@pytest.fixture
def images(run: Any, repo: Repository, project: Path) -> dict[str, tuple[bytes, bool]]:
    """A directory artifact named datasets/images (tagged v1) and what it holds."""
    files = make_tree(project / "images")
    last_id(run("add", "images", "--name", "datasets/images"))
    assert_ok(run("tag", "v1", "datasets/images"))
    return files


def healthy(run: Any) -> None:
    assert_ok(run("fsck"))
    assert "datasets/images" in assert_ok(run("refs")).stdout


# -- --force updates a directory in place ----------------------------------------------


def test_get_into_dot_with_force_updates_in_place(run: Any, project: Path,
                                                  images: dict[str, tuple[bytes, bool]]) -> None:
    """`get v1 . --force` once failed with 'Device or resource busy' and left an empty
    '..old-XXXX/' behind."""
    work = project / "work"
    write(work / "notes.txt", b"mine\n")
    write(work / "README.md", b"old readme\n")
    result = assert_ok(run("get", "v1", ".", "--force", cwd=work))
    assert "in place" in result.stdout
    assert tree(work) == {**images, "notes.txt": (b"mine\n", False)}
    assert leftovers(project) == []


def test_get_into_the_project_itself_never_touches_the_repository(
        run: Any, project: Path, images: dict[str, tuple[bytes, bool]]) -> None:
    config = (project / ".casrepo" / "config.yaml").read_bytes()
    assert_ok(run("get", "v1", ".", "--force"))
    for rel, content in images.items():
        assert (project / rel).read_bytes() == content[0]
    assert (project / "images").is_dir()  # left alone: not in the artifact
    assert_ok(run("get", "v1", ".", "--force", "--delete"))
    assert sorted(p.name for p in project.iterdir()) == sorted(
        {".casrepo", *(rel.split("/")[0] for rel in images)})
    assert (project / ".casrepo" / "config.yaml").read_bytes() == config
    assert leftovers(project) == []
    healthy(run)


def test_force_leaves_unrelated_files_alone(run: Any, project: Path,
                                            images: dict[str, tuple[bytes, bool]]) -> None:
    """`get v1 somedir --force` once deleted every other file in somedir without a word."""
    dest = project / "somedir"
    write(dest / "unrelated.txt", b"keep me\n")
    write(dest / "data" / "mine.bin", b"keep me too\n")
    write(dest / "bin" / "run.sh", b"stale version\n")
    assert_ok(run("get", "v1", "somedir", "--force"))
    assert tree(dest) == {**images, "unrelated.txt": (b"keep me\n", False),
                          "data/mine.bin": (b"keep me too\n", False)}
    assert leftovers(project) == []


def test_delete_removes_what_the_artifact_lacks(run: Any, project: Path, tmp_path: Path,
                                                images: dict[str, tuple[bytes, bool]]) -> None:
    dest = project / "somedir"
    victim = tmp_path / "victim"
    write(victim / "precious.txt", b"precious\n")
    victim_before = snapshot(victim)
    write(dest / "unrelated.txt", b"extra\n")
    write(dest / "old" / "deeper" / "x.txt", b"extra\n")
    write(dest / "data" / "nested" / "stale.txt", b"extra\n")
    (dest / "link-to-victim").symlink_to(victim, target_is_directory=True)
    (dest / "data" / "file-link").symlink_to(victim / "precious.txt")
    result = assert_ok(run("get", "v1", "somedir", "--force", "--delete", "--json")).json()
    assert result["in_place"] is True
    assert result["deleted"] == 5  # unrelated.txt, old/, stale.txt, two links
    assert result["files"] == len(images)
    assert tree(dest) == images
    assert snapshot(victim) == victim_before
    assert leftovers(project) == []


def test_plain_output_says_what_happened(run: Any, project: Path,
                                         images: dict[str, tuple[bytes, bool]]) -> None:
    write(project / "somedir" / "extra.txt", b"x\n")
    plain = assert_ok(run("get", "v1", "somedir", "--force", "--delete")).stdout
    assert plain.startswith(f"updated somedir in place: wrote {len(images)} file(s)")
    assert "removed 1 path(s)" in plain


def test_existing_directory_without_force_is_a_conflict(run: Any, project: Path,
                                                        images: dict[str, tuple[bytes, bool]]) -> None:
    write(project / "somedir" / "keep.txt", b"keep\n")
    before = snapshot(project / "somedir")
    assert_error(run("get", "v1", "somedir"), CONFLICT, "destination exists",
                 "--force to update it in place")
    assert snapshot(project / "somedir") == before


def test_an_empty_directory_is_filled_without_force(run: Any, project: Path, tmp_path: Path,
                                                    images: dict[str, tuple[bytes, bool]]) -> None:
    """As git clone: an existing empty DEST is written into (not replaced: it may be
    the working directory)."""
    (project / "empty").mkdir()
    inode = (project / "empty").stat().st_ino
    plain = assert_ok(run("get", "v1", "empty/")).stdout
    assert plain.startswith(f"wrote {len(images)} file(s)"), plain
    assert tree(project / "empty") == images and (project / "empty").stat().st_ino == inode
    here = tmp_path / "here"
    here.mkdir()
    doc = assert_ok(run("--repo", str(project / ".casrepo"), "get", "v1", ".", "--json",
                        cwd=here)).json()
    assert doc["in_place"] is False and doc["files"] == len(images)
    assert tree(here) == images
    assert leftovers(tmp_path) == []
    # No longer empty: a conflict again.
    assert_error(run("get", "v1", "empty"), CONFLICT, "destination exists")
    healthy(run)


@pytest.mark.parametrize("args", [("get", "v1", "somedir", "--delete"),
                                  ("get", "data", "out", "--force", "--delete")])
def test_delete_needs_force_and_a_directory(run: Any, project: Path,
                                            images: dict[str, tuple[bytes, bool]],
                                            args: tuple[str, ...]) -> None:
    add(run, project, "data.csv", b"a,b\n", "--name", "data")
    write(project / "somedir" / "keep.txt", b"keep\n")
    assert_error(run(*args), USAGE, "--delete")
    assert (project / "somedir" / "keep.txt").exists()


# -- never through a symlink, never over a directory of other files --------------------


def test_in_place_replaces_symlinks_never_follows_them(run: Any, project: Path, tmp_path: Path,
                                                       images: dict[str, tuple[bytes, bool]]) -> None:
    victim = tmp_path / "victim"
    write(victim / "run.sh", b"victim's own\n")
    write(victim / "other.txt", b"victim\n")
    victim_before = snapshot(victim)
    dest = project / "dest"
    dest.mkdir()
    (dest / "bin").symlink_to(victim, target_is_directory=True)  # where the artifact has a dir
    (dest / "README.md").symlink_to(victim / "other.txt")  # where it has a file
    (dest / "empty.txt").symlink_to(tmp_path / "dangling")
    assert_ok(run("get", "v1", "dest", "--force"))
    assert tree(dest) == images  # tree() fails on any symlink left
    assert snapshot(victim) == victim_before
    assert not (tmp_path / "dangling").exists()


def test_a_file_where_the_artifact_has_a_directory_is_replaced(
        run: Any, project: Path, images: dict[str, tuple[bytes, bool]]) -> None:
    write(project / "dest" / "data", b"a file named like the artifact's directory\n")
    assert_ok(run("get", "v1", "dest", "--force"))
    assert tree(project / "dest") == images


def test_a_directory_where_the_artifact_has_a_file_needs_delete(
        run: Any, project: Path, images: dict[str, tuple[bytes, bool]]) -> None:
    dest = project / "dest"
    write(dest / "README.md" / "inside.txt", b"someone's files\n")
    write(dest / "keep.txt", b"keep\n")
    before = snapshot(dest)
    assert_error(run("get", "v1", "dest", "--force"), CONFLICT, "README.md is a directory",
                 "--delete")
    assert snapshot(dest) == before  # refused before anything was written
    assert leftovers(project) == []
    assert_ok(run("get", "v1", "dest", "--force", "--delete"))
    assert tree(dest) == images


# -- never into the repository ------------------------------------------------------


def _forge(repo: Repository, name: str, *paths: str) -> None:
    """A valid directory manifest whose entries reach into the repository from the project."""
    blob = repo.store.put_bytes(b"evil\n").id
    repo.save(DirectoryArtifact(entries=tuple(DirEntry(path=p, content=blob, size=5)
                                              for p in sorted(paths))), name=name)


@pytest.mark.parametrize("paths", [(".casrepo/config.yaml",), ("a.txt", ".casrepo/refs/names/x"),
                                   (".casrepo",)])
@pytest.mark.parametrize("options", [("--force",), ("--force", "--delete")])
def test_in_place_never_writes_into_the_repository(run: Any, repo: Repository, project: Path,
                                                   paths: tuple[str, ...],
                                                   options: tuple[str, ...]) -> None:
    _forge(repo, "evil", *paths)
    write(project / "keep.txt", b"keep\n")
    before = snapshot(project, skip=("index.sqlite", "index.sqlite-wal", "index.sqlite-shm",
                                     "locks", "logs", "refs", "objects", "tmp"))
    assert_error(run("get", "evil", ".", *options), CONFLICT, "repository")
    after = snapshot(project, skip=("index.sqlite", "index.sqlite-wal", "index.sqlite-shm",
                                    "locks", "logs", "refs", "objects", "tmp"))
    assert after == before
    assert leftovers(project) == []
    assert_ok(run("fsck"))


def test_in_place_into_a_directory_above_the_project(run: Any, project: Path, tmp_path: Path,
                                                     images: dict[str, tuple[bytes, bool]]) -> None:
    """`..` holds the repository: it is written into, and --delete removes everything the
    artifact lacks but the repository (and the directories that hold it)."""
    assert_ok(run("get", "v1", "..", "--force", "--delete"))
    for rel, (content, _) in images.items():
        assert (tmp_path / rel).read_bytes() == content
    assert sorted(p.name for p in project.iterdir()) == [".casrepo"]
    healthy(run)


# -- every byte verified, no temp file left -------------------------------------------


def test_a_corrupt_blob_fails_the_update_and_leaves_no_temp_file(
        run: Any, repo: Repository, project: Path, images: dict[str, tuple[bytes, bool]]) -> None:
    dest = project / "dest"
    write(dest / "README.md", b"old readme\n")
    write(dest / "keep.txt", b"keep\n")
    before = snapshot(dest)
    corrupt(repo.store.path(sha256(images["README.md"][0])))
    assert_error(run("get", "v1", "dest", "--force", "--delete"), INTEGRITY, "corrupt")
    assert snapshot(dest) == before  # the first directory's batch failed: nothing renamed
    assert leftovers(project) == []


def test_hardlinks_in_place_twice_leave_no_temp_file(run: Any, project: Path,
                                                     images: dict[str, tuple[bytes, bool]]) -> None:
    """Renaming a link over another link to the same file does nothing: the temp name
    must still go."""
    assert_ok(run("get", "v1", "dest", "--link", "hardlink"))
    assert_ok(run("get", "v1", "dest", "--force", "--link", "hardlink"))
    assert tree(project / "dest") == images
    assert leftovers(project) == []


# -- DEST left out, or an existing directory for a file -------------------------------


def test_dest_omitted_uses_the_file_name(run: Any, repo: Repository, project: Path) -> None:
    add(run, project, "iris.csv", b"a,b\n1,2\n", "--name", "datasets/iris")
    work = project / "work"
    work.mkdir()
    result = assert_ok(run("get", "datasets/iris", cwd=work))
    assert result.stdout.strip() == "wrote 1 file(s), 8 B to iris.csv"
    assert (work / "iris.csv").read_bytes() == b"a,b\n1,2\n"
    assert_error(run("get", "datasets/iris", cwd=work), CONFLICT, "iris.csv")
    assert_ok(run("get", "datasets/iris", "--force", cwd=work))


def test_dest_omitted_for_a_directory_uses_its_name(run: Any, project: Path,
                                                    images: dict[str, tuple[bytes, bool]]) -> None:
    work = project / "work"
    work.mkdir()
    document = assert_ok(run("get", "datasets/images", "--json", cwd=work)).json()
    assert document["dest"] == "images"
    assert tree(work / "images") == images


def test_dest_omitted_for_a_directory_prefers_the_path_it_was_added_from(
        run: Any, repo: Repository, project: Path) -> None:
    files = make_tree(project / "src" / "pictures")
    last_id(run("add", "src/pictures", "--name", "datasets/images"))
    work = project / "work"
    work.mkdir()
    assert assert_ok(run("get", "datasets/images", "--json", cwd=work)).json()["dest"] == "pictures"
    assert tree(work / "pictures") == files
    assert assert_ok(run("get", "datasets/images:data", "--json", cwd=work)).json()["dest"] == "data"
    assert sorted(tree(work / "data")) == ["nested/deeper/été.txt", "part-0001.bin"]


def test_dest_omitted_without_any_name_is_a_usage_error(run: Any, repo: Repository,
                                                        project: Path) -> None:
    blob = repo.store.put_bytes(b"x\n").id
    oid = repo.save(DirectoryArtifact(entries=(DirEntry(path="x", content=blob, size=2),)))
    before = sorted(p.name for p in project.iterdir())
    assert_error(run("get", oid), USAGE, "give DEST")
    assert sorted(p.name for p in project.iterdir()) == before


def test_file_into_an_existing_directory_as_cp(run: Any, repo: Repository, project: Path) -> None:
    add(run, project, "iris.csv", b"a,b\n", "--name", "datasets/iris")
    (project / "out").mkdir()
    assert_ok(run("get", "datasets/iris", "out"))
    assert (project / "out" / "iris.csv").read_bytes() == b"a,b\n"
    assert_error(run("get", "datasets/iris", "out"), CONFLICT, "out/iris.csv")
    assert_ok(run("get", "datasets/iris", "out", "--force"))
    (project / "out2" / "iris.csv").mkdir(parents=True)
    assert_error(run("get", "datasets/iris", "out2", "--force"), CONFLICT, "is a directory")
    assert leftovers(project) == []


def test_file_artifact_named_file_stays_a_plain_name(run: Any, repo: Repository,
                                                     project: Path) -> None:
    """A forged filename with a path in it is not used: the name's last component is."""
    from casrepo.manifest import FileArtifact

    blob = repo.store.put_bytes(b"x\n").id
    repo.save(FileArtifact(content=blob, size=2, filename="../escape.txt"), name="data/plain")
    assert_ok(run("get", "data/plain"))
    assert (project / "plain").read_bytes() == b"x\n"
    assert not (project.parent / "escape.txt").exists()
