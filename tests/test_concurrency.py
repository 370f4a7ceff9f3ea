"""Real processes racing on one repository: names, adds and gc."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

from casrepo import Repository
from casrepo.fsck import check

WORKER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from casrepo import Repository, CasrepoError

    project, worker, count, name = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
    churn = len(sys.argv) > 5  # delete names and re-add bytes others stored long ago
    repo = Repository.open(project / ".casrepo")
    src = project / f"src-{worker}"
    src.mkdir(exist_ok=True)
    for i in range(count):
        f = src / f"{i}.txt"
        text = f"common item {i % 7}\\n" if churn and i % 3 == 0 else f"worker {worker} item {i}\\n"
        f.write_text(text * 50)
        target = f
        if churn and i % 10 == 5:  # now and then a directory
            target = src / f"dir{i}"
            (target / "sub").mkdir(parents=True)
            for j in range(5):
                (target / "sub" / f"{j}.txt").write_text(f"common file {j}\\n")
            (target / "own.txt").write_text(f"worker {worker} dir {i}\\n")
        ref = name.format(worker=worker, i=i)
        try:
            result = repo.add(target, name=ref)
        except CasrepoError as e:
            print(f"FAIL {type(e).__name__} {e}", flush=True)
            continue
        if churn and i % 3 == 0 and i % 2 == 0:
            repo.delete_name(ref)  # unreachable now: gc may take it, and a later add its bytes
            print(f"DELETED {result.id}", flush=True)
            continue
        print(f"OK {result.id}", flush=True)
""")

GC_LOOP = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from casrepo import Repository
    from casrepo.gc import collect_garbage

    repo = Repository.open(Path(sys.argv[1]) / ".casrepo")
    deadline = time.monotonic() + float(sys.argv[2])
    runs = 0
    while time.monotonic() < deadline:
        collect_garbage(repo, expire="now", reflog_expire="now", wait=30)
        runs += 1
    print(f"GC {runs}", flush=True)
""")


def _spawn(script: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", script, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_concurrent_adds_to_one_name_lose_nothing(repo: Repository, project: Path) -> None:
    workers = [_spawn(WORKER, str(project), str(w), "15", "shared") for w in range(4)]
    ids = []
    for proc in workers:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        for line in out.splitlines():
            assert line.startswith("OK "), line
            ids.append(line.split()[1])
    assert len(ids) == 60
    history = [v.id for v in repo.history("shared")]
    assert sorted(history) == sorted(ids)  # every version is in the one linear history
    assert check(repo).ok


def test_gc_running_during_adds_never_eats_them(repo: Repository, project: Path) -> None:
    gc = _spawn(GC_LOOP, str(project), "12")
    workers = [_spawn(WORKER, str(project), str(w), str(ADDS_PER_WORKER), "w{worker}/item{i}",
                      "churn") for w in range(3)]
    ids, deleted = [], 0
    for proc in workers:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        for line in out.splitlines():
            assert not line.startswith("FAIL"), line  # e.g. a shard directory gc removed
            if line.startswith("OK "):
                ids.append(line.split()[1])
            deleted += line.startswith("DELETED ")
    out, err = gc.communicate(timeout=300)
    assert gc.returncode == 0, err  # gc never crashed
    assert int(out.split()[1]) >= 3
    assert len(ids) + deleted == 3 * ADDS_PER_WORKER and deleted > 0
    for oid in ids:  # every add that succeeded and kept its name is whole
        for link in repo.load(oid).links:
            if link.target.value == "blob":
                assert repo.store.compute_id(link.id) == link.id
    assert check(repo).ok


ADDS_PER_WORKER = 120


def test_add_reusing_an_old_blob_while_gc_waits(repo: Repository, project: Path,
                                                run_process: Any) -> None:
    """git's freshen race: an old unreachable blob, an add that finds it (and so does
    not write it) paused right after that check, and gc in between. gc must not
    take the blob: it waits for the writer (exit 75 when it gives up), and the
    add's check made the blob young again."""
    src = project / "data.txt"
    src.write_text("bytes stored long ago\n" * 100)
    old = repo.add(src, name="old")
    blob = old.manifest.content  # type: ignore[attr-defined]
    repo.delete_name("old")
    stale = time.time() - 60 * 86400
    for info in repo.store.scan():
        os.utime(info.path, (stale, stale))

    writer = Repository.open(repo.dir)
    checked, resume = threading.Event(), threading.Event()
    trusted = writer.store.reuse

    def paused(oid: str, size: int) -> Any:
        found = trusted(oid, size)
        if oid == blob:
            checked.set()
            assert resume.wait(60)
        return found

    writer.store.reuse = paused  # type: ignore[method-assign]
    result: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: result.update(add=writer.add(src, name="new")))
    thread.start()
    try:
        assert checked.wait(60)
        assert writer.store.path(blob).stat().st_mtime > time.time() - 60  # freshened
        gc = run_process("gc", "--prune-expire", "now", "--reflog-expire", "now", "--wait", "1")
        assert gc.exit_code == 75, gc.stderr
        assert gc.stderr.startswith("casrepo: error: the repository is busy: writers are running")
        assert repo.store.exists(blob)
    finally:
        resume.set()
        thread.join(60)
    assert result["add"].manifest.content == blob
    gc = run_process("gc", "--prune-expire", "now", "--reflog-expire", "now", "--json")
    assert gc.exit_code == 0, gc.stderr
    assert repo.store.compute_id(blob) == blob
    assert check(repo).ok


def test_cli_adds_racing_for_one_name(project: Path, run_process: Any) -> None:
    """Several `casrepo add` processes move one name at once: each exits 0 and its
    version is in the history, or exits 5; nothing is lost silently."""
    assert run_process("init").exit_code == 0
    for i in range(6):
        (project / f"v{i}.txt").write_text(f"version {i}\n")
    procs = [subprocess.Popen([sys.executable, "-m", "casrepo", "add", f"v{i}.txt", "--name",
                               "shared", "--json"], cwd=project, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(6)]
    added = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode in (0, 5), err
        if proc.returncode == 0:
            added.append(json.loads(out)["id"])
    log = run_process("log", "shared", "--json")
    assert log.exit_code == 0
    history = [entry["id"] for entry in log.json()["versions"]]
    assert sorted(history) == sorted(added) and len(added) >= 1
