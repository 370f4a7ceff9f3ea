from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from casrepo import Artifact, FileArtifact, IntegrityError, Repository
from casrepo.errors import Busy
from casrepo.fsck import check
from casrepo.gc import collect_garbage
from casrepo.lockfile import host_tag
from casrepo.refs import RefKind

OLD = time.time() - 30 * 86400


def age_all(repo: Repository, when: float = OLD) -> None:
    for info in repo.store.scan():
        os.utime(info.path, (when, when))


def add_bytes(repo: Repository, project: Path, data: str, **kw: object) -> str:
    src = project / "src.txt"
    src.write_text(data)
    return repo.add(src, **kw).id  # type: ignore[arg-type]


def test_gc_keeps_exactly_the_reachable_set(repo: Repository, project: Path) -> None:
    raw1 = add_bytes(repo, project, "raw v1", name="raw")
    raw2 = add_bytes(repo, project, "raw v2", name="raw")
    model = add_bytes(repo, project, "model", name="model", inputs=[raw1])
    orphan = add_bytes(repo, project, "orphan", name="tmp")
    repo.delete_name("tmp")
    age_all(repo)
    reachable = set()
    for oid in (raw1, raw2, model):
        reachable.add(oid)
        reachable.add(repo.load(oid).content)  # type: ignore[union-attr]
    orphan_blob = repo.load(orphan).content  # type: ignore[union-attr]

    dry = collect_garbage(repo, reflog_expire="now", expire="now", dry_run=True)
    assert {i.id for i in dry.removed} == {orphan, orphan_blob}
    assert set(repo.store.ids()) == reachable | {orphan, orphan_blob}

    report = collect_garbage(repo, reflog_expire="now", expire="now")
    assert {i.id for i in report.removed} == {orphan, orphan_blob}
    assert report.bytes_removed == sum(i.size for i in report.removed) > 0
    assert set(repo.store.ids()) == reachable
    assert report.reachable == len(reachable)


def test_grace_period_protects_young_objects(repo: Repository, project: Path) -> None:
    add_bytes(repo, project, "young", name="t")
    repo.delete_name("t")
    report = collect_garbage(repo)  # default: 14 days from config
    assert report.removed == [] and report.kept_recent == 2
    hour_ago = datetime.now(UTC) - timedelta(hours=1)
    assert collect_garbage(repo, reflog_expire="now", expire=hour_ago).removed == []
    assert len(collect_garbage(repo, reflog_expire="now", expire="now").removed) == 2


def test_never_expire_keeps_everything(repo: Repository, project: Path) -> None:
    add_bytes(repo, project, "x", name="t")
    repo.delete_name("t")
    age_all(repo)
    assert collect_garbage(repo, reflog_expire="now", expire="never").removed == []


def test_freshened_object_survives(repo: Repository, project: Path) -> None:
    """git's freshen rule: a dedup hit makes an old unreachable blob young again."""
    oid = add_bytes(repo, project, "shared bytes", name="t")
    blob = repo.load(oid).content  # type: ignore[union-attr]
    repo.delete_name("t")
    age_all(repo)
    repo.store.put_bytes(b"shared bytes")  # an in-flight writer reusing the blob
    report = collect_garbage(repo, reflog_expire="now", expire=datetime.now(UTC) - timedelta(minutes=5))
    assert repo.store.exists(blob)
    assert oid in {i.id for i in report.removed}


def test_gc_refuses_on_corrupt_or_dangling_roots(repo: Repository, project: Path) -> None:
    keep = add_bytes(repo, project, "keep", name="keep")
    add_bytes(repo, project, "gone", name="gone")
    repo.delete_name("gone")
    age_all(repo)
    count = len(list(repo.store.ids()))
    ref = repo.dir / "refs" / "names" / "keep"
    ref.write_text("garbage\n")
    with pytest.raises(IntegrityError, match="refused"):
        collect_garbage(repo, reflog_expire="now", expire="now")
    assert len(list(repo.store.ids())) == count
    ref.write_text("e" * 64 + "\n")  # dangling
    with pytest.raises(IntegrityError, match="missing"):
        collect_garbage(repo, reflog_expire="now", expire="now")
    ref.write_text(keep + "\n")
    repo.store.delete(repo.load(keep).content)  # type: ignore[union-attr]
    with pytest.raises(IntegrityError, match="missing"):
        collect_garbage(repo, reflog_expire="now", expire="now")
    assert len(list(repo.store.ids())) == count - 1


