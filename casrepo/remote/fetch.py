"""Downloading objects from a remote: :func:`fetch_objects` and the
:class:`ObjectFetch` that does the work, for fetch, pull and clone
(:mod:`casrepo.remote.sync`) and for fetch-on-miss (:mod:`casrepo.remote.onmiss`).

The link closure of the roots is walked in waves (the manifests of one wave name
the next), each wave downloaded in parallel into ``tmp/`` and verified as it
arrives; then the blobs the manifests link to. Nothing enters the store until all
of it arrived intact: the batch is installed at the end (blobs before the
manifests that link to them), and a failure or a Ctrl-C discards every temp file.
"""

from __future__ import annotations

import threading
from collections.abc import Collection, Sequence
from typing import Any, Literal

from casrepo.clock import format_time, now
from casrepo.errors import IntegrityError, NotFound
from casrepo.manifest import MAX_MANIFEST_SIZE, TREE_KIND, Link, Rel, Target, parse_document
from casrepo.promised import read_promised, record_promised
from casrepo.pruned import PrunedEntry
from casrepo.remote import Parallel, Remote
from casrepo.remote.report import Progress, TransferReport
from casrepo.repository import Repository
from casrepo.store import Incoming
from casrepo.tree import owning_versions

DataScope = Literal["all", "roots", "inputs"]

WORKERS = 8
"""Parallel downloads: enough to hide S3's per-request latency on 2 cores."""


def fetch_objects(repo: Repository, remote: Remote, roots: Sequence[str],
                  report: TransferReport | None = None, progress: Progress | None = None,
                  asked_for: Sequence[str] | None = None, *, names: Collection[str] = (),
                  tags: Collection[str] = (), data: DataScope = "all") -> set[str]:
    """Download every object the roots link to, transitively, that is missing
    here; verified as each arrives, installed as one batch only if all are
    intact (IntegrityError, exit 6, and nothing stored otherwise). A root missing on
    the remote is NotFound (exit 4) when it is in ``asked_for`` (default: every
    root: ids the user typed), damage otherwise (the target of a remote ref).

    ``names`` and ``tags`` are the roots that remote refs point at: each must be a
    manifest; those that are not are returned (refused), and nothing of them is
    stored. Blobs that the remote records as pruned are left out, and recorded
    as pruned here, but only for versions that retention could have pruned:
    never a name's current version, nor a tag's unless it is also an earlier
    version (some manifest's ``previous``).

    ``data`` chooses whose blobs come: ``all`` (the whole closure), ``roots``
    (the roots' own data, and their subtrees'), ``inputs`` (also their inputs',
    transitively). Manifests always come, all of them; the data left on the
    remote is recorded as promised (:mod:`casrepo.promised`).

    A manifest already here is not walked into: the store holds a manifest only
    with its closure (or that closure's missing data recorded as pruned or
    promised); while anything is recorded promised, local manifests are walked
    too, so that promised data below them comes."""
    report = report if report is not None else TransferReport(remote.name)
    return ObjectFetch(repo, remote, roots, report, progress, asked_for,
                       names=names, tags=tags, data=data).run()


