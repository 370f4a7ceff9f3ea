"""Build the example repository shipped in ``.casrepo-example/``.

The example tells a small churn-model story, every file generated here:

1. ``datasets/raw``    a raw CSV export of customers (January), tagged ``raw-2026-01``
2. ``datasets/clean``  the cleaned training rows as TSV, derived from the raw export
3. ``models/churn``    a baseline logistic regression trained on the January rows
4. ``datasets/raw``    the February export (more customers): a second version
5. ``datasets/clean``  cleaned again from the February export
6. ``datasets/test``   the held-out customers of the February export
7. ``models/churn``    retrained on the February rows, tagged ``v1``
8. ``reports/churn-eval``  a Markdown evaluation of the model on the test set

The build is deterministic: the data comes from a hash-based generator, the
clock is pinned with ``SOURCE_DATE_EPOCH`` (one minute per step from
2026-01-01T00:00:00Z) and the ref log's user with ``CASREPO_USER``, so
running it twice gives byte-identical trees.

Usage::

    python docs/examples/build_example.py [--out PATH]

``--out`` is the ``.casrepo`` directory to write (default: ``.casrepo-example``
at the top of the project); a previous one there is replaced.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from casrepo import Repository

PROJECT_TOP = Path(__file__).resolve().parents[2]
DEFAULT_OUT = PROJECT_TOP / ".casrepo-example"

START_EPOCH = 1767225600  # 2026-01-01T00:00:00Z
STEP_SECONDS = 60
USER = "casrepo-example"

COLUMNS = ("customer_id", "tenure_months", "monthly_charges", "support_calls",
           "contract", "churned")
CONTRACTS = ("month-to-month", "one-year", "two-year")
FEATURES = ("tenure_months", "monthly_charges", "support_calls",
            "contract=month-to-month", "contract=one-year")


# -- deterministic data ------------------------------------------------------------


def _unit(*key: object) -> float:
    """A stable pseudo-random number in [0, 1) for ``key`` (same on every platform)."""
    text = ":".join(str(k) for k in key).encode("utf-8")
    return int.from_bytes(hashlib.sha256(text).digest()[:8], "big") / 2.0**64


def _customer(number: int) -> dict[str, str]:
    """One customer row as the CRM exports it (numbers as text, contract as typed)."""
    cid = f"C{number:04d}"
    tenure = 1 + int(_unit(cid, "tenure") * 60)
    charges = 20 + _unit(cid, "charges") * 90
    calls = int(_unit(cid, "calls") ** 2 * 7)
    contract = CONTRACTS[int(_unit(cid, "contract") * 3)]
    score = (1.0 - 0.07 * tenure + 0.03 * (charges - 60) + 0.45 * calls
             + {"month-to-month": 1.0, "one-year": -0.3, "two-year": -1.2}[contract]
             + (_unit(cid, "noise") - 0.5) * 3.0)
    # The export is messy: contract spelled as typed, a few charges missing.
    spelled = {"month-to-month": ("Month-to-month", "month-to-month", "MONTH-TO-MONTH "),
               "one-year": ("One year", "one-year", "1 year"),
               "two-year": ("Two year", "two-year", "2 year")}[contract]
    written = spelled[int(_unit(cid, "spelling") * 3)]
    missing = _unit(cid, "missing") < 0.06
    return {
        "customer_id": cid,
        "tenure_months": str(tenure),
        "monthly_charges": "" if missing else f"{charges:.2f}",
        "support_calls": str(calls),
        "contract": written,
        "churned": "1" if score > 0 else "0",
    }


def raw_rows(count: int) -> list[dict[str, str]]:
    rows = [_customer(n) for n in range(1, count + 1)]
    # The export repeats a customer now and then; cleaning drops the duplicate.
    rows.insert(count // 2, dict(rows[3]))
    return rows


def write_csv(path: Path, rows: list[dict[str, str]], delimiter: str) -> None:
    lines = [delimiter.join(COLUMNS)]
    lines += [delimiter.join(row[c] for c in COLUMNS) for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8", newline="\n")


def read_table(path: Path, delimiter: str) -> list[dict[str, str]]:
    header, *lines = path.read_text(encoding="utf-8").splitlines()
    names = header.split(delimiter)
    return [dict(zip(names, line.split(delimiter), strict=True)) for line in lines]


def _normal_contract(text: str) -> str:
    key = text.strip().lower().replace(" ", "-")
    return {"1-year": "one-year", "2-year": "two-year"}.get(key, key)


def is_held_out(customer_id: str) -> bool:
    """A fixed quarter of customers is kept for testing, whatever the export."""
    return _unit(customer_id, "split") < 0.25


def clean(rows: list[dict[str, str]]) -> tuple[list[dict[str, str]], dict[str, int]]:
    """Normalise contracts, drop incomplete and duplicate rows. Returns rows and counts."""
    seen: set[str] = set()
    kept = []
    dropped = {"duplicates": 0, "incomplete": 0}
    for row in rows:
        if row["customer_id"] in seen:
            dropped["duplicates"] += 1
            continue
        seen.add(row["customer_id"])
        if any(not row[c].strip() for c in COLUMNS):
            dropped["incomplete"] += 1
            continue
        fixed = dict(row, contract=_normal_contract(row["contract"]))
        if fixed["contract"] not in CONTRACTS:
            raise ValueError(f"unknown contract {row['contract']!r}")
        kept.append(fixed)
    kept.sort(key=lambda r: r["customer_id"])
    return kept, dropped


# -- a small logistic regression in pure Python -----------------------------------------


def _raw_features(row: dict[str, str]) -> list[float]:
    return [float(row["tenure_months"]), float(row["monthly_charges"]),
            float(row["support_calls"]),
            1.0 if row["contract"] == "month-to-month" else 0.0,
            1.0 if row["contract"] == "one-year" else 0.0]


def _sigmoid(z: float) -> float:
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


def train(rows: list[dict[str, str]], epochs: int = 1500, rate: float = 0.2,
          l2: float = 0.01) -> dict[str, object]:
    """Batch gradient descent on standardised features; the result is JSON-ready."""
    raw = [_raw_features(r) for r in rows]
    labels = [float(r["churned"]) for r in rows]
    n, k = len(raw), len(FEATURES)
    means = [sum(x[j] for x in raw) / n for j in range(k)]
    stds = [math.sqrt(sum((x[j] - means[j]) ** 2 for x in raw) / n) or 1.0 for j in range(k)]
    xs = [[(x[j] - means[j]) / stds[j] for j in range(k)] for x in raw]
    weights = [0.0] * k
    bias = 0.0
    for _ in range(epochs):
        grad_w = [0.0] * k
        grad_b = 0.0
        for x, y in zip(xs, labels, strict=True):
            err = _sigmoid(bias + sum(w * v for w, v in zip(weights, x, strict=True))) - y
            grad_b += err
            for j in range(k):
                grad_w[j] += err * x[j]
        bias -= rate * grad_b / n
        weights = [w - rate * (g / n + l2 * w) for w, g in zip(weights, grad_w, strict=True)]
    return {
        "model": "logistic-regression",
        "target": "churned",
        "features": list(FEATURES),
        "standardize": {"mean": [round(m, 4) for m in means],
                        "std": [round(s, 4) for s in stds]},
        "weights": [round(w, 4) for w in weights],
        "bias": round(bias, 4),
        "training": {"rows": n, "epochs": epochs, "learning_rate": rate, "l2": l2},
    }


def predict(model: dict[str, object], row: dict[str, str]) -> float:
    scale = model["standardize"]
    assert isinstance(scale, dict)
    weights = model["weights"]
    assert isinstance(weights, list)
    z = float(model["bias"])  # type: ignore[arg-type]
    for w, v, m, s in zip(weights, _raw_features(row), scale["mean"], scale["std"], strict=True):
        z += w * (v - m) / s
    return _sigmoid(z)


def auc(scores: list[float], labels: list[int]) -> float:
    """Area under the ROC curve (Mann-Whitney, ties count half)."""
    pos = [s for s, y in zip(scores, labels, strict=True) if y == 1]
    neg = [s for s, y in zip(scores, labels, strict=True) if y == 0]
    if not pos or not neg:
        raise ValueError("the test set needs both classes")
    wins = sum(1.0 if p > q else 0.5 if p == q else 0.0 for p in pos for q in neg)
    return wins / (len(pos) * len(neg))


def evaluate(model: dict[str, object], rows: list[dict[str, str]]) -> dict[str, float | int]:
    scores = [predict(model, r) for r in rows]
    labels = [int(r["churned"]) for r in rows]
    predicted = [1 if s >= 0.5 else 0 for s in scores]
    tp = sum(1 for p, y in zip(predicted, labels, strict=True) if p == 1 and y == 1)
    fp = sum(1 for p, y in zip(predicted, labels, strict=True) if p == 1 and y == 0)
    fn = sum(1 for p, y in zip(predicted, labels, strict=True) if p == 0 and y == 1)
    tn = len(rows) - tp - fp - fn
    eps = 1e-12
    loss = -sum(y * math.log(max(s, eps)) + (1 - y) * math.log(max(1 - s, eps))
                for s, y in zip(scores, labels, strict=True)) / len(rows)
    return {"rows": len(rows), "positives": sum(labels), "auc": round(auc(scores, labels), 4),
            "accuracy": round((tp + tn) / len(rows), 4), "log_loss": round(loss, 4),
            "tp": tp, "fp": fp, "fn": fn, "tn": tn}


def report_markdown(metrics: dict[str, float | int], model_rev: str, test_rev: str) -> str:
    return "\n".join([
        "# Churn model evaluation",
        "",
        f"Model `{model_rev}` scored on the held-out customers of `{test_rev}`.",
        "",
        "| metric | value |",
        "|---|---|",
        f"| test rows | {metrics['rows']} |",
        f"| churned | {metrics['positives']} |",
        f"| AUC | {metrics['auc']:.4f} |",
        f"| accuracy (threshold 0.5) | {metrics['accuracy']:.4f} |",
        f"| log loss | {metrics['log_loss']:.4f} |",
        "",
        "Confusion matrix (rows: actual, columns: predicted):",
        "",
        "| | churn | stay |",
        "|---|---|---|",
        f"| churn | {metrics['tp']} | {metrics['fn']} |",
        f"| stay | {metrics['fp']} | {metrics['tn']} |",
        "",
    ])


# -- building the repository --------------------------------------------------------------


@contextmanager
def pinned_environment() -> Iterator[None]:
    """Pin CASREPO_USER and SOURCE_DATE_EPOCH while building; restore them afterwards."""
    saved = {k: os.environ.get(k) for k in ("CASREPO_USER", "SOURCE_DATE_EPOCH")}
    os.environ["CASREPO_USER"] = USER
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


class Clock:
    """Advances SOURCE_DATE_EPOCH by one step per call, so every change has its own time."""

    def __init__(self) -> None:
        self.step = 0

    def tick(self) -> None:
        os.environ["SOURCE_DATE_EPOCH"] = str(START_EPOCH + self.step * STEP_SECONDS)
        self.step += 1


def populate(repo: Repository, work: Path) -> None:
    """Add every artifact and tag of the example, in story order."""
    clock = Clock()

    def add(path: Path, name: str, message: str, inputs: tuple[str, ...] = (),
            **meta: str) -> str:
        clock.tick()
        return repo.add(path, name=name, inputs=inputs, meta=meta, message=message).id

    def tag(tag_name: str, rev: str, message: str) -> None:
        clock.tick()
        repo.tag(tag_name, rev, message=message)

    def clean_and_split(raw_path: Path, raw_id: str, month: str) -> str:
        rows, dropped = clean(read_table(raw_path, ","))
        train_rows = [r for r in rows if not is_held_out(r["customer_id"])]
        clean_path = work / "customers-clean.tsv"
        write_csv(clean_path, train_rows, "\t")
        return add(clean_path, "datasets/clean",
                   f"Clean the {month} export: normalise contracts, drop duplicates and "
                   "rows without charges, hold out test customers",
                   (raw_id,), rows=str(len(train_rows)), delimiter="tab",
                   dropped_duplicates=str(dropped["duplicates"]),
                   dropped_incomplete=str(dropped["incomplete"]),
                   held_out=str(len(rows) - len(train_rows)))

    def fit(clean_id: str, note: str) -> tuple[str, dict[str, object]]:
        rows = read_table(work / "customers-clean.tsv", "\t")
        model = train(rows)
        model_path = work / "churn-model.json"
        model_path.write_text(json.dumps(model, indent=2, sort_keys=True) + "\n",
                              encoding="utf-8", newline="\n")
        oid = add(model_path, "models/churn", note, (clean_id,),
                  algorithm="logistic-regression", features=str(len(FEATURES)),
                  train_rows=str(len(rows)))
        return oid, model

    # January: the first export, its cleaned rows and a baseline model.
    raw_path = work / "customers.csv"
    write_csv(raw_path, raw_rows(40), ",")
    raw_jan = add(raw_path, "datasets/raw", "January customer export from the CRM",
                  rows=str(len(read_table(raw_path, ","))), delimiter="comma",
                  source="crm-export", period="2026-01")
    tag("raw-2026-01", raw_jan, "Raw export used for the baseline model")
    clean_jan = clean_and_split(raw_path, raw_jan, "January")
    fit(clean_jan, "Baseline churn model trained on the January rows")

    # February: more customers; clean again, hold out a test set, retrain, evaluate.
    write_csv(raw_path, raw_rows(64), ",")
    raw_feb = add(raw_path, "datasets/raw", "February customer export: 24 new customers",
                  rows=str(len(read_table(raw_path, ","))), delimiter="comma",
                  source="crm-export", period="2026-02")
    clean_feb = clean_and_split(raw_path, raw_feb, "February")

    all_rows, _ = clean(read_table(raw_path, ","))
    test_rows = [r for r in all_rows if is_held_out(r["customer_id"])]
    test_path = work / "customers-test.tsv"
    write_csv(test_path, test_rows, "\t")
    test_id = add(test_path, "datasets/test",
                  "Held-out customers of the February export for evaluation", (raw_feb,),
                  rows=str(len(test_rows)), delimiter="tab",
                  positives=str(sum(int(r["churned"]) for r in test_rows)))

    model_id, model = fit(clean_feb, "Churn model retrained on the January and February rows")

    metrics = evaluate(model, test_rows)
    report_path = work / "churn-eval.md"
    report_path.write_text(report_markdown(metrics, f"models/churn@{model_id[:12]}",
                                           f"datasets/test@{test_id[:12]}"),
                           encoding="utf-8", newline="\n")
    add(report_path, "reports/churn-eval", "Evaluate the churn model on the held-out test set",
        (model_id, test_id), auc=f"{metrics['auc']:.4f}",
        accuracy=f"{metrics['accuracy']:.4f}", log_loss=f"{metrics['log_loss']:.4f}",
        test_rows=str(metrics["rows"]))
    tag("v1", model_id, "First released churn model")


def _tidy(casrepo_dir: Path) -> None:
    """Drop what the library recreates on demand: an empty tmp/, lock files and the
    stat cache."""
    tmp = casrepo_dir / "tmp"
    if tmp.is_dir():
        leftovers = sorted(p.name for p in tmp.iterdir())
        if leftovers:
            raise RuntimeError(f"unexpected temp files after the build: {leftovers}")
        tmp.rmdir()
    locks = casrepo_dir / "locks"
    if locks.is_dir():
        for path in sorted(locks.iterdir()):
            if not (path.is_file() and path.name.endswith(".lock")):
                raise RuntimeError(f"unexpected file in locks/: {path.name}")
            path.unlink()
        locks.rmdir()
    for cache in casrepo_dir.glob("stat-cache.sqlite*"):
        cache.unlink()  # add's stat cache: paths of this build's temp dir, of no use elsewhere
    expected = {"config.yaml", "objects", "refs", "logs"}
    extra = sorted(p.name for p in casrepo_dir.iterdir() if p.name not in expected)
    if extra:
        raise RuntimeError(f"unexpected entries in the built repository: {extra}")


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def build(out: Path) -> Path:
    """Build the example repository at ``out`` (a ``.casrepo`` directory), replacing it."""
    out = Path(out).absolute()
    out.parent.mkdir(parents=True, exist_ok=True)
    # Build beside the output, so the final move is a rename on one filesystem.
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-build-", dir=out.parent))
    try:
        project = staging / "project"
        work = staging / "work"
        project.mkdir()
        work.mkdir()
        with pinned_environment():
            repo = Repository.init(project)
            populate(repo, work)
        built = project / ".casrepo"
        _tidy(built)
        os.chmod(built, 0o777 & ~_umask())  # init stages it in a private temp dir
        if os.path.lexists(out):
            old = staging / "previous"
            os.rename(out, old)
        os.rename(built, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help="the .casrepo directory to write (default: %(default)s)")
    args = parser.parse_args(argv)
    out = build(args.out)
    print(f"built example repository in {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
