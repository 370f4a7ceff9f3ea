"""A remote under an S3 prefix (AWS S3, MinIO, Ceph, R2, or any S3-compatible server).

Keys mirror a repository's layout: ``PREFIX/config.yaml``,
``PREFIX/objects/ab/cdef...`` (the store's shape, read from that
config.yaml), ``PREFIX/refs/names/NAME`` and ``PREFIX/refs/tags/TAG``, each
ref object holding one manifest id.

Refs change by compare-and-swap with S3's conditional writes: a new ref is
written with ``If-None-Match: *``, a moved one with ``If-Match: <ETag read>``;
the server refuses (412) when another machine got there first. A deleted ref
is an empty ref object (a tombstone), written by the same compare-and-swap,
because not every server honours ``If-Match`` on ``DELETE`` (Ceph RGW 16).
Some servers
(Ceph RGW 16) match only the ETag without its quotes: a refused ``If-Match``
is retried unquoted when the ref's ETag is still the one read. The first push
checks that the server enforces both conditions and refuses to use one that
does not (docs/remotes.md).

Objects are hashed on the way up (a corrupt local object is never left on
the remote) and on the way down (see :class:`~casrepo.store.Incoming`).
Every upload carries Content-MD5 besides the SHA-256 checksum: servers that
ignore the latter (Ceph RGW 16) check the former.
Credentials come from boto3's usual chain (environment, profile, instance
role); this module never reads, stores or prints them.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Collection, Iterator
from pathlib import Path
from typing import Any

import boto3
import boto3.exceptions
import botocore.exceptions
from boto3.s3.transfer import TransferConfig
from botocore.config import Config as BotoConfig

import casrepo.remote
from casrepo.config import CONFIG_FILE, Config, RemoteConfig
from casrepo.copying import hash_fd
from casrepo.errors import Busy, CasrepoError, IntegrityError, NotFound, RefChanged, RemoteError, UsageError
from casrepo.ids import is_object_id, ref_name_problem
from casrepo.lockfile import host_tag
from casrepo.pruned import PrunedEntry, add_record, by_run
from casrepo.refs import RefKind
from casrepo.remote import (
    S3_URL_RE,
    Parallel,
    Remote,
    RemoteObject,
    RemoteRef,
    Sink,
    check_record_size,
    corrupt_local,
    remote_config_from,
)
from casrepo.store import BUFFER_SIZE

LARGE_OBJECT = 16 << 20
"""Objects from this size go through boto3's managed (multipart, parallel) transfer."""
WORKERS = 16
"""Concurrent requests for many small objects: S3 latency, not bandwidth, limits them."""
HEAD_LIMIT = 200
"""Up to this many ids are checked with one HEAD each; more with one listing."""
LOCK_SETTLE = 2.0
"""Lock-object mode: how long a claim waits for concurrent claims before reading back."""
LOCK_STALE = 120.0
"""Lock-object mode: a claim older than this (seconds) is a dead holder's."""
LOCK_WAIT = 120.0
LOCK_POLL = 0.5
_TRANSFER = TransferConfig(multipart_threshold=LARGE_OBJECT, multipart_chunksize=LARGE_OBJECT,
                           max_concurrency=8, io_chunksize=BUFFER_SIZE)
_UNREACHABLE = (botocore.exceptions.EndpointConnectionError, botocore.exceptions.ConnectTimeoutError,
                botocore.exceptions.ReadTimeoutError, botocore.exceptions.ConnectionClosedError,
                botocore.exceptions.ProxyConnectionError)
_NO_CREDENTIALS = (botocore.exceptions.NoCredentialsError, botocore.exceptions.PartialCredentialsError,
                   botocore.exceptions.CredentialRetrievalError)
