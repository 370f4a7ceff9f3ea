"""find: manifests by kind, name glob, meta expressions, provenance and time, from the index."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import pytest
from cli_support import add, assert_error, assert_ok

from casrepo.errors import NotFound, UsageError
from casrepo.index import INDEX_FILE, SCHEMA_VERSION
from casrepo.manifest import Artifact
from casrepo.query import Condition
from casrepo.repository import Repository


class Model(Artifact):
    kind: ClassVar[str] = "model"


class Dataset(Artifact):
    kind: ClassVar[str] = "dataset"


def at(day: int) -> datetime:
    return datetime(2026, 1, day, 12, 0, tzinfo=UTC)


@pytest.fixture
def zoo(repo: Repository) -> dict[str, str]:
    """Datasets and models with text and numeric meta, versions, inputs and times."""
    repo.registry.register(Model)
    repo.registry.register(Dataset)
    ids = {}
    ids["raw"] = repo.save(Dataset(meta={"rows": 1000, "source": "crm"}, created=at(1)),
                           name="datasets/raw")
    ids["clean"] = repo.save(Dataset(meta={"rows": "950", "source": "crm"}, created=at(2),
                                     inputs=(ids["raw"],)), name="datasets/clean")
    ids["m1"] = repo.save(Model(meta={"auc": "0.85", "stage": "dev", "epochs": "9"},
                                created=at(3), inputs=(ids["clean"],)), name="models/churn")
    ids["m2"] = repo.save(Model(meta={"auc": 0.93, "stage": "prod", "epochs": "10"},
                                created=at(4), inputs=(ids["clean"],)), name="models/churn")
    ids["other"] = repo.save(Model(meta={"auc": "0.91", "stage": "prod", "epochs": "n/a"},
                                   created=at(5), inputs=(ids["m2"],)), name="models/upsell")
    ids["bare"] = repo.save(Model(meta={"auc": "0.99"}, created=at(6)))  # unnamed
    return ids


def names(found: list[Any]) -> list[str | None]:
    return [f.name for f in found]


def ids_of(found: list[Any]) -> list[str]:
    return [f.id for f in found]


def test_by_default_each_names_newest_version_sorted_by_name(repo: Repository,
                                                               zoo: dict[str, str]) -> None:
    found = repo.find()
    assert names(found) == ["datasets/clean", "datasets/raw", "models/churn", "models/upsell"]
    assert found[2].id == zoo["m2"]
    assert found[2].kind == "model"
    assert found[2].created == "2026-01-04T12:00:00Z"
    # meta comes back with its JSON types, read from the index.
    assert found[2].meta == {"auc": 0.93, "stage": "prod", "epochs": "10"}


def test_all_versions_adds_older_versions_and_unnamed_manifests(repo: Repository,
                                                                 zoo: dict[str, str]) -> None:
    found = repo.find(all_versions=True)
    assert set(ids_of(found)) == set(zoo.values())
    assert found[-1].name is None and found[-1].id == zoo["bare"]  # unnamed last by name
    churn = [f.id for f in found if f.name == "models/churn"]
    assert churn == [zoo["m2"], zoo["m1"]]  # ties by name: newest first


@pytest.mark.parametrize(("expr", "expected"), [
    ("stage", ["models/churn", "models/upsell"]),
    ("stage=prod", ["models/churn", "models/upsell"]),
    ("stage!=prod", []),
    ("auc>0.92", ["models/churn"]),
    ("auc>=0.91", ["models/churn", "models/upsell"]),
    ("auc<0.93", ["models/upsell"]),
    ("auc<=0.93", ["models/churn", "models/upsell"]),
    ("auc=0.930", ["models/churn"]),  # numbers compare as numbers: 0.930 == 0.93
    ("rows>999", ["datasets/raw"]),   # a JSON number and a string number alike
    ("rows<999", ["datasets/clean"]),
    ("missing", []),
])
def test_each_operator(repo: Repository, zoo: dict[str, str], expr: str,
                       expected: list[str]) -> None:
    assert names(repo.find(meta=[expr])) == expected


def _holds(meta: dict[str, Any], expr: str) -> bool:
    """The rule of design.md, in Python: a reference for both SQL forms of find."""
    import json
    import operator
    import re

    key, op, value = re.fullmatch(r"([^=!<>]+)(!=|>=|<=|=|>|<)?(.*)", expr).groups()  # type: ignore[union-attr]
    if key not in meta:
        return False
    if op is None:
        return True
    stored = meta[key]
    number = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")

    def as_number(v: Any) -> float | None:
        if isinstance(v, bool):
            return None
        if isinstance(v, int | float):
            return float(v)
        return float(v) if isinstance(v, str) and number.fullmatch(v) else None

    ops = {"=": operator.eq, "!=": operator.ne, ">": operator.gt, ">=": operator.ge,
           "<": operator.lt, "<=": operator.le}
    left, right = as_number(stored), as_number(value)
    if left is not None and right is not None:
        return bool(ops[op](left, right))
    text = stored if isinstance(stored, str) else json.dumps(stored)
    return bool(ops[op](text, value))


@pytest.mark.parametrize("expr", ["auc", "auc>0.9", "auc<=0.91", "auc=0.93", "auc!=0.85",
                                  "epochs>9", "epochs<10", "epochs>=n", "rows>=950",
                                  "source=crm", "source>cr", "stage!=dev", "stage<p"])
def test_every_version_agrees_with_the_rule(repo: Repository, zoo: dict[str, str],
                                            expr: str) -> None:
    # --all-versions asks the meta indexes, the default tests each name: both obey the rule.
    expected = {oid for oid in zoo.values() if _holds(repo.load(oid).meta, expr)}
    assert set(ids_of(repo.find(meta=[expr], all_versions=True))) == expected
    newest = {oid for oid in expected if oid not in (zoo["m1"], zoo["bare"])}
    assert set(ids_of(repo.find(meta=[expr]))) == newest


def test_numbers_compare_as_numbers_text_as_text(repo: Repository, zoo: dict[str, str]) -> None:
    # 10 > 9 as numbers (as text "10" < "9"); "n/a" is not a number: "n/a" > "9" as text.
    assert ids_of(repo.find(meta=["epochs>9"], all_versions=True)) == [zoo["m2"], zoo["other"]]
    # A text V compares as text with every value: "10" < "9" as text.
    assert zoo["m2"] in ids_of(repo.find(meta=["epochs<9a"], all_versions=True))
    assert names(repo.find(meta=["source>cr"])) == ["datasets/clean", "datasets/raw"]
    assert names(repo.find(meta=["source<crm"])) == []


def test_conditions_combine_and_kinds_repeat(repo: Repository, zoo: dict[str, str]) -> None:
    assert names(repo.find(meta=["stage=prod", "auc<0.92"])) == ["models/upsell"]
    assert names(repo.find(kinds=["dataset"])) == ["datasets/clean", "datasets/raw"]
    assert len(repo.find(kinds=["dataset", "model"])) == 4
    assert repo.find(kinds=["file"]) == []


def test_name_glob_star_matches_slash(repo: Repository, zoo: dict[str, str]) -> None:
    assert names(repo.find(name="models/*")) == ["models/churn", "models/upsell"]
    assert names(repo.find(name="*n")) == ["datasets/clean", "models/churn"]
    assert names(repo.find(name="*/c?ean")) == ["datasets/clean"]
    assert names(repo.find(name="models/[!c]*")) == ["models/upsell"]
    assert repo.find(name="models") == []


def test_sort_and_limit(repo: Repository, zoo: dict[str, str]) -> None:
    assert ids_of(repo.find(kinds=["model"], sort="-meta.auc", all_versions=True)) == [
        zoo["bare"], zoo["m2"], zoo["other"], zoo["m1"]]
    assert ids_of(repo.find(kinds=["model"], sort="meta.auc", all_versions=True, limit=2)) == [
        zoo["m1"], zoo["other"]]
    assert ids_of(repo.find(sort="created")) == [zoo["raw"], zoo["clean"], zoo["m2"], zoo["other"]]
    assert ids_of(repo.find(sort="-created", limit=1)) == [zoo["other"]]
    assert names(repo.find(sort="-name")) == ["models/upsell", "models/churn", "datasets/raw",
                                              "datasets/clean"]
    # Without the key: last, whichever the direction.
    assert names(repo.find(sort="-meta.auc"))[-2:] == ["datasets/clean", "datasets/raw"]
    assert names(repo.find(sort="meta.auc"))[-2:] == ["datasets/clean", "datasets/raw"]


def test_input_is_exact_and_derived_from_follows_the_chain(repo: Repository,
                                                           zoo: dict[str, str]) -> None:
    assert ids_of(repo.find(input="datasets/clean", all_versions=True)) == [zoo["m2"], zoo["m1"]]
    assert repo.find(input="datasets/raw", kinds=["model"]) == []
    derived = repo.find(derived_from="datasets/raw", all_versions=True)
    assert set(ids_of(derived)) == {zoo["clean"], zoo["m1"], zoo["m2"], zoo["other"]}
    assert names(repo.find(derived_from="models/churn")) == ["models/upsell"]
    with pytest.raises(NotFound):
        repo.find(input="no/such/name")


def test_since_and_until(repo: Repository, zoo: dict[str, str]) -> None:
    assert ids_of(repo.find(since="2026-01-04T12:00:00Z", sort="created")) == [zoo["m2"],
                                                                               zoo["other"]]
    assert ids_of(repo.find(until=at(2), sort="created")) == [zoo["raw"], zoo["clean"]]
    assert ids_of(repo.find(since=at(2), until="2026-01-03", all_versions=True)) == [zoo["clean"]]
    assert repo.find(since="1d") == []


@pytest.mark.parametrize("expr", ["", "=1", ">2", "a!b", "a!", "!=x", "auc==0.9", "a=>1", "a<>1", "a!==1"])
def test_bad_expressions_are_usage_errors(expr: str) -> None:
    with pytest.raises(UsageError):
        Condition.parse(expr)


@pytest.mark.parametrize("args", [
    ["--meta", "=0.9"], ["--meta", "auc!0.9"], ["--meta", ""], ["--meta", "auc==0.9"], ["--sort", "size"],
    ["--sort", "meta."], ["--since", "yesterday-ish"], ["--until", "never"], ["--limit", "0"],
])
def test_bad_arguments_exit_2(run: Any, project: Path, repo: Repository, args: list[str]) -> None:
    add(run, project, "a.txt", b"a", "--name", "a")
    assert_error(run("find", *args), 2)


def test_cli_json_and_plain(run: Any, project: Path, repo: Repository) -> None:
    data = add(run, project, "iris.csv", b"1,2\n", "--name", "datasets/iris", "--meta", "rows=2")
    model = add(run, project, "model.json", b"{}", "--name", "models/churn", "--input",
                "datasets/iris", "--meta", "auc=0.91", "--meta", "note=first")
    add(run, project, "model.json", b"{\"v\": 2}", "--name", "models/churn", "--input",
        "datasets/iris", "--meta", "auc=0.89")
    found = assert_ok(run("find", "--meta", "auc>0.9", "--all-versions", "--json")).json()
    assert [f["id"] for f in found] == [model]
    assert set(found[0]) == {"id", "name", "kind", "created", "meta"}
    assert found[0]["name"] == "models/churn" and found[0]["kind"] == "file"
    assert found[0]["meta"] == {"auc": "0.91", "note": "first"}
    assert assert_ok(run("find", "--meta", "auc>0.9", "--json")).json() == []
    newest = assert_ok(run("find", "--input", data, "--sort", "-meta.auc", "--limit", "1"))
    assert newest.stdout.count("\n") == 1 and "models/churn" in newest.stdout
    assert "auc=0.89" in newest.stdout
    empty = assert_ok(run("find", "--kind", "model"))
    assert empty.stdout == "" and "no manifests match" in empty.stderr
    # A kind no manifest has is named, with the kinds there are.
    assert "no manifest has kind 'model'; kinds here: file" in empty.stderr
    none = assert_ok(run("find", "--kind", "file", "--name", "nothing*"))
    assert none.stderr.strip() == "no manifests match"


def test_answered_from_the_index_without_reading_manifests(repo: Repository, zoo: dict[str, str],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    assert len(repo.find()) == 4  # builds the index

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("find read a manifest")

    monkeypatch.setattr(repo.manifests, "read_document", refuse)
    monkeypatch.setattr(repo.manifests, "read_verified", refuse)
    monkeypatch.setattr(repo.manifests.store, "read_small", refuse)
    found = repo.find(kinds=["model"], meta=["auc>0.9"], sort="-meta.auc", limit=10)
    assert names(found) == ["models/churn", "models/upsell"]


def test_an_index_of_the_old_schema_is_rebuilt(repo: Repository, zoo: dict[str, str]) -> None:
    repo.find()
    repo.close()
    path = repo.dir / INDEX_FILE
    with sqlite3.connect(path) as conn:  # what an older casrepo left: no meta table
        conn.execute("DROP TABLE meta")
        conn.execute("PRAGMA user_version = 2")
    conn.close()
    again = Repository.open(repo.dir, repo.registry)
    assert names(again.find(meta=["stage=prod"])) == ["models/churn", "models/upsell"]
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    conn.close()
    again.close()


def test_a_new_version_added_after_the_index_is_found(repo: Repository, zoo: dict[str, str]) -> None:
    assert names(repo.find(meta=["auc>0.95"])) == []
    newer = repo.save(Model(meta={"auc": "0.97"}, created=at(7)), name="models/churn")
    assert ids_of(repo.find(meta=["auc>0.95"])) == [newer]
    # Another process moving the name (only the ref log says so) is seen too.
    other = Repository.open(repo.dir, repo.registry)
    newest = other.save(Model(meta={"auc": "0.5"}, created=at(8)), name="models/churn")
    other.close()
    assert ids_of(repo.find(name="models/churn")) == [newest]
