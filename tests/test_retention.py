"""Retention: gc thins old versions of names (manifests stay, data goes) unless kept."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

from casrepo import DataPruned, Repository
from casrepo.fsck import check
from casrepo.gc import collect_garbage

DAY = 86400


def age_all(repo: Repository) -> None:
    old = time.time() - 30 * DAY
    for info in repo.store.scan():
        os.utime(info.path, (old, old))


def add(repo: Repository, project: Path, data: str, name: str | None = None,
        **kw: Any) -> str:
    src = project / "src.txt"
    src.write_text(data)
    return repo.add(src, name=name, **kw).id


def blob(repo: Repository, oid: str) -> str:
    return repo.load(oid).content  # type: ignore[union-attr]


@pytest.fixture
def history(repo: Repository, project: Path) -> dict[str, str]:
    """model m1..m5 (m5 newest); m2 read raw1 (now an old version of raw); m3 holds
    the same bytes as m5; a report is derived from m1."""
    ids = {"raw1": add(repo, project, "raw one", "raw")}
    ids["m1"] = add(repo, project, "model one", "model")
    ids["m2"] = add(repo, project, "model two", "model", inputs=[ids["raw1"]])
    ids["m3"] = add(repo, project, "model final", "model", no_inputs=True)
    ids["m4"] = add(repo, project, "model four", "model")
    ids["m5"] = add(repo, project, "model final", "model")
    ids["raw2"] = add(repo, project, "raw two", "raw")
    ids["report"] = add(repo, project, "report", "report", inputs=[ids["m1"]])
    age_all(repo)
    return ids


def test_keep_last_thins_old_versions_only(repo: Repository, history: dict[str, str],
                                          tmp_path: Path) -> None:
    blobs = {k: blob(repo, v) for k, v in history.items()}
    dry = collect_garbage(repo, expire="now", keep_last=2, dry_run=True)
    assert dry.pruned == [history["m2"]]
    assert {i.id for i in dry.removed} == {blobs["m2"]}
    report = collect_garbage(repo, expire="now", keep_last=2)
    assert report.pruned == [history["m2"]] and report.retention == {"keep_last": 2}
    assert {i.id for i in report.removed} == {blobs["m2"]}
    # m3 shares its bytes with m5, m1 is an input of the report, raw1 is raw's second
    # newest version: all keep their data. Every manifest stays.
    for key, oid in history.items():
        assert repo.store.exists(oid)
        assert repo.store.exists(blobs[key]) == (key != "m2")
    assert [v.id for v in repo.history("model")] == [history[f"m{i}"] for i in (5, 4, 3, 2, 1)]
    with pytest.raises(DataPruned, match=r"model~3 .* was pruned by gc on .*keep-last 2"):
        repo.get("model~3", tmp_path / "out")
    assert not (tmp_path / "out").exists()
    repo.get("model~4", tmp_path / "m1")  # kept as the report's input
    assert (tmp_path / "m1").read_text() == "model one"
    # Pruned data is no damage: fsck is clean and lists it; gc runs again.
    fsck = check(repo)
    assert fsck.ok and fsck.pruned == [history["m2"]]
    assert collect_garbage(repo, expire="now", keep_last=2).removed == []
    assert collect_garbage(repo, expire="now").removed == []  # no retention: nothing to refuse
    repo.tag("old-model", "model~3")  # a tag of a pruned version is allowed
    assert check(repo).ok


def test_adding_the_same_bytes_again_restores_pruned_data(repo: Repository, project: Path,
                                                          history: dict[str, str],
                                                          tmp_path: Path) -> None:
    collect_garbage(repo, expire="now", keep_last=2)
    add(repo, project, "model two")
    repo.get("model~3", tmp_path / "back")
    assert (tmp_path / "back").read_text() == "model two"


def test_retention_never_touches_tags_or_current_versions(repo: Repository,
                                                         history: dict[str, str]) -> None:
    repo.tag("v1", history["m2"])
    report = collect_garbage(repo, expire="now", keep_last=1)
    # m2 is tagged; m4 and m3 go to... m3's bytes are m5's, so only m4's blob goes.
    assert report.pruned == [history["m4"]]
    assert repo.store.exists(blob(repo, history["m2"]))
    assert repo.store.exists(blob(repo, history["raw1"]))  # an input of tagged m2


def test_keep_within(repo: Repository, project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    now = int(time.time())
    ids = []
    for days in (100, 50, 10, 1):
        monkeypatch.setenv("SOURCE_DATE_EPOCH", str(now - days * DAY))
        ids.append(add(repo, project, f"made {days} days ago", "data"))
    monkeypatch.delenv("SOURCE_DATE_EPOCH")
    age_all(repo)
    report = collect_garbage(repo, expire="now", keep_within="30d")
    assert report.pruned == sorted(ids[:2])
    both = collect_garbage(repo, expire="now", keep_within="30d", keep_last=4, dry_run=True)
    assert both.pruned == []  # either rule keeps a version


def test_retention_from_config(repo: Repository, history: dict[str, str]) -> None:
    config = repo.dir / "config.yaml"
    config.write_text(config.read_text().replace("keep_last: null", "keep_last: 2"))
    repo = Repository.open(repo.dir)
    assert collect_garbage(repo, expire="now").pruned == [history["m2"]]


def test_cli_retention(run: Any, repo: Repository, history: dict[str, str]) -> None:
    dry = run("gc", "--keep-last", "2", "--prune-expire", "now", "--dry-run", "--json")
    assert dry.exit_code == 0, dry.stderr
    assert dry.json()["pruned"] == [history["m2"]]
    assert dry.json()["retention"] == {"keep_last": 2}
    done = run("gc", "--keep-last", "2", "--prune-expire", "now")
    assert done.exit_code == 0 and "pruned the data of 1 old version(s)" in done.stderr
    got = run("get", "model~3", "out.txt")
    assert got.exit_code == 4
    assert got.stderr.startswith("casrepo: error: the data of model~3") and "pruned" in got.stderr
    assert len(got.stderr.splitlines()) == 1
    log = run("log", "model", "--json").json()["versions"]
    assert [v["data_pruned"] for v in log] == [False, False, False, True, False]
    assert "[data pruned]" in run("log", "model").stdout.splitlines()[3]
    fsck = run("fsck", "--json")
    assert fsck.exit_code == 0 and fsck.json()["pruned"] == [history["m2"]]
    assert run("gc", "--keep-last", "0").exit_code == 2
    assert run("gc", "--keep-within", "soon").exit_code == 2


def test_unpack_and_open_of_pruned_data(repo: Repository, history: dict[str, str]) -> None:
    collect_garbage(repo, expire="now", keep_last=2)
    with pytest.raises(DataPruned):
        repo.unpack("model~3")
    with pytest.raises(DataPruned), repo.open_artifact("model~3"):
        pass
    with repo.open_artifact("model~2") as f:
        assert f.read() == b"model final"