def test_gc_waits_for_writers_then_names_them(repo: Repository) -> None:
    writer = Repository.open(repo.dir)
    with writer.writing(), pytest.raises(Busy, match=f"writers are running \\(pid {os.getpid()} "):
        collect_garbage(repo, reflog_expire="now", expire="now", wait=0.2)
    assert not (repo.dir / "locks" / "gc.lock").exists()  # the timed-out gc left no lock
    collect_garbage(repo, reflog_expire="now", expire="now", wait=0.2)  # and the writer's lock went with it


def test_writers_wait_for_a_running_gc(repo: Repository, project: Path,
                                       lock_holder: Any) -> None:
    gc_holder = lock_holder(repo.dir / "locks" / "gc.lock")  # a gc that is running
    with pytest.raises(Busy, match=f"gc is running .*pid {gc_holder.pid}"), repo.writing(0.2):
        pass
    with pytest.raises(Busy, match=f"locked by .*pid {gc_holder.pid}"):
        collect_garbage(repo, reflog_expire="now", expire="now", wait=0.2)  # one gc at a time
    gc_holder.kill()
    gc_holder.wait()
    add_bytes(repo, project, "after gc died", name="t")  # a killed gc blocks nobody
    collect_garbage(repo, reflog_expire="now", expire="now", wait=0.2)


def test_gc_clears_temp_files_of_dead_processes(repo: Repository) -> None:
    repo.tmp_dir.mkdir(exist_ok=True)
    dead = repo.tmp_dir / f"obj-{2**22 + 4321}.{host_tag()}-abc.tmp"
    live = repo.tmp_dir / f"obj-{os.getpid()}.{host_tag()}-abc.tmp"
    dead.write_bytes(b"partial")
    live.write_bytes(b"in progress")
    foreign = repo.tmp_dir / "obj-1.00000000-abc.tmp"  # another host's writer
    foreign.write_bytes(b"someone else's")
    report = collect_garbage(repo, reflog_expire="now", expire="now")
    assert report.temp_files_removed == [dead]
    assert not dead.exists() and live.exists() and foreign.exists()
    day_old = time.time() - 2 * 86400
    os.utime(foreign, (day_old, day_old))
    assert collect_garbage(repo, reflog_expire="now", expire="now").temp_files_removed == [foreign]


@st.composite
def dags(draw: st.DrawFn) -> tuple[list[list[int]], list[int], list[bool]]:
    n = draw(st.integers(1, 12))
    inputs = [draw(st.lists(st.integers(0, i - 1), max_size=3, unique=True)) if i else []
              for i in range(n)]
    roots = draw(st.lists(st.integers(0, n - 1), max_size=4, unique=True))
    old = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    return inputs, roots, old


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(dags())
def test_gc_on_random_dags(tmp_path_factory: pytest.TempPathFactory,
                           dag: tuple[list[list[int]], list[int], list[bool]]) -> None:
    inputs, roots, old = dag
    repo = Repository.init(tmp_path_factory.mktemp("dag"))
    ids: list[str] = []
    blobs: list[str] = []
    for i, deps in enumerate(inputs):
        blob = repo.store.put_bytes(f"blob {i}".encode()).id
        manifest = FileArtifact(content=blob, size=6, name=f"n{i}",
                                inputs=tuple(ids[d] for d in deps))
        ids.append(repo.save(manifest))
        blobs.append(blob)
    for r in roots:
        repo.refs.update(RefKind.NAME, f"root{r}", ids[r])
    # expected kept set: what refs reach, plus what recent manifests link to
    reach: set[int] = set()
    stack = list(roots) + [i for i, is_old in enumerate(old) if not is_old]
    while stack:
        i = stack.pop()
        if i not in reach:
            reach.add(i)
            stack.extend(inputs[i])
    for i, is_old in enumerate(old):
        when = OLD if is_old else time.time()
        for oid in (ids[i], blobs[i]):
            os.utime(repo.store.path(oid), (when, when))
    cutoff = datetime.now(UTC) - timedelta(days=1)
    collect_garbage(repo, reflog_expire="now", expire=cutoff)
    left = set(repo.store.ids())
    for i in range(len(ids)):
        if i in reach:
            assert ids[i] in left and blobs[i] in left
        else:
            assert ids[i] not in left and blobs[i] not in left