_CHANGED = {"PreconditionFailed", "ConditionalRequestConflict", "412", "409"}
_ABSENT = {"NoSuchKey", "404", "NotFound"}
_TOMBSTONE = b""
"""The body of a deleted ref: no id is empty, and a listing shows it by its size."""
_WRONG_ETAG = '"00000000000000000000000000000000"'
"""An ETag no object has (the MD5 of no content is d41d8cd9...): the probe's wrong guess."""


def _content_md5(params: dict[str, Any], **_: Any) -> None:
    """botocore hook (before-call of PutObject and UploadPart): add Content-MD5.

    Servers that ignore x-amz-checksum-* (Ceph RGW 16) still check Content-MD5,
    so bytes damaged in flight are refused there too. A file-like body (a part
    of a multipart upload) is read once more and put back where it was."""
    headers = params["headers"]
    body = params.get("body")
    if body is None or any(k.lower() == "content-md5" for k in headers):
        return
    if isinstance(body, bytes | bytearray):
        digest = hashlib.md5(body, usedforsecurity=False).digest()
    else:
        start = body.tell()
        md5 = hashlib.md5(usedforsecurity=False)
        for chunk in iter(lambda: body.read(BUFFER_SIZE), b""):
            md5.update(chunk)
        body.seek(start)
        digest = md5.digest()
    headers["Content-MD5"] = base64.b64encode(digest).decode("ascii")


