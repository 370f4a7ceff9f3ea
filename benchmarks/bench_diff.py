"""diff at scale: ``casrepo diff A B`` of two versions of a 10,000-file directory.

Builds, through casrepo's API in a fresh temp directory, a directory of
``--files`` small files in subdirectories of 100 and adds it (tagged ``v1``);
then changes 10 files, renames 5 and adds 5, and adds it again under the same
name (``data``, whose previous version is ``v1``). Prints medians of repeated
runs in this one process:

- ``diff v1 data`` through the library (``Repository.open`` + ``diff`` +
  ``close``) and as a whole ``casrepo diff`` process (text, and ``--json``),
  start-up included, output to /dev/null;
- the floors measured in the same run: reading and parsing the two directory
  manifests (``json.loads`` of the two objects, found by their ids), the same
  then compared in plain Python dicts, and ``casrepo --version``.

Before timing, the script checks that the library and the plain-Python
comparison give the same changes: 10 modified, 5 renamed, 5 added.

    python benchmarks/bench_diff.py                     # 10,000 files, 9 runs
    python benchmarks/bench_diff.py --files 2000 --runs 3   # a quick look
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bytecode import compile_casrepo
from timing import cli_time, median_time, print_table

from casrepo.repository import Repository

MODIFIED, RENAMED, ADDED = 10, 5, 5


def rel(i: int) -> str:
    return f"d{i // 100:03d}/f{i:05d}.txt"


def build(project: Path, files: int) -> tuple[Path, set[tuple[str, str]]]:
    """The repository, and the changes diff must find as (status, path)."""
    repo = Repository.init(project)
    data = project / "data"
    for i in range(files):
        path = data / rel(i)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(f"row {i}\n".encode() * (1 + i % 50))
    repo.add(data, name="data", message="v1")
    repo.tag("v1", "data")
    expected: set[tuple[str, str]] = set()
    step = files // (MODIFIED + RENAMED)  # spread the changes over the tree
    for n in range(MODIFIED):
        path = data / rel(n * step)
        path.write_bytes(path.read_bytes() + b"changed\n")
        expected.add(("modified", rel(n * step)))
    for n in range(MODIFIED, MODIFIED + RENAMED):
        old = rel(n * step)
        new = old.replace(".txt", ".renamed.txt")
        (data / old).rename(data / new)
        expected.add(("renamed", new))
    for n in range(ADDED):
        new = f"new/added{n}.txt"
        (data / new).parent.mkdir(exist_ok=True)
        (data / new).write_bytes(f"new file {n}\n".encode())
        expected.add(("added", new))
    repo.add(data, name="data", message="v2")
    repo.close()
    return project / ".casrepo", expected


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=9)
    args = parser.parse_args()
    if args.files < 100 * (MODIFIED + RENAMED):
        parser.error(f"--files must be at least {100 * (MODIFIED + RENAMED)}")
    compile_casrepo()

    with tempfile.TemporaryDirectory(prefix="casrepo-bench-diff-") as tmp:
        print(f"building two versions of {args.files:,} files ...", file=sys.stderr)
        repo_dir, expected = build(Path(tmp), args.files)
        repo = Repository.open(repo_dir)
        ids = repo.resolve("v1"), repo.resolve("data")
        paths = [str(repo.store.path(oid)) for oid in ids]
        repo.close()

        def library() -> set[tuple[str, str]]:
            repo = Repository.open(repo_dir)
            result = repo.diff("v1", "data")
            repo.close()
            return {(c.status, c.path) for c in result.files}

        def read_both() -> list[Any]:
            documents = []
            for path in paths:
                with open(path, "rb") as f:
                    documents.append(json.loads(f.read()))
            return documents

        def compare_in_python() -> set[tuple[str, str]]:
            # Each side: path -> (blob id, executable); a removed and an added file
            # with the same bytes are one file renamed (as diff pairs them).
            old, new = (
                {e["path"]: (e["content"]["@link"], e["executable"])
                 for e in document["entries"]}
                for document in read_both())
            gone = {blob for path, (blob, _) in old.items() if path not in new}
            changes = set()
            for path, (blob, executable) in new.items():
                if path not in old:
                    changes.add(("renamed" if blob in gone else "added", path))
                elif old[path] != (blob, executable):
                    changes.add(("modified", path))
            return changes

        # The same answer both ways, or the figures mean nothing.
        assert library() == expected, "diff disagrees with the changes made"
        assert compare_in_python() == expected, "the floor disagrees with the changes made"
        manifest_bytes = sum(Path(p).stat().st_size for p in paths)

        lib = median_time(library, args.runs)
        cli = cli_time(repo_dir, ["diff", "v1", "data"], args.runs)
        cli_json = cli_time(repo_dir, ["diff", "v1", "data", "--json"], args.runs)
        floor = median_time(read_both, args.runs)
        python = median_time(compare_in_python, args.runs)
        version = cli_time(repo_dir, ["--version"], args.runs)

    rows = [
        ("diff v1 data, library", lib, floor, ""),
        ("diff v1 data, CLI process", cli, floor, ""),
        ("diff v1 data --json, CLI process", cli_json, floor, ""),
        ("floor: read and parse both manifests", floor, floor,
         f"{manifest_bytes / 2**20:.1f} MiB of JSON"),
        ("floor + compare them in Python", python, floor, ""),
        ("casrepo --version, CLI process", version, None, "start-up"),
    ]
    print(f"\n{args.files:,} files; {MODIFIED} modified, {RENAMED} renamed, {ADDED} added; "
          f"medians of {args.runs} runs\n")
    print_table(rows, "ratio")


if __name__ == "__main__":
    main()