def test_metadata_only_artifacts(repo: Repository) -> None:
    oid = repo.save(Artifact(name="external", meta={"url": "s3://bucket/x"}))
    repo.refs.update(RefKind.NAME, "external", oid)
    age_all(repo)
    collect_garbage(repo, reflog_expire="now", expire="now")
    assert repo.load("external").meta == {"url": "s3://bucket/x"}  # type: ignore[union-attr]


def test_recent_manifest_keeps_what_it_links_to(repo: Repository, project: Path) -> None:
    """An old unnamed input of a new unnamed artifact survives gc, so tagging
    the new artifact later never makes a ref into missing data."""
    raw = add_bytes(repo, project, "raw", name="raw")
    repo.delete_name("raw")
    age_all(repo)
    model = add_bytes(repo, project, "model", inputs=[raw])
    report = collect_garbage(repo, reflog_expire="now", expire=datetime.now(UTC) - timedelta(hours=1))
    assert report.removed == [] and report.kept_recent == 4
    repo.tag("v1", model)
    assert collect_garbage(repo, reflog_expire="now", expire="now").removed == []


def test_ref_log_keeps_what_deleted_and_moved_refs_held(repo: Repository, project: Path) -> None:
    gone = add_bytes(repo, project, "deleted by mistake", name="oops")
    repo.delete_name("oops")
    first = add_bytes(repo, project, "first", name="moved")
    second = add_bytes(repo, project, "second")
    repo.set_name("moved", second)  # force-moved: first is no longer on its history
    blobs = {oid: repo.load(oid).content for oid in (gone, first)}  # type: ignore[union-attr]
    age_all(repo)
    report = collect_garbage(repo, expire="now")  # ref log entries of 30 days are roots
    assert report.removed == [] and report.reflog_roots == 4
    repo.set_name("oops", gone)  # so the mistake can be undone
    repo.delete_name("oops")
    age_all(repo)
    removed = {i.id for i in collect_garbage(repo, expire="now", reflog_expire="now").removed}
    assert removed == {gone, blobs[gone], first, blobs[first]}