class S3Remote(Remote):
    def __init__(self, name: str, settings: RemoteConfig) -> None:
        super().__init__(name, settings.url)
        match = S3_URL_RE.fullmatch(settings.url)
        if match is None:
            raise UsageError(f"remote {name!r}: invalid S3 URL {settings.url!r}")
        self.bucket = match.group("bucket")
        prefix = (match.group("prefix") or "").strip("/")
        self._prefix = f"{prefix}/" if prefix else ""
        self.endpoint = settings.endpoint_url
        try:
            session = boto3.session.Session(profile_name=settings.profile,
                                            region_name=settings.region)
        except botocore.exceptions.ProfileNotFound:
            raise UsageError(f"remote {name!r}: AWS profile {settings.profile!r} not found") from None
        self._client: Any = session.client(
            "s3", endpoint_url=settings.endpoint_url,
            config=BotoConfig(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=5,
                              read_timeout=60, max_pool_connections=WORKERS * 2))
        for operation in ("PutObject", "UploadPart"):
            self._client.meta.events.register(f"before-call.s3.{operation}", _content_md5)
        self._shape: tuple[int, int] | None = None
        self.locking = settings.locking
        self._lock_depth = 0
        self._counting = threading.Lock()
        self._bare_etag = False
        """If-Match with the ETag unquoted first: set once the quoted form was refused
        for an unchanged ETag and the unquoted one matched (Ceph RGW 16)."""

    # -- keys and errors ---------------------------------------------------------

    def _where(self) -> str:
        return f"remote {self.name!r} ({self.url}{f' at {self.endpoint}' if self.endpoint else ''})"

    @contextlib.contextmanager
    def _call(self, what: str) -> Iterator[None]:
        """One place where botocore's errors become casrepo's (exit 7)."""
        try:
            yield
        except CasrepoError:
            raise
        except botocore.exceptions.ClientError as e:
            error = e.response.get("Error", {})
            code = error.get("Code", "?")
            if code == "NoSuchBucket":
                raise RemoteError(f"{self._where()}: bucket {self.bucket!r} does not exist") from None
            if code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403"):
                raise RemoteError(f"{self._where()}: access denied ({code}) while trying to {what}; "
                                  "check the credentials in the environment or profile") from None
            message = error.get("Message") or ""
            raise RemoteError(f"{self._where()}: cannot {what}: {code}"
                              f"{f': {message}' if message else ''}") from None
        except _NO_CREDENTIALS:
            raise RemoteError(f"{self._where()}: no AWS credentials found; set AWS_ACCESS_KEY_ID and "
                              "AWS_SECRET_ACCESS_KEY, or AWS_PROFILE") from None
        except _UNREACHABLE as e:
            raise RemoteError(f"{self._where()}: cannot reach the server: {type(e).__name__}") from None
        except botocore.exceptions.BotoCoreError as e:
            raise RemoteError(f"{self._where()}: cannot {what}: {e}") from None
        except boto3.exceptions.Boto3Error as e:  # a managed transfer's: it names the S3 error
            found = re.search(r"An error occurred \((\w+)\)", str(e))
            raise RemoteError(f"{self._where()}: cannot {what}: "
                              f"{found.group(1) if found else type(e).__name__}") from None

    @staticmethod
    def _code(error: botocore.exceptions.ClientError) -> str:
        code = str(error.response.get("Error", {}).get("Code", ""))
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return code if code else str(status)

    def _key(self, rel: str) -> str:
        return self._prefix + rel

    def _object_key(self, oid: str) -> str:
        depth, width = self._store_shape()
        cut = depth * width
        parts = [oid[i:i + width] for i in range(0, cut, width)]
        return self._key("/".join(["objects", *parts, oid[cut:]]))

    def _ref_key(self, kind: RefKind, name: str) -> str:
        return self._key(f"refs/{kind.value}/{name}")

    def _store_shape(self) -> tuple[int, int]:
        """The object layout of the remote, from its config.yaml (read once)."""
        if self._shape is None:
            config = self._read_config()
            store = (config or Config()).store
            self._shape = (store.depth, store.width)
        return self._shape

    def _read_config(self) -> Config | None:
        with self._call("read its config.yaml"):
            try:
                body = self._client.get_object(Bucket=self.bucket, Key=self._key(CONFIG_FILE))["Body"]
            except botocore.exceptions.ClientError as e:
                if self._code(e) in _ABSENT:
                    return None
                raise
            data = body.read(casrepo.remote.MAX_REMOTE_CONFIG + 1)  # bounded: the remote's to fill
            body.close()
        return remote_config_from(data, self._where())

    # -- layout ------------------------------------------------------------------

    def exists(self) -> bool:
        config = self._read_config()
        if config is not None:  # what _store_shape would read again
            self._shape = (config.store.depth, config.store.width)
        return config is not None

    def create(self) -> None:
        key = self._key(CONFIG_FILE)
        body = Config().to_yaml().encode("utf-8")
        with self._call("create the remote layout"):
            try:
                made = self._client.put_object(Bucket=self.bucket, Key=key, Body=body, IfNoneMatch="*")
            except botocore.exceptions.ClientError as e:
                if self._code(e) not in _CHANGED:
                    raise
                return  # another machine created it first
            if self.locking == "lock-object":
                return
            # Compare-and-swap of refs depends on the server refusing this second
            # write; one that ignores the condition would let pushes lose versions.
            problem = ("it ignores If-None-Match" if self._accepts(key, body, IfNoneMatch="*")
                       else self._if_match_problem(key, body, made["ETag"]))
            if problem:  # the next push checks again rather than trust the layout
                self._client.delete_object(Bucket=self.bucket, Key=key)
        if problem:
            raise RemoteError(f"{self._where()}: the server does not enforce conditional writes "
                              f"({problem}), "
                              "so concurrent pushes could lose versions; add the remote with "
                              "'--locking lock-object' to serialise ref updates with a lock object")

    def _accepts(self, key: str, body: bytes, **condition: str) -> bool:
        """Put ``body`` at ``key`` under ``condition``: False if the server refused (412)."""
        try:
            self._client.put_object(Bucket=self.bucket, Key=key, Body=body, **condition)
        except botocore.exceptions.ClientError as e:
            if self._code(e) in _CHANGED:
                return False
            raise
        return True

    def _if_match_problem(self, key: str, body: bytes, etag: str) -> str | None:
        """Check If-Match on the just-created ``key`` (rewritten with its own bytes,
        so its ETag stays): a wrong ETag must be refused, quoted and bare, and the
        right one accepted in one of the two forms (remembered for set_ref)."""
        for wrong in (_WRONG_ETAG, _WRONG_ETAG.strip('"')):
            if self._accepts(key, body, IfMatch=wrong):
                return f"it ignores If-Match: {wrong}"
        if self._accepts(key, body, IfMatch=etag):
            return None
        if etag.strip('"') != etag and self._accepts(key, body, IfMatch=etag.strip('"')):
            self._bare_etag = True
            return None
        return "If-Match refuses the object's own ETag, quoted or not"

    # -- objects -----------------------------------------------------------------

    def present(self, ids: Collection[str]) -> dict[str, float]:
        if len(ids) > HEAD_LIMIT:
            wanted = set(ids)
            return {o.id: o.mtime for o in self.objects() if o.id in wanted}

        def head(oid: str) -> tuple[str, float | None]:
            with self._call(f"look up object {oid}"):
                try:
                    response = self._client.head_object(Bucket=self.bucket, Key=self._object_key(oid))
                except botocore.exceptions.ClientError as e:
                    if self._code(e) in _ABSENT:
                        return oid, None
                    raise
            return oid, response["LastModified"].timestamp()

        self._store_shape()  # once, before the threads
        with Parallel(WORKERS, "casrepo-s3") as pool:
            return {oid: mtime for oid, mtime in pool.map(head, list(ids)) if mtime is not None}

    def objects(self) -> Iterator[RemoteObject]:
        depth, width = self._store_shape()
        start = self._key("objects/")
        with self._call("list objects"):
            for page in self._client.get_paginator("list_objects_v2").paginate(
                    Bucket=self.bucket, Prefix=start):
                for item in page.get("Contents", ()):
                    parts = item["Key"][len(start):].split("/")
                    if len(parts) != depth + 1 or any(len(p) != width for p in parts[:-1]):
                        continue
                    oid = "".join(parts)
                    if is_object_id(oid):
                        yield RemoteObject(oid, item["Size"], item["LastModified"].timestamp())

    def _upload(self, oid: str, path: Path, size: int) -> None:
        key = self._object_key(oid)
        with self._call(f"upload object {oid}"), open(path, "rb") as source:
            if size < LARGE_OBJECT:
                data = source.read()
                actual = hashlib.sha256(data).hexdigest()
                if actual != oid:
                    raise corrupt_local(oid, actual)
                # The server checks the bytes it got against the digest as well.
                self._client.put_object(Bucket=self.bucket, Key=key, Body=data,
                                        ChecksumSHA256=base64.b64encode(bytes.fromhex(oid)).decode())
                return
            # Hashed before it goes: a corrupt object uploaded and deleted after
            # would stay under its good id if the push were killed in between.
            actual = hash_fd(source.fileno())[0]
            if actual != oid:
                raise corrupt_local(oid, actual)
            self._client.upload_file(str(path), self.bucket, key, Config=_TRANSFER)

    def upload_many(self, items: list[tuple[str, Path, int]],
                    done: Callable[[str, int], None] | None = None) -> None:
        self._store_shape()

        def counted(item: tuple[str, Path, int]) -> None:
            self._upload(*item)
            if done is not None:
                with self._counting:
                    done(item[0], item[2])

        with Parallel(WORKERS, "casrepo-s3") as pool:
            pool.map(counted, [item for item in items if item[2] < LARGE_OBJECT])
        for item in items:  # large ones one at a time: each is a parallel transfer already
            if item[2] >= LARGE_OBJECT:
                counted(item)

    def download(self, oid: str, sink: Sink) -> None:
        key = self._object_key(oid)
        with self._call(f"download object {oid}"):
            try:
                response = self._client.get_object(Bucket=self.bucket, Key=key)
            except botocore.exceptions.ClientError as e:
                if self._code(e) in _ABSENT:
                    raise NotFound(f"object {oid} is not on remote {self.name!r}") from None
                raise
            body = response["Body"]
            if response["ContentLength"] >= LARGE_OBJECT:
                body.close()  # ranged, parallel GETs; written to the sink in order
                self._client.download_fileobj(self.bucket, key, sink, Config=_TRANSFER)
                return
            for chunk in body.iter_chunks(BUFFER_SIZE):
                sink.write(chunk)

    def freshen(self, oid: str) -> None:
        key = self._object_key(oid)
        with self._call(f"refresh object {oid}"):
            # Copying an object onto itself with new metadata renews its LastModified.
            self._client.copy({"Bucket": self.bucket, "Key": key}, self.bucket, key,
                              ExtraArgs={"MetadataDirective": "REPLACE"}, Config=_TRANSFER)

    def delete(self, ids: Collection[str]) -> None:
        keys = [{"Key": self._object_key(oid)} for oid in sorted(ids)]
        with self._call("delete objects"):
            for start in range(0, len(keys), 1000):
                response = self._client.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": keys[start:start + 1000], "Quiet": True})
                errors = response.get("Errors") or []
                if errors:
                    first = errors[0]
                    raise RemoteError(f"{self._where()}: cannot delete {first.get('Key')}: "
                                      f"{first.get('Code')} ({len(errors)} failed)")

    # -- the record of pruned data ------------------------------------------------

    def pruned(self) -> dict[str, PrunedEntry]:
        """``PREFIX/pruned/*.json``: one object per push that carried pruned manifests."""
        start = self._key("pruned/")
        found: dict[str, PrunedEntry] = {}
        with self._call("read the record of pruned data"):
            keys = [item["Key"] for page in self._client.get_paginator("list_objects_v2").paginate(
                        Bucket=self.bucket, Prefix=start) for item in page.get("Contents", ())]
            for key in sorted(keys):
                stream = self._client.get_object(Bucket=self.bucket, Key=key)["Body"]
                body = stream.read(casrepo.remote.MAX_PRUNED_RECORD + 1)
                stream.close()
                check_record_size(len(body), f"{self._where()}: {key}")
                try:
                    add_record(found, body)
                except ValueError:
                    raise IntegrityError(f"{self._where()}: {key} is corrupt") from None
        return found

    def record_pruned(self, entries: dict[str, PrunedEntry]) -> None:
        with self._call("record pruned data"):
            for time_, rules, manifests in by_run(entries):
                body = json.dumps({"time": time_, "rules": rules, "manifests": manifests},
                                  sort_keys=True).encode()
                key = self._key(f"pruned/{hashlib.sha256(body).hexdigest()}.json")
                self._client.put_object(Bucket=self.bucket, Key=key, Body=body)

    # -- refs --------------------------------------------------------------------

    def ref_names(self) -> set[tuple[RefKind, str]]:
        start = self._key("refs/")
        keys: set[tuple[RefKind, str]] = set()
        with self._call("list refs"):
            for page in self._client.get_paginator("list_objects_v2").paginate(
                    Bucket=self.bucket, Prefix=start):
                for item in page.get("Contents", ()):
                    if item.get("Size") == len(_TOMBSTONE):
                        continue
                    kind_dir, _, name = item["Key"][len(start):].partition("/")
                    kind = {"names": RefKind.NAME, "tags": RefKind.TAG}.get(kind_dir)
                    if kind is not None and ref_name_problem(name) is None:
                        keys.add((kind, name))
        return keys

    def refs(self) -> list[RemoteRef]:
        keys = sorted(self.ref_names())
        with Parallel(WORKERS, "casrepo-s3") as pool:
            found = pool.map(lambda k: self.ref(*k), keys)
        return sorted((r for r in found if r is not None), key=lambda r: (r.kind.value, r.name))

    def ref(self, kind: RefKind, name: str) -> RemoteRef | None:
        found = self._read_ref(kind, name)
        if found is None or found[0] == _TOMBSTONE:
            return None
        text = found[0].decode("ascii", "replace").strip()
        if not is_object_id(text):
            raise IntegrityError(f"{kind.label} {name!r} on remote {self.name!r} is corrupt: "
                                 "it does not hold an id")
        return RemoteRef(kind, name, text, found[1])

    def _read_ref(self, kind: RefKind, name: str) -> tuple[bytes, str] | None:
        """The ref object's first bytes and its ETag, or None if there is no such key."""
        with self._call(f"read {kind.label} {name!r}"):
            try:
                response = self._client.get_object(Bucket=self.bucket, Key=self._ref_key(kind, name))
            except botocore.exceptions.ClientError as e:
                if self._code(e) in _ABSENT:
                    return None
                raise
            return response["Body"].read(4096), str(response["ETag"])

    def set_ref(self, kind: RefKind, name: str, new: str, expected: RemoteRef | None,
                message: str | None = None) -> None:
        if self.locking == "lock-object":
            with self.updating_refs():
                current = self.ref(kind, name)
                if (current.id if current else None) != (expected.id if expected else None):
                    raise RefChanged(f"{kind.label} {name!r} changed on remote {self.name!r} "
                                     "meanwhile")
                with self._call(f"update {kind.label} {name!r}"):
                    self._client.put_object(Bucket=self.bucket, Key=self._ref_key(kind, name),
                                            Body=(new + "\n").encode("ascii"))
            return
        body = (new + "\n").encode("ascii")
        if expected is None:
            with self._call(f"update {kind.label} {name!r}"):
                if self._accepts(self._ref_key(kind, name), body, IfNoneMatch="*"):
                    return
            # A deleted ref's tombstone is "no ref": replaced by compare-and-swap
            # against its ETag, so a writer that got there first still wins.
            found = self._read_ref(kind, name)
            if found is None or found[0] != _TOMBSTONE:
                raise RefChanged(f"{kind.label} {name!r} changed on remote {self.name!r} meanwhile")
            self._swap_ref(kind, name, body, found[1])
            return
        self._swap_ref(kind, name, body, expected.token)

    def _swap_ref(self, kind: RefKind, name: str, body: bytes, etag: str) -> None:
        """Write ``body`` to the ref only if its ETag is still ``etag``.

        The ETag goes in the form AWS returns it (quoted) first, unless this
        remote already showed that it matches only the bare form. A 412 is
        ambiguous on a server that matches one form only: when a HEAD shows the
        ETag unchanged, the other form is tried. That write is conditional too,
        so a change in between is still refused, never overwritten. A ref that
        is gone or a tombstone is "deleted meanwhile" (RGW answers 412 for a
        gone key, AWS 404)."""
        key = self._ref_key(kind, name)
        bare = etag.strip('"')
        forms = [etag] if bare == etag else [bare, etag] if self._bare_etag else [etag, bare]
        changed = f"{kind.label} {name!r} changed on remote {self.name!r} meanwhile"
        deleted = f"{kind.label} {name!r} was deleted on remote {self.name!r} meanwhile"
        with self._call(f"update {kind.label} {name!r}"):
            for form in forms:
                try:
                    if self._accepts(key, body, IfMatch=form):
                        self._bare_etag = form == bare
                        return
                except botocore.exceptions.ClientError as e:
                    if self._code(e) in _ABSENT:
                        raise RefChanged(deleted) from None
                    raise
                current = self._ref_etag(key)
                if current is None:
                    raise RefChanged(deleted)
                if current[0].strip('"') != bare:
                    raise RefChanged(deleted if current[1] == len(_TOMBSTONE) else changed)
        # Both forms refused an ETag that has not changed: the server does not
        # do If-Match; pulling and pushing again would only loop.
        raise RemoteError(f"{self._where()}: the server refuses If-Match with the ETag it returned "
                          f"for {kind.label} {name!r}; add the remote with '--locking lock-object'")

    def _ref_etag(self, key: str) -> tuple[str, int] | None:
        """The ref object's ETag and size, or None if there is no such key."""
        try:
            head = self._client.head_object(Bucket=self.bucket, Key=key)
            return str(head["ETag"]), int(head["ContentLength"])
        except botocore.exceptions.ClientError as e:
            if self._code(e) in _ABSENT:
                return None
            raise

    def delete_ref(self, kind: RefKind, name: str, expected: RemoteRef,
                   message: str | None = None) -> None:
        """The ref replaced by a tombstone by compare-and-swap, or deleted under the lock
        object. The tombstone stays: an unconditional DELETE after it (servers
        that ignore If-Match on DELETE, Ceph RGW 16) could remove a ref another
        writer had meanwhile made over the tombstone."""
        key = self._ref_key(kind, name)
        if self.locking == "lock-object":
            with self.updating_refs():
                current = self.ref(kind, name)
                if current is None or current.id != expected.id:
                    raise RefChanged(f"{kind.label} {name!r} changed on remote {self.name!r} "
                                     "meanwhile")
                with self._call(f"delete {kind.label} {name!r}"):
                    self._client.delete_object(Bucket=self.bucket, Key=key)
            return
        self._swap_ref(kind, name, _TOMBSTONE, expected.token)

    @contextlib.contextmanager
    def updating_refs(self) -> Iterator[None]:
        if self.locking != "lock-object" or self._lock_depth:
            self._lock_depth += 1
            try:
                yield
            finally:
                self._lock_depth -= 1
            return
        with self._ref_lock():
            self._lock_depth = 1
            try:
                yield
            finally:
                self._lock_depth = 0

    @contextlib.contextmanager
    def _ref_lock(self) -> Iterator[None]:
        """Hold ``PREFIX/locks/refs.lock``, for servers without conditional writes.

        Without an atomic create, a lock can only be claimed and then checked:
        write a claim with a unique token, wait :data:`LOCK_SETTLE` seconds
        for any concurrent claim to land, read it back; the claim read back
        wins. Two claims can both win only if one writer took longer than the
        settle time between seeing no lock and writing its claim. A claim older
        than :data:`LOCK_STALE` is a dead holder's and is taken over.
        """
        key = self._key("locks/refs.lock")
        token = f"{uuid.uuid4().hex} {host_tag()} {os.getpid()}"
        deadline = time.monotonic() + LOCK_WAIT
        while True:
            holder = self._read_lock(key)
            if holder is not None and time.time() - holder[1] < LOCK_STALE:
                if time.monotonic() > deadline:
                    who = holder[0].split()
                    by = f" by pid {who[2]} on host {who[1]}" if len(who) == 3 else ""
                    raise Busy(f"{self._where()}: its ref lock is held{by}; try again later")
                time.sleep(LOCK_POLL)
                continue
            claim = json.dumps({"token": token, "time": time.time()}).encode()
            with self._call("claim the ref lock"):
                self._client.put_object(Bucket=self.bucket, Key=key, Body=claim)
            time.sleep(LOCK_SETTLE)
            holder = self._read_lock(key)
            if holder is not None and holder[0] == token:
                break
        try:
            yield
        finally:
            holder = self._read_lock(key)
            if holder is not None and holder[0] == token:
                with self._call("release the ref lock"):
                    self._client.delete_object(Bucket=self.bucket, Key=key)

    def _read_lock(self, key: str) -> tuple[str, float] | None:
        with self._call("read the ref lock"):
            try:
                stream = self._client.get_object(Bucket=self.bucket, Key=key)["Body"]
                body = stream.read(4096)  # a claim is a token and a time
                stream.close()
            except botocore.exceptions.ClientError as e:
                if self._code(e) in _ABSENT:
                    return None
                raise
        try:
            data = json.loads(body)
            return str(data["token"]), float(data["time"])
        except (ValueError, KeyError, TypeError):
            return "unreadable", 0.0  # stale by its time: taken over

    def close(self) -> None:
        self._client.close()