class ObjectFetch:
    """One run of :func:`fetch_objects`: what it was asked for, and what it has
    seen, received and refused so far. :meth:`run` once."""

    def __init__(self, repo: Repository, remote: Remote, roots: Sequence[str],
                 report: TransferReport, progress: Progress | None = None,
                 asked_for: Sequence[str] | None = None, *, names: Collection[str] = (),
                 tags: Collection[str] = (), data: DataScope = "all") -> None:
        self.repo = repo
        self.data = data
        self.walk_local = bool(read_promised(repo.dir))
        """Whether manifests here are walked into (only while data is promised: else
        a manifest here has its closure here)."""
        self.with_data: set[str] = set()
        """Manifests whose data a partial fetch brings."""
        self.graph: dict[str, list[Link]] = {}
        self.nodes: set[str] = set()
        """Walked manifests that are directory tree nodes (parts of a version)."""
        """The links of every walked manifest (a partial fetch picks its data from them)."""
        self.remote = remote
        self.report = report
        self.progress = progress
        self.roots = list(dict.fromkeys(roots))
        """The first wave: the roots in order, once each."""
        self.root_set = set(roots)
        self.asked = set(asked_for) if asked_for is not None else self.root_set
        """Roots the user typed: missing on the remote, they are NotFound, not damage."""
        self.names = set(names)
        self.tags = set(tags)
        self.must_be_manifests = self.names | self.tags
        self.refused: set[str] = set()
        """Roots that remote refs point at that are not manifests: nothing of them stored."""
        self.seen: set[str] = set()
        """Manifests (and roots) walked or queued."""
        self.blobs: set[str] = set()
        """Every blob the walked manifests link to, here or not."""
        self.blob_owners: dict[str, list[str]] = {}
        """Blob -> the manifests that link to it."""
        self.earlier: set[str] = set()
        """Manifests some fetched or local manifest names as its ``previous``."""
        self.received: list[Incoming | None] = []
        """Every object that arrived (None: left out, pruned there), in order."""
        self.created: list[Incoming] = []
        """Every temp file made, to discard on failure: a Ctrl-C may land while tasks are
        being handed to the pool, so not every task's result is seen."""
        self.fetched: list[tuple[str, dict[str, Any], list[Link]]] = []
        """Manifests that arrived, with their documents and links, to index at the end."""
        self._stop: threading.Event | None = None
        """The pool's stop event, handed to each download's sink."""
        self._created_lock = threading.Lock()
        """Guards :attr:`created`: downloads start on several threads."""
        self._report_lock = threading.Lock()
        """Guards the report's counters and the progress calls: downloads finish on
        several threads."""
        self._pruned_lock = threading.Lock()
        self._pruned_there: dict[str, PrunedEntry] | None = None
        """The remote's record of pruned data, read once, when first needed (behind
        a lock, not a cached_property: downloads on several threads may ask at once)."""

    def run(self) -> set[str]:
        """Download, verify and install the closure; returns the refused roots."""
        with self.repo.writing():  # gc waits: what arrives is unreachable until a ref moves
            try:
                with Parallel(WORKERS, "casrepo-fetch") as pool:
                    self._stop = pool.stop
                    self._walk(pool)
                    wanted = self._wanted_blobs()
                    need = sorted(b for b in wanted if not self.repo.store.exists(b))
                    self.report.skipped += len(wanted) - len(need)
                    manifests = [sink for sink in _arrived(list(reversed(self.received)))
                                 if sink.id not in self.refused]
                    blob_sinks = _arrived(pool.map(self._download, need, self.received))
                self._install(blob_sinks, manifests, need)
            except BaseException:
                for sink in self.created:  # the pool has ended: every task is done or never ran
                    sink.discard()
                raise
            for oid, document, links in self.fetched:
                self.repo.index.record(oid, document, links)
        return self.refused

    def _walk(self, pool: Parallel) -> None:
        """The manifests of the closure, wave by wave: those missing here are
        downloaded, and every one's links make the next wave."""
        wave = self.roots
        while wave:
            self.seen.update(wave)
            local: list[str] = []
            missing: list[str] = []
            for oid in wave:
                (local if self.repo.store.exists(oid) else missing).append(oid)
            self.report.skipped += len(local)
            arrived = _arrived(pool.map(self._download, missing, self.received))
            nxt: list[str] = []
            for oid in local:
                if self.walk_local or oid in self.root_set:
                    nxt.extend(self._links_of_local(oid))
            for sink in arrived:
                nxt.extend(self._links_of_arrived(sink))
            wave = list(dict.fromkeys(nxt))

    def _wanted_blobs(self) -> set[str]:
        """The blobs to bring: all, or those of the manifests whose data is asked for
        (the roots, what they hold through content links, and with ``inputs`` what
        they were made from)."""
        if self.data == "all":
            return self.blobs
        # Everything but earlier versions (and inputs, unless asked for) is the
        # version's own: content, and the parts of a tree of manifests.
        skip = {Rel.PREVIOUS} if self.data == "inputs" else {Rel.PREVIOUS, Rel.INPUT}
        stack = [oid for oid in self.roots if oid in self.graph]
        wanted: set[str] = set()
        while stack:
            oid = stack.pop()
            if oid in self.with_data:
                continue
            self.with_data.add(oid)
            for link in self.graph.get(oid, ()):
                if link.target is Target.BLOB:
                    wanted.add(link.id)
                elif link.rel not in skip and link.id not in self.with_data:
                    stack.append(link.id)
        return wanted

    def _links_of_local(self, oid: str) -> list[str]:
        """The manifests to walk next from one that is here already."""
        try:
            document = self.repo.manifests.read_document(oid)
        except NotFound:
            if oid in self.must_be_manifests:
                self.refused.add(oid)  # a remote ref naming a blob
                return []
            if oid in self.root_set:
                return []  # a blob asked for by id, here already
            raise
        if document.get("kind") == TREE_KIND:
            self.nodes.add(oid)
        return self._follow(oid, self.repo.manifests.links(document))

    def _links_of_arrived(self, sink: Incoming) -> list[str]:
        """The manifests to walk next from one that just arrived."""
        parsed, data = _parse_received(sink)
        if parsed is None:
            if sink.id in self.must_be_manifests:
                self.refused.add(sink.id)  # a remote ref naming a blob: not stored
                sink.discard()
                return []
            if sink.id in self.root_set:
                return []  # a blob asked for by id: stored as it is
            raise IntegrityError(f"object {sink.id} on remote {self.remote.name!r} is "
                                 "linked as a manifest but is not one")
        links = self.repo.manifests.links(parsed, data)
        if parsed.get("kind") == TREE_KIND:
            self.nodes.add(sink.id)
        self.fetched.append((sink.id, parsed, links))
        return self._follow(sink.id, links)

    def _follow(self, owner: str, links: list[Link]) -> list[str]:
        """Note ``owner``'s blobs and earlier versions; the manifests it links to
        that are not walked yet."""
        self.earlier.update(lk.id for lk in links if lk.rel is Rel.PREVIOUS)
        self.graph[owner] = links
        found = []
        for link in links:
            if link.target is Target.BLOB:
                self.blobs.add(link.id)
                self.blob_owners.setdefault(link.id, []).append(owner)
            elif link.id not in self.seen:
                self.seen.add(link.id)
                found.append(link.id)
        return found

    def _download(self, oid: str) -> Incoming | None:
        """One object into a verified temp file (None: left out, pruned there);
        runs on the pool's threads."""
        sink = self.repo.store.receive(oid)
        sink.stop = self._stop
        with self._created_lock:
            self.created.append(sink)
        try:
            self.remote.download(oid, sink)
            sink.verify()
        except NotFound:
            sink.discard()
            if oid in self.asked:
                raise
            owners = self.blob_owners.get(oid, [])
            if (owners and all(self._prunable(owner) for owner in owners)
                    and any(owner in self._remote_pruned() for owner in owners)):
                return None  # pruned on purpose before it was pushed
            raise IntegrityError(f"remote {self.remote.name!r} lacks object {oid}, which objects "
                                 "there link to (push it again from a machine that has it)") from None
        except BaseException:
            sink.discard()
            raise
        with self._report_lock:  # downloads finish on several threads
            self.report.objects += 1
            self.report.bytes += sink.size
            if self.progress is not None:
                self.progress(self.report.objects, self.report.bytes)
        return sink

    def _prunable(self, owner: str) -> bool:
        """Whether gc's retention could have pruned this version's data (a record
        for any other is a lie: its missing data is damage)."""
        return owner not in self.names and (owner not in self.tags or owner in self.earlier)

    def _remote_pruned(self) -> dict[str, PrunedEntry]:
        """The remote's record of pruned data, read on first use (by any thread), once."""
        with self._pruned_lock:
            if self._pruned_there is None:
                self._pruned_there = self.remote.pruned()
            return self._pruned_there

    def _install(self, blob_sinks: list[Incoming], manifests: list[Incoming],
                 need: list[str]) -> None:
        """Store what arrived; record here the data the remote pruned."""
        if self.data != "all":
            # Before the manifests land: their missing data is promised, not damage.
            arrived = {sink.id for sink in blob_sinks}
            left = [oid for oid, links in self.graph.items() if oid not in self.with_data
                    and any(lk.target is Target.BLOB and lk.id not in arrived
                            and not self.repo.store.exists(lk.id) for lk in links)]
            # A tree node's data is its version's: the version is recorded (and
            # counted) with the nodes that link to the data left behind.
            versions = owning_versions(self.graph, self.nodes, left)
            known = read_promised(self.repo.dir)
            record_promised(self.repo.dir, format_time(now()), self.remote.name,
                            [oid for oid in {*left, *versions} if known.get(oid) != self.remote.name])
            self.report.promised = len(versions)
        # Blobs first, then manifests deepest first: a reader never meets a
        # manifest whose links are not there yet.
        self.repo.store.install_received(blob_sinks + manifests)
        arrived_blobs = {sink.id for sink in blob_sinks}
        skipped = [b for b in need if b not in arrived_blobs]
        if skipped:  # pruned there: record it here, so get says so (exit 4)
            there = self._remote_pruned()
            owners = {o for b in skipped for o in self.blob_owners.get(b, []) if o in there}
            owners.update(v for v in owning_versions(self.graph, self.nodes, owners) if v in there)
            self.repo.pruned.extend({o: there[o] for o in owners})


def _parse_received(sink: Incoming) -> tuple[dict[str, Any] | None, bytes]:
    """The manifest document of a verified incoming object (None: a blob; a large
    one is never read whole)."""
    with open(sink.tmp, "rb") as f:
        first = f.read(1)
        if first != b"{" or sink.size > MAX_MANIFEST_SIZE:
            return None, b""
        data = first + f.read()
    return parse_document(data), data


def _arrived(sinks: list[Incoming | None]) -> list[Incoming]:
    return [sink for sink in sinks if sink is not None]