@st.composite
def histories(draw: st.DrawFn) -> dict[str, Any]:
    """Names with chains of versions over a small pool of blobs, inputs between any
    manifests, tags, deleted names, young and old objects, and gc's rules."""
    chains = draw(st.lists(st.integers(1, 4), min_size=1, max_size=4))
    total = sum(chains)
    return {
        "chains": chains,
        "blobs": draw(st.lists(st.integers(0, 5), min_size=total, max_size=total)),
        "inputs": [draw(st.lists(st.integers(0, max(i - 1, 0)), max_size=2, unique=True))
                   if i else [] for i in range(total)],
        "tags": draw(st.lists(st.integers(0, total - 1), max_size=2, unique=True)),
        "deleted": draw(st.lists(st.integers(0, len(chains) - 1), max_size=2, unique=True)),
        "young": draw(st.sets(st.integers(0, total + 5))),
        "keep_last": draw(st.one_of(st.none(), st.integers(1, 3))),
        "reflog": draw(st.sampled_from(["now", "never"])),
    }


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(histories())
def test_gc_model_with_retention_and_ref_log(tmp_path_factory: pytest.TempPathFactory,
                                            h: dict[str, Any]) -> None:
    """gc keeps exactly what the rules say, checked against a separate model: never
    an object a root needs, always every other object older than the grace period."""
    repo = Repository.init(tmp_path_factory.mktemp("hist"))
    ids: list[str] = []
    blob_of: list[str] = []
    heads: list[list[str]] = []
    n = 0
    for c, length in enumerate(h["chains"]):
        chain = []
        for _ in range(length):
            data = f"blob {h['blobs'][n]}".encode()
            blob = repo.store.put_bytes(data).id
            manifest = FileArtifact(content=blob, size=len(data), message=f"version {n}",
                                    inputs=tuple(dict.fromkeys(ids[d] for d in h["inputs"][n]
                                                               if d < len(ids))))
            ids.append(repo.save(manifest, name=f"name{c}"))
            blob_of.append(blob)
            if not chain or chain[-1] != ids[-1]:
                chain.append(ids[-1])  # re-saving unchanged content makes no new version
            n += 1
        heads.append(chain)
    for t in h["tags"]:
        repo.tag(f"tag{t}", ids[t])
    for c in h["deleted"]:
        repo.delete_name(f"name{c}")
    objects = sorted(set(ids) | set(blob_of))
    young = {oid for i, oid in enumerate(objects) if i in h["young"]}
    now = time.time()
    for oid in objects:
        when = now if oid in young else OLD
        os.utime(repo.store.path(oid), (when, when))

    # The model, as the docs state the rules.
    links: dict[str, list[tuple[str, str]]] = {}
    for oid in ids:
        links[oid] = [(lk.rel.value, lk.id) for lk in repo.load(oid).links]
    retention = h["keep_last"] is not None
    manifests, whole = set(), set()

    def spread(roots: set[str]) -> None:
        fresh = roots - manifests
        manifests.update(fresh)
        whole.update(fresh)
        changed = True
        while changed:
            changed = False
            for m in list(manifests):
                for rel, target in links[m]:
                    if target not in links:
                        continue  # a blob
                    if target not in manifests:
                        manifests.add(target)
                        changed = True
                    keeps = m in whole and not (retention and rel == "previous")
                    if keeps and target not in whole:
                        whole.add(target)
                        changed = True

    roots = {ids[t] for t in h["tags"]}
    for c, chain in enumerate(heads):
        if c not in h["deleted"]:
            newest_first = chain[::-1]
            roots.update(newest_first[:h["keep_last"]] if retention else newest_first[:1])
    spread(roots)
    spread({oid for oid in young if oid in links} - manifests)
    if h["reflog"] == "never":
        spread(set(ids) - manifests)  # every version was the target of some ref log entry
    kept_blobs = {target for m in whole for rel, target in links[m] if target not in links}
    expected = manifests | kept_blobs | young

    report = collect_garbage(repo, expire=datetime.now(UTC) - timedelta(days=1),
                             reflog_expire=h["reflog"], keep_last=h["keep_last"])
    assert set(repo.store.ids()) == expected
    thin_with_data_gone = {m for m in manifests - whole
                           if any(t not in links and t not in expected for _, t in links[m])}
    assert set(report.pruned) == thin_with_data_gone
    assert check(repo).ok


