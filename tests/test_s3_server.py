"""What real S3 servers differ in, run against each (moto and Ceph RGW 16): the
ETag form If-Match matches, 412 or 404 for a ref deleted meanwhile, which upload
checksums are checked, and a team's whole push / pull --rebase flow."""

from __future__ import annotations

import base64
import hashlib
import io
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import botocore.session
import pytest
from cli_support import assert_error, assert_ok, last_id, sha256, write
from conftest import CliRun, S3Server

from casrepo.errors import RefChanged
from casrepo.refs import RefKind
from casrepo.remote import RemoteConfig, open_remote
from casrepo.repository import Repository


def _bucket(server: S3Server) -> str:
    bucket = f"casrepo-{uuid.uuid4().hex[:16]}"
    server.client().create_bucket(Bucket=bucket)
    return bucket


@pytest.fixture
def url(s3_server: S3Server, aws_env: None) -> str:
    """A fresh bucket on the server of this run, and the remote URL in it."""
    return f"s3://{_bucket(s3_server)}/team"


def _hook_clients(monkeypatch: pytest.MonkeyPatch, event: str, handler: Callable[..., None]) -> None:
    """Register ``handler`` first for ``event`` on every S3 client made from now on
    (casrepo's own included): it runs before the request is signed."""
    create = botocore.session.Session.create_client

    def hooked(self: Any, *args: Any, **kwargs: Any) -> Any:
        client = create(self, *args, **kwargs)
        client.meta.events.register_first(event, handler)
        return client

    monkeypatch.setattr(botocore.session.Session, "create_client", hooked)


def _remote(server: S3Server, url: str) -> Any:
    return open_remote("origin", RemoteConfig(url=url, endpoint_url=server.endpoint))


def test_a_pushed_name_moves_again(run: CliRun, project: Path, repo: Repository, s3_server: S3Server,
                                   url: str) -> None:
    """The regression: Ceph RGW 16 refused every If-Match with the quoted ETag, so
    a second version of a pushed name was 'changed on remote meanwhile' (exit 5)."""
    assert_ok(run("remote", "add", "origin", url, "--endpoint-url", s3_server.endpoint))
    for n in range(3):
        write(project / "d.csv", f"{n}\n".encode())
        for name in ("a", "b"):
            last_id(run("add", "d.csv", "--name", name))
        assert_ok(run("tag", f"v{n}", "a"))
        pushed = assert_ok(run("push", "--json")).json()
        statuses = {r["name"]: r["status"] for r in pushed["refs"]}
        assert statuses == {"a": "created" if n == 0 else "fast-forward",
                            "b": "created" if n == 0 else "fast-forward",
                            **{f"v{i}": "created" if i == n else "up-to-date" for i in range(n + 1)}}
    refs = {(r.kind, r.name): r.id for r in _remote(s3_server, url).refs()}
    assert refs[(RefKind.NAME, "a")] == assert_ok(run("show", "a", "--json")).json()["id"]


