"""Partial pull: pull/fetch REV brings the whole lineage's manifests but only REV's
data; the rest is promised on the remote, fetched when read."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_support import assert_error, assert_ok, last_id, make_tree, tree, write
from conftest import CliRun
from remote_support import Spot, make_spot, spot_params

from casrepo import tree as tree_nodes
from casrepo.manifest import Target
from casrepo.repository import Repository


@pytest.fixture(params=spot_params("fs", "s3"))
def spot(request: pytest.FixtureRequest, tmp_path: Path) -> Spot:
    return make_spot(request, tmp_path, request.param)


def _pushed(run: CliRun, a: Path, spot: Spot) -> dict[str, str]:
    a.mkdir(exist_ok=True)
    assert_ok(run("init", cwd=a))
    ids = {}
    write(a / "raw.csv", b"id,value\n1,2\n")
    ids["raw1"] = last_id(run("add", "raw.csv", "--name", "datasets/raw", cwd=a))
    write(a / "raw.csv", b"id,value\n1,2\n3,4\n")
    ids["raw"] = last_id(run("add", "raw.csv", "--name", "datasets/raw", cwd=a))
    make_tree(a / "images")
    ids["images"] = last_id(run("add", "images", "--name", "datasets/images", cwd=a))
    write(a / "model.json", b'{"auc": 0.9}')
    ids["model"] = last_id(run("add", "model.json", "--name", "models/churn", "--input",
                               "datasets/raw", "--input", "datasets/images", cwd=a))
    assert_ok(run("remote", "add", "origin", spot.url, *spot.options, cwd=a))
    assert_ok(run("push", cwd=a))
    return ids


def _fresh(run: CliRun, b: Path, spot: Spot) -> None:
    b.mkdir()
    assert_ok(run("init", cwd=b))
    assert_ok(run("remote", "add", "origin", spot.url, *spot.options, cwd=b))


def _blobs(repo: Repository, oid: str) -> set[str]:
    return {lk.id for lk in repo.load(oid).links if lk.target is Target.BLOB}


def _without_refs(data: object) -> object:
    if isinstance(data, dict):
        return {k: _without_refs(v) for k, v in data.items() if k != "refs"}
    if isinstance(data, list):
        return [_without_refs(v) for v in data]
    return data


def _promised_lines(b: Path) -> list[dict[str, object]]:
    path = b / ".casrepo" / "logs" / "promised.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_pull_rev_brings_its_data_and_the_lineage_without_the_inputs_data(
        run: CliRun, tmp_path: Path, spot: Spot) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    ids = _pushed(run, a, spot)
    _fresh(run, b, spot)
    pulled = assert_ok(run("pull", "origin", "models/churn", "--json", cwd=b)).json()
    assert pulled["promised"] == 3  # raw, raw~1 and images: their data stays there
    repo = Repository.open(b / ".casrepo")
    source = Repository.open(a / ".casrepo")
    for oid in ids.values():
        assert repo.store.exists(oid)  # every manifest of the lineage
    assert all(repo.store.exists(x) for x in _blobs(source, ids["model"]))
    for oid in ("raw", "raw1", "images"):
        assert not any(repo.store.exists(x) for x in _blobs(source, ids[oid]))
    assert {(line["remote"], tuple(line["manifests"])) for line in _promised_lines(b)} == {
        ("origin", tuple(sorted([ids["raw"], ids["raw1"], ids["images"]])))}
    # Lineage works offline: the same graph as on the machine that made it (the names
    # it shows are this repository's).
    lineage = ["lineage", "models/churn", "--format", "json"]
    assert _without_refs(json.loads(run(*lineage, cwd=b).stdout)) == _without_refs(
        json.loads(run(*lineage, cwd=a).stdout))
    # fsck: on the remote, not lost.
    checked = assert_ok(run("fsck", "--json", cwd=b)).json()
    assert checked["ok"] and checked["problems"] == []
    assert {(p["id"], p["remote"]) for p in checked["promised"]} == {
        (ids[k], "origin") for k in ("raw", "raw1", "images")}
    assert "on remote 'origin'" in assert_ok(run("fsck", cwd=b)).stdout
    # gc: neither garbage nor missing.
    assert_ok(run("gc", "--prune-expire", "now", cwd=b))
    assert all(repo.store.exists(oid) for oid in ids.values())
    # get fetches the promised data when read (no fetch-on-miss setting needed).
    assert_ok(run("get", ids["images"], str(tmp_path / "images"), cwd=b))
    assert tree(tmp_path / "images") == tree(a / "images")
    assert_ok(run("get", f"{ids['raw1']}", str(tmp_path / "raw1.csv"), cwd=b))
    assert (tmp_path / "raw1.csv").read_bytes() == b"id,value\n1,2\n"
    checked = assert_ok(run("fsck", "--json", cwd=b)).json()
    assert [p["id"] for p in checked["promised"]] == [ids["raw"]]


def test_with_inputs_brings_the_inputs_data(run: CliRun, tmp_path: Path, spot: Spot) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    ids = _pushed(run, a, spot)
    _fresh(run, b, spot)
    pulled = assert_ok(run("pull", "origin", "models/churn", "--with-inputs", "--json",
                           cwd=b)).json()
    assert pulled["promised"] == 1  # raw~1: an earlier version of an input, not an input
    repo = Repository.open(b / ".casrepo")
    source = Repository.open(a / ".casrepo")
    for key in ("model", "raw", "images"):
        assert all(repo.store.exists(x) for x in _blobs(source, ids[key])), key
    assert not any(repo.store.exists(x) for x in _blobs(source, ids["raw1"]))
    assert_error(run("pull", "--with-inputs", cwd=b), 2, "--with-inputs")


def test_a_full_pull_after_a_partial_one_brings_the_rest(run: CliRun, tmp_path: Path,
                                                         spot: Spot) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    ids = _pushed(run, a, spot)
    _fresh(run, b, spot)
    assert_ok(run("fetch", "origin", "models/churn", cwd=b))
    assert_ok(run("pull", cwd=b))
    repo = Repository.open(b / ".casrepo")
    source = Repository.open(a / ".casrepo")
    for oid in ids.values():
        assert all(repo.store.exists(x) for x in _blobs(source, oid))
    assert assert_ok(run("fsck", "--json", cwd=b)).json()["promised"] == []


def test_clone_stays_full(run: CliRun, tmp_path: Path, spot: Spot) -> None:
    a = tmp_path / "a"
    _pushed(run, a, spot)
    cloned = assert_ok(run("clone", spot.url, str(tmp_path / "c"), *spot.options, "--json",
                           cwd=tmp_path)).json()
    assert cloned["promised"] == 0
    assert not (tmp_path / "c" / ".casrepo" / "logs" / "promised.jsonl").exists()


def test_promised_data_is_pushed_only_where_it_is(run: CliRun, tmp_path: Path, spot: Spot) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    ids = _pushed(run, a, spot)
    _fresh(run, b, spot)
    assert_ok(run("pull", "origin", "models/churn", cwd=b))
    write(b / "model.json", b'{"auc": 0.95}')
    assert_ok(run("add", "model.json", "--name", "models/churn", "--input", ids["raw"],
                  "--input", ids["images"], cwd=b))
    assert_ok(run("push", cwd=b))  # to where the data is: nothing missing there
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    assert_ok(run("remote", "add", "other", str(elsewhere / "r"), cwd=b))
    message = assert_error(run("push", "other", cwd=b), 4, "on remote 'origin'")
    assert "casrepo fetch origin" in message
    assert not (elsewhere / "r").exists()  # refused before the remote's layout was made


def test_a_damaged_record_of_promised_data_is_reported(run: CliRun, tmp_path: Path,
                                                       spot: Spot) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    _pushed(run, a, spot)
    _fresh(run, b, spot)
    assert_ok(run("pull", "origin", "models/churn", cwd=b))
    with open(b / ".casrepo" / "logs" / "promised.jsonl", "a") as f:
        f.write('{"remote": "origin", "manifests": ["../../etc"]}\n')
    checked = run("fsck", cwd=b)
    assert checked.exit_code == 6 and "promised-data log: line 2" in checked.stdout
    assert_error(run("gc", cwd=b), 6, "promised-data log")


def test_a_tree_input_is_promised_as_one_version(run: CliRun, tmp_path: Path, spot: Spot,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tree_nodes, "FLAT_MAX", 4)  # images is stored as a tree of nodes
    monkeypatch.setattr(tree_nodes, "CHUNK_TARGET", 2)
    a, b = tmp_path / "a", tmp_path / "b"
    for n in range(12):
        write(a / "images" / f"more/d{n % 3}/x{n}.bin", b"%d" % n)
    ids = _pushed(run, a, spot)
    assert "tree" in Repository.open(a / ".casrepo").document(ids["images"])
    _fresh(run, b, spot)
    pulled = assert_ok(run("pull", "origin", "models/churn", "--json", cwd=b)).json()
    assert pulled["promised"] == 3  # raw, raw~1 and images, not images' nodes
    checked = assert_ok(run("fsck", "--json", cwd=b)).json()
    assert checked["ok"]
    assert sorted(p["id"] for p in checked["promised"]) == sorted(
        ids[k] for k in ("raw", "raw1", "images"))
    assert assert_ok(run("fsck", cwd=b)).stdout.count("promised: ") == 3
    # A push elsewhere names the version whose data is missing, not one of its nodes.
    assert_ok(run("remote", "add", "other", str(tmp_path / "other"), cwd=b))
    assert_error(run("push", "other", ids["images"], cwd=b), 4,
                 f"the data of {ids['images'][:12]} is on remote 'origin'")
    assert_ok(run("get", ids["images"], str(tmp_path / "images"), cwd=b))
    assert tree(tmp_path / "images") == tree(a / "images")


def test_a_remote_holding_promised_data_is_removed_only_with_force(
        run: CliRun, tmp_path: Path) -> None:
    spot = Spot("fs", str(tmp_path / "remote"))
    a, b = tmp_path / "a", tmp_path / "b"
    ids = _pushed(run, a, spot)
    _fresh(run, b, spot)
    assert_ok(run("pull", "origin", "models/churn", cwd=b))
    message = assert_error(run("remote", "remove", "origin", cwd=b), 5,
                           "holds the only copy of the data of 3 version(s)", "--force")
    assert "casrepo fetch origin" in message
    assert "origin" in assert_ok(run("remote", "list", cwd=b)).stdout
    # The remote moved away: said so, not "no config.yaml".
    (tmp_path / "remote").rename(tmp_path / "moved")
    assert_error(run("get", ids["raw"], "raw.csv", cwd=b), 7, "does not exist")
    assert_error(run("fetch", "origin", cwd=b), 7, "does not exist")
    (tmp_path / "moved").rename(tmp_path / "remote")
    # The remote lost the data: said so, with what to do (not "run fsck").
    gone = Repository.open(a / ".casrepo").load(ids["raw"]).content  # type: ignore[union-attr]
    (tmp_path / "remote" / "objects" / gone[:2] / gone[2:]).unlink()
    message = assert_error(run("get", ids["raw"], "raw.csv", cwd=b), 4,
                           "was left on remote 'origin' by a partial pull",
                           "no longer has it")
    assert "fsck" not in message
    assert_ok(run("remote", "remove", "origin", "--force", cwd=b))
    message = assert_error(run("get", ids["images"], "images", cwd=b), 4,
                           "was left on remote 'origin'", "not configured any more",
                           "casrepo remote add origin")
    # A remote with nothing promised is removed as before.
    assert_ok(run("push", "--full", cwd=a))  # the lost object is there again
    assert_ok(run("remote", "add", "origin", spot.url, cwd=b))
    assert_ok(run("pull", cwd=b))
    assert_ok(run("remote", "remove", "origin", cwd=b))


def test_gc_drops_promised_records_that_cover_nothing(run: CliRun, tmp_path: Path) -> None:
    spot = Spot("fs", str(tmp_path / "remote"))
    a, b = tmp_path / "a", tmp_path / "b"
    ids = _pushed(run, a, spot)
    _fresh(run, b, spot)
    assert_ok(run("pull", "origin", "models/churn", cwd=b))
    assert_ok(run("get", ids["images"], str(tmp_path / "images"), cwd=b))  # arrives
    assert_ok(run("gc", "--dry-run", cwd=b))
    assert len(_promised_lines(b)[0]["manifests"]) == 3  # a dry run changes nothing
    assert_ok(run("gc", cwd=b))
    assert _promised_lines(b)[0]["manifests"] == sorted([ids["raw"], ids["raw1"]])
    assert_ok(run("fetch", "origin", cwd=b))  # the rest arrives
    assert_ok(run("gc", cwd=b))
    assert not (b / ".casrepo" / "logs" / "promised.jsonl").exists()
    assert assert_ok(run("fsck", "--json", cwd=b)).json()["ok"]


def test_pull_of_an_id_prefix_says_a_full_id_is_needed(run: CliRun, tmp_path: Path) -> None:
    spot = Spot("fs", str(tmp_path / "remote"))
    a, b = tmp_path / "a", tmp_path / "b"
    ids = _pushed(run, a, spot)
    _fresh(run, b, spot)
    assert_error(run("pull", "origin", ids["raw1"][:8], cwd=b), 4,
                 "no name or tag", "full 64-character id, not a prefix")
    assert_ok(run("pull", "origin", "models/churn", cwd=b))  # the lineage's manifests come
    message = assert_error(run("pull", "origin", ids["raw1"][:8], cwd=b), 4, "full id")
    assert f"'casrepo pull origin {ids['raw1']}'" in message
    assert_ok(run("pull", "origin", ids["raw1"], cwd=b))


def test_web_view_of_promised_data_says_where_it_is(run: CliRun, tmp_path: Path) -> None:
    pytest.importorskip("starlette", reason="the web extra is not installed")
    from starlette.testclient import TestClient

    from casrepo.web.app import create_app

    spot = Spot("fs", str(tmp_path / "remote"))
    a, b = tmp_path / "a", tmp_path / "b"
    ids = _pushed(run, a, spot)
    _fresh(run, b, spot)
    assert_ok(run("pull", "origin", "models/churn", cwd=b))
    with TestClient(create_app(b / ".casrepo")) as client:
        page = client.get(f"/v/{ids['images']}")
        assert page.status_code == 200 and "left on remote origin" in page.text
        assert "/file/" not in page.text
        got = client.get(f"/v/{ids['images']}/file/README.md")
        assert got.status_code == 404
        assert got.text.startswith(f"the data of {ids['images'][:12]} was left on remote 'origin'")
        assert got.text.count("\n") == 1
        model = client.get(f"/v/{ids['model']}")
        assert "/file/" in model.text  # its data is here: downloadable