def test_keep_last_counts_versions_not_saves(repo: Repository) -> None:
    """Saving unchanged content makes no new version, so it does not use up a place
    that keep_last keeps: four saves of two contents are two versions, both kept."""
    def save(data: bytes, name: str, n: int) -> str:
        blob = repo.store.put_bytes(data).id
        return repo.save(FileArtifact(content=blob, size=len(data), message=f"version {n}"),
                         name=name)

    blob0 = repo.store.put_bytes(b"blob 0").id
    blob1 = repo.store.put_bytes(b"blob 1").id
    saved = [save(b"blob 0", name, n)
             for n, name in enumerate(["name0"] * 2 + ["name1"] * 4 + ["name2"] * 2)]
    saved += [save(b"blob 1", "name2", n) for n in (8, 9)]
    first0, first1, first2 = saved[0], saved[2], saved[6]
    assert set(saved) == {first0, first1, first2, saved[8]}
    assert [v.id for v in repo.history("name2")] == [saved[8], first2]
    repo.delete_name("name0")
    repo.delete_name("name1")
    age_all(repo)

    report = collect_garbage(repo, expire=datetime.now(UTC) - timedelta(days=1),
                             reflog_expire="now", keep_last=2)
    assert {i.id for i in report.removed} == {first0, first1}
    assert set(repo.store.ids()) == {saved[8], first2, blob1, blob0}
    assert report.pruned == []
    assert check(repo).ok
    thinned = collect_garbage(repo, expire="now", reflog_expire="now", keep_last=1)
    assert {i.id for i in thinned.removed} == {blob0}  # keep_last 1 lets first2's data go
    assert thinned.pruned == [first2]


def test_ref_log_damage_and_gc(repo: Repository, project: Path) -> None:
    add_bytes(repo, project, "kept", name="t")
    with open(repo.refs.log_path, "a") as log:  # parses, but its id is malformed
        log.write('{"ref": "names/t", "old": null, "new": "abc", "time": "2026-01-01T00:00:00Z", '
                  '"user": "u", "message": null}\n')
    collect_garbage(repo, expire="now")  # ignored here (fsck reports it)
    gone = add_bytes(repo, project, "only the ref log keeps it", name="gone")
    repo.delete_name("gone")
    with open(repo.refs.log_path, "a") as log:  # the ids a damaged line spells stay roots
        log.write(f'{{not json, but "{gone}"\n')
    report = collect_garbage(repo, expire="now")
    assert report.warnings == ["ref log line 5 is corrupt (not valid JSON): skipped, but the "
                               "ids in it are kept (run 'casrepo fsck --repair' to set it aside)"]
    assert repo.store.exists(gone)
    report = collect_garbage(repo, expire="now", reflog_expire="now")  # unless none are wanted
    assert report.warnings == [] and not repo.store.exists(gone)


def test_deleting_a_ref_waits_for_gc(repo: Repository, project: Path, lock_holder: Any) -> None:
    """gc reads the refs and the ref log as one picture: a delete may not land between."""
    add_bytes(repo, project, "x", name="t")
    holder = lock_holder(repo.dir / "locks" / "gc.lock")
    repo.writer_timeout = 0.2
    with pytest.raises(Busy, match="gc is running"):
        repo.delete_name("t")
    assert repo.refs.read(RefKind.NAME, "t") is not None
    holder.kill()
    holder.wait()
    repo.delete_name("t")
    assert repo.refs.read(RefKind.NAME, "t") is None


def test_reachable_counts_what_is_there_after_pruning(repo: Repository, project: Path) -> None:
    for i in range(3):
        add_bytes(repo, project, f"v{i}", name="m")
    age_all(repo)
    collect_garbage(repo, expire="now", keep_last=1)
    report = collect_garbage(repo, expire="now")
    assert report.reachable == len(list(repo.store.ids()))


def test_writer_lock_is_per_thread(repo: Repository) -> None:
    """Two threads writing through one Repository each hold the writers' lock: one
    leaving must not release the other's."""
    import threading

    inside, leave = threading.Event(), threading.Event()

    def long_writer() -> None:
        with repo.writing():
            inside.set()
            assert leave.wait(30)

    thread = threading.Thread(target=long_writer)
    try:
        with repo.writing():  # this thread first; the other comes in while it writes
            thread.start()
            assert inside.wait(30)
        with pytest.raises(Busy):  # this thread left: the other still holds the lock
            collect_garbage(Repository.open(repo.dir), expire="now", wait=0.2)
    finally:
        leave.set()
        thread.join(30)
    collect_garbage(Repository.open(repo.dir), expire="now", wait=5)
