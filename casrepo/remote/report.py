"""What a transfer reports: :class:`TransferReport` (objects, bytes, skipped, and a
:class:`RefUpdate` per ref) and the :data:`Progress` callback.

Push, fetch, pull and clone (:mod:`casrepo.remote.sync`) and the object download
engine (:mod:`casrepo.remote.fetch`) all fill them; they live here so that both
import them without importing each other.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from casrepo.refs import RefKind

Progress = Callable[[int, int], None]
"""Transfer progress: (objects done, bytes done), called as each object lands."""


@dataclass(frozen=True)
class RefUpdate:
    """What happened to one ref: ``created``, ``fast-forward``, ``forced``,
    ``rebased``, ``up-to-date``, ``ahead`` (pull: the local name has versions the
    remote lacks; push them), ``behind`` (push: the remote has versions the local
    name lacks, and nothing of ours to send; pull them), ``deleted`` (push
    --delete), ``deleted-there`` (a plain push: the ref was deleted on the remote,
    and is not made again unless named), ``rejected`` (with the
    reason) or ``refused`` (fetch,
    pull: the remote's ref does not name a manifest; nothing is stored for it)."""

    kind: RefKind
    name: str
    old: str | None
    new: str | None
    """None: the ref is deleted (push --delete, pull --prune)."""
    status: str
    reason: str | None = None


@dataclass
class TransferReport:
    remote: str
    objects: int = 0
    """Objects transferred."""
    bytes: int = 0
    skipped: int = 0
    """Objects the other side had already (or that a push asked about and found there)."""
    promised: int = 0
    """Manifests whose data a partial fetch left on the remote."""
    pruned: list[RefUpdate] = field(default_factory=list)
    """fetch/pull --prune: remote refs found gone (status ``pruned``: forgotten here,
    or the local ref deleted; ``kept``: the local ref stays)."""
    refs: list[RefUpdate] = field(default_factory=list)

    @property
    def rejected(self) -> list[RefUpdate]:
        return [r for r in self.refs if r.status == "rejected"]

    @property
    def refused(self) -> list[RefUpdate]:
        return [r for r in self.refs if r.status == "refused"]
