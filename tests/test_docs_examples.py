"""The runnable examples in docs/ keep working."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_csv_kinds_example_runs() -> None:
    proc = subprocess.run([sys.executable, str(ROOT / "docs" / "examples" / "csv_kinds.py")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "CSVDataset" in proc.stdout and "TSVDataset" in proc.stdout
    assert "Traceback" not in proc.stderr


def test_readme_starts_with_the_two_commands() -> None:
    text = (ROOT / "README.md").read_text()
    blocks = text.split("```")
    first = blocks[1]
    assert "pip install -e . && casrepo --repo .casrepo-example lineage models/churn" in first
    assert "pip install -e '.[test]' && pytest" in first
    ci = (ROOT / ".ci" / "run").read_text()
    assert "pip install -e '.[test]' && pytest" in ci


# -- docs/quickstart.md: every command run, every output as shown ----------------------------

_HEX = re.compile(r"(?<![0-9A-Za-z_])[0-9a-f]{7,64}(?![0-9A-Za-z_])")
_TIME = re.compile(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(\.\d+Z)?")
_LS_DATE = re.compile(r"[A-Z][a-z]{2} [ \d]\d \d\d:\d\d")


def _normal(line: str) -> str:
    """Ids, times and `ls` dates differ from run to run; "total N" with the filesystem."""
    line = re.sub(r"\bn[0-9a-f]{16}\b", "n<id>", line)  # a Mermaid node
    line = _LS_DATE.sub("<date>", _TIME.sub("<time>", _HEX.sub("<id>", line)))
    return re.sub(r"^total \d+$", "total <n>", line)


def _matches(shown: list[str], printed: list[str]) -> bool:
    """``printed`` as ``shown``, where a line "..." in ``shown`` stands for any lines."""
    if not shown:
        return not printed
    if shown[0].strip() == "...":
        return any(_matches(shown[1:], printed[i:]) for i in range(len(printed) + 1))
    return bool(printed) and _normal(shown[0]) == _normal(printed[0]) and _matches(shown[1:],
                                                                                   printed[1:])


def _quickstart_commands() -> list[tuple[str, list[str]]]:
    """(command, the output shown) for each `$` line of the walk-through's console blocks."""
    text = (ROOT / "docs" / "quickstart.md").read_text(encoding="utf-8")
    text = text[text.index("## Create a repository"):]
    steps: list[tuple[str, list[str]]] = []
    for block in re.findall(r"```console\n(.*?)```", text, re.S):
        for line in block.splitlines():
            if line.startswith("$ "):
                steps.append((line[2:], []))
            else:
                steps[-1][1].append(line)
    return steps


def test_quickstart_output_is_real(tmp_path: Path) -> None:
    """The walk-through, run for real in a scratch directory, prints what it shows."""
    home = tmp_path / "home" / "you"
    project = home / "project"
    project.mkdir(parents=True)
    # The files the walk-through has before it starts (it shows iris.csv, and the
    # sizes of the others).
    (project / "iris.csv").write_text("sepal_length,sepal_width,petal_length,petal_width,species\n"
                                      "5.1,3.5,1.4,0.2,setosa\n4.9,3.0,1.4,0.2,setosa\n"
                                      "6.3,3.3,6.0,2.5,virginica\n")
    (project / "model").mkdir()
    (project / "model" / "params.yaml").write_text("lr: 0.1\nepochs: 20\nn: 1\n")
    (project / "model" / "predict.sh").write_text("#!/bin/sh\necho setosa\n12\n")
    (project / "model" / "predict.sh").chmod(0o755)
    (project / "model" / "weights.json").write_text('{"w": [0.4, 1.2, -0.7]}\n')
    (project / "report.json").write_text('{"accuracy": 0.93}\n')
    env = {**os.environ, "HOME": str(home), "CASREPO_USER": "you",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop("CASREPO_DIR", None)
    status = 0
    for command, shown in _quickstart_commands():
        if command == "cd ~/project":
            continue
        if command == "echo $?":
            printed = [str(status)]
        else:
            proc = subprocess.run(["bash", "-c", command], cwd=project, env=env, text=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)
            status = proc.returncode
            printed = proc.stdout.replace(str(home), "/home/you").splitlines()
        if "--format mermaid" in command or command.startswith("casrepo gc"):
            # Listed in the order of their ids, which differ from run to run.
            shown, printed = sorted(shown, key=_normal), sorted(printed, key=_normal)
        assert _matches(shown, printed), (command, shown, printed)
