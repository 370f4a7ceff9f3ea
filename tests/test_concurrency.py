"""Real processes racing on one repository: names, adds and gc."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from casrepo import Repository
from casrepo.fsck import check

WORKER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from casrepo import Repository, CasrepoError

    project, worker, count, name = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
    repo = Repository.open(project / ".casrepo")
    src = project / f"src-{worker}"
    src.mkdir(exist_ok=True)
    for i in range(count):
        f = src / f"{i}.txt"
        f.write_text(f"worker {worker} item {i}\\n" * 50)
        try:
            result = repo.add(f, name=name.format(worker=worker, i=i))
        except CasrepoError as e:
            print(f"FAIL {type(e).__name__} {e}", flush=True)
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
        collect_garbage(repo, expire="now", wait=30)
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
    gc = _spawn(GC_LOOP, str(project), "6")
    workers = [_spawn(WORKER, str(project), str(w), "25", "w{worker}/item{i}") for w in range(2)]
    ids = []
    for proc in workers:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        ids += [line.split()[1] for line in out.splitlines() if line.startswith("OK ")]
    out, err = gc.communicate(timeout=120)
    assert gc.returncode == 0, err
    assert int(out.split()[1]) >= 1
    assert len(ids) == 50
    for oid in ids:
        manifest = repo.load(oid)
        assert repo.store.compute_id(manifest.content) == manifest.content  # type: ignore[union-attr]
    assert check(repo).ok