def test_one_refused_form_per_push_at_most(run: CliRun, project: Path, repo: Repository,
                                           s3_server: S3Server, url: str,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Once a form of the ETag matched, the push's other refs use it first."""
    assert_ok(run("remote", "add", "origin", url, "--endpoint-url", s3_server.endpoint))
    names = [f"n{i}" for i in range(4)]
    for n in range(2):
        write(project / "d.csv", f"{n}\n".encode())
        for name in names:
            last_id(run("add", "d.csv", "--name", name))
        if n == 0:
            assert_ok(run("push"))
    sent: list[str] = []
    _hook_clients(monkeypatch, "request-created.s3.PutObject",
                  lambda request, **_: sent.append(request.headers.get("If-Match", "")))
    assert_ok(run("push"))
    quoted = [etag.startswith('"') for etag in sent if etag]
    if s3_server.kind == "ceph":  # RGW 16 matches only the bare ETag: one refusal, then bare
        assert quoted == [True] + [False] * len(names), sent
    else:
        assert quoted == [True] * len(names), sent


def test_a_ref_changed_meanwhile_is_never_overwritten(s3_server: S3Server, url: str) -> None:
    """The retry with the bare ETag is a compare-and-swap too."""
    remote = _remote(s3_server, url)
    remote.create()
    a, b, c = ("a" * 64, "b" * 64, "c" * 64)
    remote.set_ref(RefKind.NAME, "x", a, None)
    seen = remote.ref(RefKind.NAME, "x")
    assert seen is not None
    other = _remote(s3_server, url)
    other.set_ref(RefKind.NAME, "x", b, other.ref(RefKind.NAME, "x"))
    with pytest.raises(RefChanged, match="changed on remote"):
        remote.set_ref(RefKind.NAME, "x", c, seen)
    moved = remote.ref(RefKind.NAME, "x")
    assert moved is not None and moved.id == b
    with pytest.raises(RefChanged, match="changed on remote"):
        remote.set_ref(RefKind.NAME, "x", c, None)


def test_a_ref_deleted_meanwhile_is_not_recreated(s3_server: S3Server, url: str) -> None:
    """AWS answers 404 for If-Match on a missing key, RGW 412: both mean 'deleted'."""
    remote = _remote(s3_server, url)
    remote.create()
    remote.set_ref(RefKind.TAG, "v1", "a" * 64, None)
    seen = remote.ref(RefKind.TAG, "v1")
    s3_server.client().delete_object(Bucket=remote.bucket, Key="team/refs/tags/v1")
    with pytest.raises(RefChanged, match="deleted on remote"):
        remote.set_ref(RefKind.TAG, "v1", "b" * 64, seen)
    assert remote.ref(RefKind.TAG, "v1") is None


@pytest.mark.parametrize("dropped", ["If-None-Match", "If-Match"])
def test_a_server_that_ignores_a_condition_is_refused_at_the_first_push(
        run: CliRun, project: Path, repo: Repository, s3_server: S3Server, url: str, dropped: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Drop the header before it is signed: the server then writes unconditionally,
    as one that ignores it would."""
    def drop(request: Any, **_: Any) -> None:
        if dropped in request.headers:
            del request.headers[dropped]

    _hook_clients(monkeypatch, "request-created.s3.PutObject", drop)
    assert_ok(run("remote", "add", "origin", url, "--endpoint-url", s3_server.endpoint))
    write(project / "d.csv", b"1\n")
    last_id(run("add", "d.csv", "--name", "d"))
    assert_error(run("push"), 7, "does not enforce conditional writes", f"ignores {dropped}")
    assert not _remote(s3_server, url).exists(), "the next push must check again"


def _corrupt_uploads(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, str]]:
    """Flip a byte of every object upload after its checksums are computed and
    before it is signed (as a TLS payload is not): what the server then checks
    is all that can catch it. Returns the digest headers of the damaged requests,
    each with the MD5 of the bytes before the damage."""
    damaged: list[dict[str, str]] = []

    def corrupt(request: Any, **_: Any) -> None:
        if "/objects/" not in request.url:
            return
        body = request.data
        data = bytearray(body.read() if hasattr(body, "read") else body)
        if hasattr(body, "seek"):
            body.seek(0)
        headers = {k.lower(): v for k, v in request.headers.items()
                   if k.lower() in ("content-md5", "x-amz-checksum-sha256")}
        headers["md5 of the bytes"] = base64.b64encode(hashlib.md5(data).digest()).decode()
        damaged.append(headers)
        data[len(data) // 2] ^= 1
        request.data = io.BytesIO(bytes(data))

    for operation in ("PutObject", "UploadPart"):
        _hook_clients(monkeypatch, f"request-created.s3.{operation}", corrupt)
    return damaged


@pytest.mark.parametrize("size", [1000, 17 << 20])  # one PUT; a multipart upload
def test_an_upload_damaged_in_flight_is_refused(run: CliRun, project: Path, repo: Repository,
                                               s3_server: S3Server, url: str, size: int,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Ceph RGW 16 ignores x-amz-checksum-sha256 and checks Content-MD5 (AWS checks
    both): a damaged object is refused, and not left there."""
    assert_ok(run("remote", "add", "origin", url, "--endpoint-url", s3_server.endpoint))
    write(project / "d.bin", b"first\n")
    first = last_id(run("add", "d.bin", "--name", "d"))
    assert_ok(run("push"))
    data = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    write(project / "d.bin", data)
    last_id(run("add", "d.bin", "--name", "d"))
    damaged = _corrupt_uploads(monkeypatch)
    result = run("push")
    assert damaged and all(h["content-md5"] == h["md5 of the bytes"] for h in damaged), damaged
    if size < (16 << 20):  # one PUT carries the SHA-256 too
        assert damaged[0]["x-amz-checksum-sha256"] == base64.b64encode(bytes.fromhex(sha256(data))).decode()
    if s3_server.kind == "moto":
        # moto checks neither digest and stores the damaged bytes; what arrives from
        # it is hashed, so a clone still refuses them rather than keep them.
        assert result.exit_code == 0, result.stdout + result.stderr
        clone = run("clone", url, str(project.parent / "check"), "--endpoint-url",
                    s3_server.endpoint, cwd=project.parent)
        assert_error(clone, 6, "arrived corrupt")
        return
    assert result.exit_code == 7, result.stdout + result.stderr
    assert "cannot upload object" in result.stderr and "BadDigest" in result.stderr, result.stderr
    remote = _remote(s3_server, url)
    assert sha256(data) not in {o.id for o in remote.objects()}
    ref = remote.ref(RefKind.NAME, "d")
    assert ref is not None and ref.id == first


def test_a_team_flow_end_to_end(run_process: CliRun, machines: tuple[Path, Path], s3_server: S3Server,
                                url: str, tmp_path: Path) -> None:
    """Two people, real processes: push, a new version, push; the other clone's
    competing push is refused with the documented hint; pull --rebase; push."""
    a, _ = machines
    assert_ok(run_process("remote", "add", "origin", url, "--endpoint-url", s3_server.endpoint, cwd=a))
    write(a / "data.csv", b"id\n1\n")
    assert_ok(run_process("add", "data.csv", "--name", "datasets/x", cwd=a))
    assert_ok(run_process("push", cwd=a))
    write(a / "data.csv", b"id\n1\n2\n")
    assert_ok(run_process("add", "data.csv", "--name", "datasets/x", cwd=a))
    assert_ok(run_process("push", cwd=a))
    b = tmp_path / "second"
    assert_ok(run_process("clone", url, str(b), "--endpoint-url", s3_server.endpoint, cwd=tmp_path))
    write(a / "data.csv", b"id\n1\n2\n3\n")
    assert_ok(run_process("add", "data.csv", "--name", "datasets/x", cwd=a))
    assert_ok(run_process("push", cwd=a))
    write(b / "data.csv", b"id\n1\n2\nB\n")
    mine = last_id(run_process("add", "data.csv", "--name", "datasets/x", cwd=b))
    refused = run_process("push", cwd=b)
    assert refused.exit_code == 5, refused.stderr
    assert "not in the local history; run 'casrepo pull --rebase origin datasets/x'" in refused.stderr
    assert_ok(run_process("pull", "--rebase", cwd=b))
    assert_ok(run_process("push", cwd=b))
    assert_ok(run_process("pull", cwd=a))
    history = assert_ok(run_process("log", "datasets/x", "--json", cwd=a)).json()["versions"]
    assert len(history) == 4
    rebased = assert_ok(run_process("show", "datasets/x", "--json", cwd=a)).json()
    assert rebased["id"] != mine
    assert rebased["manifest"]["content"]["@link"] == sha256(b"id\n1\n2\nB\n")
    assert_ok(run_process("get", "datasets/x", str(tmp_path / "out.csv"), cwd=a))
    assert (tmp_path / "out.csv").read_bytes() == b"id\n1\n2\nB\n"
