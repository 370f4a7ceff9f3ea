"""A remote for the tests: where it lives, and how to reach it behind casrepo's back
(to corrupt, delete or forge what it holds)."""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Callable, Collection, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cli_support import corrupt
from conftest import S3_SERVERS, S3Server

from casrepo.pruned import PrunedEntry
from casrepo.refs import RefKind
from casrepo.remote import Remote, RemoteConfig, RemoteObject, RemoteRef, Sink, open_remote


@dataclass
class Spot:
    """Where a test's remote lives, and how to reach behind casrepo's back."""

    kind: str
    url: str
    options: list[str] = field(default_factory=list)
    server: S3Server | None = None
    bucket: str = ""

    def settings(self) -> RemoteConfig:
        endpoint = self.server.endpoint if self.server else None
        locking = "lock-object" if self.kind == "s3-lock" else "conditional"
        return RemoteConfig(url=self.url, endpoint_url=endpoint, locking=locking)

    def open(self) -> Remote:
        return open_remote("spot", self.settings())

    def _key(self, rel: str) -> str:
        return f"team/{rel}"

    def _object_key(self, oid: str) -> str:
        return self._key(f"objects/{oid[:2]}/{oid[2:]}")

    def corrupt(self, oid: str) -> None:
        if self.server is None:
            corrupt(Path(self.url) / "objects" / oid[:2] / oid[2:])
            return
        client = self.server.client()
        data = bytearray(client.get_object(Bucket=self.bucket, Key=self._object_key(oid))["Body"].read())
        data[len(data) // 2] ^= 1
        client.put_object(Bucket=self.bucket, Key=self._object_key(oid), Body=bytes(data))

    def delete(self, oid: str) -> None:
        self.open().delete([oid])

    def object_ids(self) -> set[str]:
        return {o.id for o in self.open().objects()}

    def write(self, rel: str, data: bytes) -> None:
        """Put ``data`` at ``rel`` of the remote's layout (config.yaml, refs/names/x...)."""
        if self.server is None:
            path = Path(self.url) / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.exists():
                os.chmod(path, 0o644)
            path.write_bytes(data)
            return
        self.server.client().put_object(Bucket=self.bucket, Key=self._key(rel), Body=data)

    def set_ref(self, kind: str, name: str, oid: str) -> None:
        self.write(f"refs/{kind}/{name}", f"{oid}\n".encode())

    def add_pruned_record(self, manifests: list[str]) -> None:
        record = json.dumps({"manifests": sorted(manifests), "rules": {"keep_last": 1},
                             "time": "2026-01-01T00:00:00Z"}, sort_keys=True)
        if self.server is None:
            with open(Path(self.url) / "logs" / "pruned.jsonl", "a") as f:
                f.write(record + "\n")
            return
        body = record.encode()
        self.write(f"pruned/{hashlib.sha256(body).hexdigest()}.json", body)

    def delete_object(self, oid: str) -> None:
        rel = f"objects/{oid[:2]}/{oid[2:]}"
        if self.server is None:
            (Path(self.url) / rel).unlink()
            return
        self.server.client().delete_object(Bucket=self.bucket, Key=self._key(rel))


def spot_params(*kinds: str) -> list[str]:
    """Fixture params for remotes of ``kinds`` ("fs", "s3", "s3-lock"): each S3 kind
    once per S3 server ("s3-moto", "s3-ceph", ...), "fs" once."""
    return [kind if kind == "fs" else f"{kind}-{server}" for kind in kinds
            for server in (("",) if kind == "fs" else S3_SERVERS)]


def make_spot(request: pytest.FixtureRequest, tmp_path: Path, param: str) -> Spot:
    """The remote of a spot_params parameter ("fs", "s3-ceph"...; a bare "s3" is moto)."""
    if param == "fs":
        (tmp_path / "shared").mkdir()  # the mounted drive; the remote is made inside it
        return Spot("fs", str(tmp_path / "shared" / "artifacts"))
    kind, _, which = param.rpartition("-")
    if which not in S3_SERVERS:
        kind, which = param, "moto"
    server: S3Server = request.getfixturevalue(f"{which}_server")
    request.getfixturevalue("aws_env")
    bucket = f"casrepo-{uuid.uuid4().hex[:16]}"
    server.client().create_bucket(Bucket=bucket)
    options = ["--endpoint-url", server.endpoint]
    if kind == "s3-lock":
        options += ["--locking", "lock-object"]
    return Spot(kind, f"s3://{bucket}/team", options, server, bucket)


class CountingRemote(Remote):
    """A remote that counts what casrepo asks of it, at the Remote interface: one
    call per method, and how many objects each asked about or sent. Works alike for
    every backend (a request log on the server side may lag)."""

    def __init__(self, inner: Remote) -> None:
        super().__init__(inner.name, inner.url)
        self.inner = inner
        self.calls: dict[str, int] = {}
        self.asked: list[str] = []
        """Ids passed to present()."""
        self.sent: list[str] = []
        """Ids passed to upload_many()."""
        self.downloaded: list[str] = []

    def _count(self, method: str) -> None:
        self.calls[method] = self.calls.get(method, 0) + 1

    @property
    def total(self) -> int:
        return sum(self.calls.values())

    def reset(self) -> None:
        self.calls.clear()
        self.asked.clear()
        self.sent.clear()
        self.downloaded.clear()

    def exists(self) -> bool:
        self._count("exists")
        return self.inner.exists()

    def create(self) -> None:
        self._count("create")
        self.inner.create()

    def present(self, ids: Collection[str]) -> dict[str, float]:
        self._count("present")
        self.asked.extend(ids)
        return self.inner.present(ids)

    def objects(self) -> Iterator[RemoteObject]:
        self._count("objects")
        return self.inner.objects()

    def download(self, oid: str, sink: Sink) -> None:
        self._count("download")
        self.downloaded.append(oid)
        self.inner.download(oid, sink)

    def freshen(self, oid: str) -> None:
        self._count("freshen")
        self.inner.freshen(oid)

    def delete(self, ids: Collection[str]) -> None:
        self._count("delete")
        self.inner.delete(ids)

    def pruned(self) -> dict[str, PrunedEntry]:
        self._count("pruned")
        return self.inner.pruned()

    def record_pruned(self, entries: dict[str, PrunedEntry]) -> None:
        self._count("record_pruned")
        self.inner.record_pruned(entries)

    def refs(self) -> list[RemoteRef]:
        self._count("refs")
        return self.inner.refs()

    def ref_names(self) -> set[tuple[RefKind, str]]:
        self._count("ref_names")
        return self.inner.ref_names()

    def ref(self, kind: RefKind, name: str) -> RemoteRef | None:
        self._count("ref")
        return self.inner.ref(kind, name)

    def set_ref(self, kind: RefKind, name: str, new: str, expected: RemoteRef | None,
                message: str | None = None) -> None:
        self._count("set_ref")
        self.inner.set_ref(kind, name, new, expected, message)

    def delete_ref(self, kind: RefKind, name: str, expected: RemoteRef,
                   message: str | None = None) -> None:
        self._count("delete_ref")
        self.inner.delete_ref(kind, name, expected, message)

    def upload_many(self, items: list[tuple[str, Path, int]],
                    done: Callable[[str, int], None] | None = None) -> None:
        self._count("upload_many")
        self.sent.extend(oid for oid, _, _ in items)
        self.inner.upload_many(items, done)

    def writing(self) -> AbstractContextManager[None]:
        return self.inner.writing()

    def updating_refs(self) -> AbstractContextManager[None]:
        return self.inner.updating_refs()

    def collecting(self, timeout: float) -> AbstractContextManager[None]:
        return self.inner.collecting(timeout)

    def close(self) -> None:
        self.inner.close()
