"""Commands killed by SIGKILL at random points leave a consistent repository.

Each round starts a real `casrepo` process (add of a file or a directory,
tag, name or gc) and kills it, either after a random delay or the moment it
takes a ref lock. The repository is then checked as the contract promises:
fsck finds no errors (temp files and ref locks left behind are warnings, and
each one is reported), every name and tag resolves to bytes that were added
under it, refs the victim did not touch did not move, the source is
untouched, and a killed add completes when it is run again.

A failure prints the seed and what was killed when; the schedule, contents
and delays repeat with the same seed (CASREPO_CRASH_SEED overrides it), the
exact moment a process dies does not.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cli_support import assert_ok, describe, digest, last_id, write

SEED = int(os.environ.get("CASREPO_CRASH_SEED", "20240611"))

# Victims per kind of command: 32 rounds take about 35 s on 2 cores.
KILLS = {"add-file": 10, "add-dir": 8, "tag": 5, "name": 4, "gc": 5}
SOAK_KILLS = {op: count * 12 for op, count in KILLS.items()}

FILE_SIZES = (4 << 20, 8 << 20)
DIR_SMALL_FILES = (50, 200)
DIR_SMALL_SIZE = (0, 8 << 10)
DIR_BIG_SIZE = (1 << 20, 2 << 20)
MAX_VERSIONS = 4
"""A name with this many versions is deleted before its next add, so gc keeps the store small."""

FILE_NAMES = ("data/file-a", "data/file-b")
TREE_NAME = "data/tree"
TAGS = ("v-a", "v-b", "release")
ALIASES = ("alias/one", "alias/two")
REF_LOCK_SHARE = 0.3
"""Share of add, tag and name victims killed just after they take a ref lock rather than on a timer."""
GC_LOCK_SHARE = 0.5
"""Share of gc victims killed during their mark and sweep (seen in /proc/locks) rather than on a timer."""
PROC_LOCKS = Path("/proc/locks")


def casrepo_argv(repo_dir: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "casrepo", "--repo", str(repo_dir), *args]


def child_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("CASREPO_DIR", "CASREPO_DEBUG")}


def holds_exclusive_flock(pid: int) -> bool:
    """True while ``pid`` holds an exclusive flock: gc holds one on locks/gc.lock to mark and sweep."""
    with PROC_LOCKS.open() as f:
        for line in f:
            parts = line.split()  # "1: FLOCK  ADVISORY  WRITE 4242 00:2d:123 0 EOF" (waiters: "1: -> FLOCK")
            if parts[1:2] == ["FLOCK"] and parts[3:5] == ["WRITE", str(pid)]:
                return True
    return False


@dataclass(frozen=True)
class Victim:
    op: str
    args: tuple[str, ...]
    target: str
    """The ref it may move, as 'names/N' or 'tags/T'."""
    source: Path | None = None
    new_id: str | None = None
    """For tag and name: the id the target may move to (an add makes a new id)."""


@dataclass
class Outcome:
    how: str
    """'killed' or 'exit N' when it finished before the kill."""
    after: float
    stderr: str


@dataclass
class CrashLoop:
    project: Path
    run: Any
    """The in-process CLI runner (conftest's ``run``), for checks."""
    run_process: Any
    """A real `casrepo` process in the project (conftest's ``run_process``)."""
    rng: random.Random
    log: list[str] = field(default_factory=list)
    refs: dict[str, str] = field(default_factory=dict)
    """What every ref points at, as last verified: 'names/N' or 'tags/T' -> id."""
    digests: dict[str, str] = field(default_factory=dict)
    """Manifest id -> digest of the bytes `get` wrote for it."""
    durations: dict[str, float] = field(default_factory=dict)
    startup: float = 0.0
    stats: Counter[str] = field(default_factory=Counter)

    @property
    def repo_dir(self) -> Path:
        return self.project / ".casrepo"

    def note(self, line: str) -> None:
        self.log.append(line)
        print(line, flush=True)

    def cli(self, *args: str) -> Any:
        """A check, run in-process: an interpreter start per check would dominate the run time."""
        return self.run(*args)

    # -- sources -------------------------------------------------------------------

    def new_file(self, path: Path) -> None:
        write(path, self.rng.randbytes(self.rng.randint(*FILE_SIZES)))

    def new_tree(self, root: Path) -> None:
        """Rewrite the big files and some small ones, so each add stores new objects."""
        rng = self.rng
        if not root.exists():
            for i in range(rng.randint(*DIR_SMALL_FILES)):
                write(root / f"part-{i // 40}" / f"f{i:03}.bin",
                      rng.randbytes(rng.randint(*DIR_SMALL_SIZE)), executable=i % 17 == 0)
        small = sorted(p for p in root.rglob("f*.bin"))
        for path in rng.sample(small, k=max(1, len(small) // 10)):
            write(path, rng.randbytes(rng.randint(*DIR_SMALL_SIZE)))
        for big in ("big-1.bin", "big-2.bin"):
            write(root / big, rng.randbytes(rng.randint(*DIR_BIG_SIZE)))

    # -- running victims -------------------------------------------------------------

    def timed(self, *args: str) -> float:
        """Run a command to completion and return how long it took."""
        start = time.monotonic()
        proc = subprocess.run(casrepo_argv(self.repo_dir, *args), cwd=self.project,
                              capture_output=True, text=True, env=child_env(), timeout=120)
        elapsed = time.monotonic() - start
        assert proc.returncode == 0, f"{' '.join(args)}: exit {proc.returncode}\n{proc.stderr}"
        return elapsed

    def ref_locks(self) -> set[tuple[str, int]]:
        return {(e.name, e.inode()) for e in os.scandir(self.repo_dir / "locks")
                if e.name.startswith("ref-")}

    def kill_at_random(self, victim: Victim) -> Outcome:
        rng = self.rng
        duration = self.durations[victim.op]
        gc = victim.op == "gc"
        watch = rng.random() < (GC_LOCK_SHARE if gc and PROC_LOCKS.exists() else REF_LOCK_SHARE)
        # Interpreter start-up is most of a run: aim most kills past it, where the work is.
        low = 0.0 if rng.random() < 0.3 else self.startup
        delay = rng.uniform(low, duration * 1.05)
        extra = rng.uniform(0.0, 0.05 if gc else 0.002)  # a sweep lasts longer than a ref update
        seen = self.ref_locks()
        start = time.monotonic()
        proc = subprocess.Popen(casrepo_argv(self.repo_dir, *victim.args), cwd=self.project,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=child_env())
        started: Callable[[], bool] = ((lambda: holds_exclusive_flock(proc.pid)) if gc
                                       else (lambda: bool(self.ref_locks() - seen)))
        try:
            if watch:
                trigger = f"on {'gc' if gc else 'ref'} lock +{extra * 1000:.1f}ms"
                deadline = start + duration * 3 + 5
                while proc.poll() is None and time.monotonic() < deadline:
                    if started():
                        time.sleep(extra)
                        break
            else:
                trigger = f"after {delay:.3f}s"
                time.sleep(delay)
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
            _, stderr = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        after = time.monotonic() - start
        how = "killed" if proc.returncode == -signal.SIGKILL else f"exit {proc.returncode}"
        self.note(f"  {victim.op} {' '.join(victim.args)}: {trigger} (full run ~{duration:.3f}s)"
                  f" -> {how} at {after:.3f}s")
        return Outcome(how, after, stderr)

    # -- checks ------------------------------------------------------------------------

    def footprint(self) -> tuple[int, set[tuple[str, int]]]:
        """How many objects are stored, and the files in tmp/ and locks/ (with inodes)."""
        objects = sum(len(files) for _, _, files in os.walk(self.repo_dir / "objects"))
        files = {(f"{d}/{e.name}", e.inode()) for d in ("tmp", "locks")
                 for e in os.scandir(self.repo_dir / d)}
        return objects, files

    def phase(self, victim: Victim, before: dict[str, str],
              footprint: tuple[int, set[tuple[str, int]]]) -> str:
        """Where the victim died, judged by what it left (for the record, not the verdict)."""
        objects, files = self.footprint()
        new = {name for name, _ in files - footprint[1]}
        if victim.op == "gc":
            return "while sweeping" if objects < footprint[0] else "before sweeping"
        lock = any(n.startswith("locks/ref-") for n in new)
        moved_to = self.current_refs().get(victim.target)
        if moved_to != before.get(victim.target):
            reflog = json.loads(assert_ok(self.cli("log", "--json", "-n", "1")).stdout)["reflog"]
            logged = bool(reflog) and reflog[0]["ref"] == victim.target and reflog[0]["new"] == moved_to
            return ("after moving its ref" + ("" if logged else " and before logging it")
                    + (", lock still held" if lock else ""))
        if lock:
            return "holding its ref lock"
        if objects > footprint[0] or any(n.startswith("tmp/obj-") for n in new):
            return "while storing objects"
        return "before storing anything"

    def current_refs(self) -> dict[str, str]:
        result = assert_ok(self.cli("refs", "--json"))
        data = json.loads(result.stdout)
        found = {f"names/{r['name']}": r["id"] for r in data["names"]}
        found.update({f"tags/{r['name']}": r["id"] for r in data["tags"]})
        return found

    def fetched(self, rev: str, oid: str) -> str:
        """Digest of what `get REV` writes; `show REV` must work too."""
        shown = assert_ok(self.cli("show", rev, "--json"))
        assert json.loads(shown.stdout)["id"] == oid, describe(shown)
        dest = self.project / "out"
        assert_ok(self.cli("get", rev, str(dest)))
        value = digest(dest)
        if dest.is_dir():
            shutil.rmtree(dest)
        else:
            dest.unlink()
        return value

    def fsck_clean(self) -> None:
        """fsck exits 0, reports only warnings, and reports every leftover in tmp/ and locks/."""
        leftovers = {f"tmp/{p.name}" for p in (self.repo_dir / "tmp").iterdir()}
        # writers.lock is permanent (only ever flocked); a ref lock or gc.lock file is
        # left only by a killed holder, and fsck must report it.
        locks = {p.name for p in (self.repo_dir / "locks").iterdir()} - {"writers.lock"}
        strange = {n for n in locks if n != "gc.lock" and not (n.startswith("ref-") and n.endswith(".lock"))}
        assert not strange, f"unexpected files in locks/: {sorted(strange)}"
        leftovers |= {f"locks/{n}" for n in locks}
        result = self.cli("fsck", "--json")
        assert result.exit_code == 0, describe(result)
        report = json.loads(result.stdout)
        assert report["ok"] is True, describe(result)
        warned = set()
        for problem in report["problems"]:
            assert problem["level"] == "warning", describe(result)
            subject = problem["subject"]
            # A kill between the ref log line and the rename leaves a logged move that
            # did not happen: the ref still holds its old value, and fsck says so.
            interrupted = (subject.startswith(("name ", "tag "))
                           and "update was interrupted" in problem["message"])
            assert subject.startswith(("tmp/", "locks/")) or subject == "manifest index" \
                or interrupted, describe(result)
            if interrupted:
                self.stats["fsck: interrupted ref update"] += 1
            warned.add(subject)
            if subject == "manifest index":
                self.stats["fsck: manifest index rebuilt"] += 1
        assert leftovers <= warned, f"left by a killed process, not reported: {sorted(leftovers - warned)}"

    def verify(self, victim: Victim | None, before: dict[str, str],
               source_digest: str | None) -> None:
        self.fsck_clean()
        now = self.current_refs()
        target = victim.target if victim else None
        assert set(now) - {target} == set(before) - {target}, \
            f"refs appeared or vanished: before {sorted(before)}, now {sorted(now)}"
        for ref, oid in before.items():
            if ref != target:
                assert now[ref] == oid, f"{ref} moved from {oid} to {now[ref]}, but nothing moved it"
        if victim is not None and target in now and now[target] != before.get(target):
            if victim.new_id is not None:
                assert now[target] == victim.new_id, f"{target} moved to {now[target]}, not {victim.new_id}"
            else:  # an add: its manifest is a new version on top of the former one
                assert source_digest is not None
                versions = json.loads(self.cli("log", target.partition("/")[2], "--json",
                                               "-n", "1").stdout)["versions"]
                assert versions[0]["id"] == now[target]
                assert versions[0]["previous"] == before.get(target)
                self.digests[now[target]] = source_digest
        if victim is not None and target not in now and target in before:
            raise AssertionError(f"{victim.op} deleted {target}")
        for ref, oid in sorted(now.items()):
            kind, _, name = ref.partition("/")
            got = self.fetched(name, oid)
            if oid in self.digests:
                assert got == self.digests[oid], f"{ref} ({oid}) gives other bytes than were added"
            self.digests[oid] = got
            if kind == "names":
                assert_ok(self.cli("log", name, "--json"))  # its history is whole
        if target in now:  # the manifest index, a cache, keeps up with what the victim did
            assert_ok(self.cli("lineage", target.partition("/")[2], "--both", "--include-history"))
        self.refs = now

    # -- rounds ------------------------------------------------------------------------

    def victim(self, number: int, op: str) -> Victim:
        rng = self.rng
        names = sorted(r for r in self.refs if r.startswith("names/data/"))
        if op == "add-file":
            name = rng.choice(FILE_NAMES)
            rel = f"src/{name.rsplit('/', 1)[1]}.bin"
            self.new_file(self.project / rel)
            return Victim(op, ("add", rel, "--name", name, "-m", f"round {number}"),
                          f"names/{name}", self.project / rel)
        if op == "add-dir":
            self.new_tree(self.project / "src" / "tree")
            return Victim(op, ("add", "src/tree", "--name", TREE_NAME, "-m", f"round {number}"),
                          f"names/{TREE_NAME}", self.project / "src" / "tree")
        if op == "tag":
            ref, tag = rng.choice(names), rng.choice(TAGS)
            return Victim(op, ("tag", "--force", tag, ref.partition("/")[2], "-m", "crash test"),
                          f"tags/{tag}", new_id=self.refs[ref])
        if op == "name":
            ref, alias = rng.choice(names), rng.choice(ALIASES)
            return Victim(op, ("name", alias, ref.partition("/")[2]), f"names/{alias}",
                          new_id=self.refs[ref])
        assert op == "gc"
        return Victim(op, ("gc", "--prune-expire", "now", "--wait", "10"), "")

    def rotate(self, victim: Victim) -> None:
        """Delete a name with a long history, so gc can reclaim its old versions."""
        if not victim.op.startswith("add-") or victim.target not in self.refs:
            return
        name = victim.target.partition("/")[2]
        versions = json.loads(self.cli("log", name, "--json").stdout)["versions"]
        if len(versions) >= MAX_VERSIONS:
            assert_ok(self.cli("name", "-d", name))
            del self.refs[victim.target]
            self.note(f"  (deleted {name} after {len(versions)} versions)")

    def setup(self) -> None:
        """Make every ref a victim can need, timing each command twice (the faster run counts:
        a slow outlier would push the kills past the end)."""
        src = self.project / "src"
        self.startup = min(self.timed("--version") for _ in range(2))
        file_runs = []
        for name in FILE_NAMES:
            rel = f"src/{name.rsplit('/', 1)[1]}.bin"
            write(self.project / rel, self.rng.randbytes(max(FILE_SIZES)))
            file_runs.append(self.timed("add", rel, "--name", name))
        dir_runs = []
        for _ in range(2):
            self.new_tree(src / "tree")
            dir_runs.append(self.timed("add", "src/tree", "--name", TREE_NAME))
        self.durations = {
            "add-file": min(file_runs),
            "add-dir": min(dir_runs),
            "tag": min(self.timed("tag", tag, name) for tag, name in zip(TAGS, FILE_NAMES, strict=False)),
            "name": min(self.timed("name", alias, TREE_NAME) for alias in ALIASES),
            "gc": min(self.timed("gc", "--prune-expire", "now") for _ in range(2)),
        }
        self.note(f"timings: start-up {self.startup:.3f}s, "
                  + ", ".join(f"{op} {t:.3f}s" for op, t in self.durations.items()))
        self.refs = self.current_refs()
        for name in FILE_NAMES:  # tags and aliases point at these too
            self.digests[self.refs[f"names/{name}"]] = digest(src / f"{name.rsplit('/', 1)[1]}.bin")
        self.digests[self.refs[f"names/{TREE_NAME}"]] = digest(src / "tree")
        self.verify(None, dict(self.refs), None)

    def one_round(self, number: int, op: str) -> None:
        victim = self.victim(number, op)
        self.rotate(victim)
        before = dict(self.refs)
        source_digest = digest(victim.source) if victim.source else None
        footprint = self.footprint()
        self.note(f"round {number}: {op}")
        outcome = self.kill_at_random(victim)
        if outcome.how != "killed":
            assert outcome.how == "exit 0", f"{op} failed on its own: {outcome.how}\n{outcome.stderr}"
        if victim.source is not None:
            assert digest(victim.source) == source_digest, f"{op} changed its source {victim.source}"
        phase = self.phase(victim, before, footprint) if outcome.how == "killed" else "completed"
        self.stats[f"{op}: {phase}"] += 1
        self.note(f"  -> {phase}")
        self.verify(victim, before, source_digest)
        if victim.op == "gc":  # the next gc finishes the job, which also keeps the store small
            assert_ok(self.cli("gc", "--prune-expire", "now", "--quiet"))
        if victim.source is not None:
            # The same add, run to completion, makes the name give back exactly the source.
            result = self.run_process("add", *victim.args[1:])
            oid = last_id(result)
            assert self.current_refs()[victim.target] == oid
            assert self.fetched(oid, oid) == source_digest, f"{victim.target} does not give back its source"
            self.digests[oid] = source_digest
            self.refs[victim.target] = oid


def crash_loop(project: Path, run: Any, run_process: Any, kills: dict[str, int], seed: int) -> None:
    rng = random.Random(seed)
    loop = CrashLoop(project, run, run_process, rng)
    loop.note(f"seed {seed} (set CASREPO_CRASH_SEED={seed} to repeat this schedule)")
    schedule = [op for op, count in kills.items() for _ in range(count)]
    rng.shuffle(schedule)
    try:
        loop.setup()
        for number, op in enumerate(schedule, 1):
            loop.one_round(number, op)
    except AssertionError as e:
        raise AssertionError(f"{e}\n--- seed {seed}; what was killed when:\n" + "\n".join(loop.log)) from None
    loop.note("outcomes: " + ", ".join(f"{k}: {v}" for k, v in sorted(loop.stats.items())))
    killed = len(schedule) - sum(v for k, v in loop.stats.items() if k.endswith(": completed"))
    # Delays start at 0 and most stay below the measured run time: few victims may escape.
    assert killed >= len(schedule) // 4, f"only {killed} of {len(schedule)} victims were killed"


def test_killed_commands_leave_a_consistent_repository(repo: Any, project: Path, run: Any,
                                                        run_process: Any) -> None:
    crash_loop(project, run, run_process, KILLS, SEED)


@pytest.mark.soak
def test_killed_commands_soak(repo: Any, project: Path, run: Any, run_process: Any) -> None:
    crash_loop(project, run, run_process, SOAK_KILLS, SEED + 1)
