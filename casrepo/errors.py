"""The casrepo exception tree.

Every error a user can cause is a :class:`CasrepoError`; each class carries the
exit code of the CLI contract so the CLI converts it in one place.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


class CasrepoError(Exception):
    """Base of every casrepo error; ``exit_code`` is the CLI's exit status.

    Raise a subclass: the base's code is the one for internal errors (exit 1 is kept
    for false answers, such as ``why`` finding no path).
    """

    exit_code = 70


class UsageError(CasrepoError):
    """Malformed input from the user: a bad name, rev, id or option value."""

    exit_code = 2


class InvalidName(UsageError):
    """A name or tag that breaks the ref-name rules."""


class InvalidId(UsageError):
    """Something that should be an object id or hex prefix and is not."""


class NotARepository(CasrepoError):
    """No casrepo repository here, or one in an unsupported format."""

    exit_code = 3


class NotFound(CasrepoError):
    """An object, rev, name or tag that does not exist."""

    exit_code = 4


class UnknownRev(NotFound):
    """A rev that names nothing here; ``hint`` is added to the message where more
    is known (a name a remote has, which only the command line looks up)."""

    def __init__(self, rev: str, message: str) -> None:
        self.rev = rev
        self.hint = ""
        super().__init__(message)

    def __str__(self) -> str:
        return super().__str__() + self.hint


class AmbiguousRev(NotFound):
    """A prefix or rev that matches more than one object."""

    def __init__(self, rev: str, candidates: Iterable[str]) -> None:
        self.rev = rev
        self.candidates = sorted(candidates)
        shown = ", ".join(self.candidates)
        super().__init__(f"ambiguous rev '{rev}' could be: {shown}")


class DataPruned(NotFound):
    """An artifact whose data gc's retention removed on purpose (its manifest remains)."""


class DataPromised(NotFound):
    """An artifact whose data a partial pull left on a remote that cannot give it now
    (the remote was removed, or no longer has it)."""


class Conflict(CasrepoError):
    """A tag that exists, a ref that changed under us, a destination in the way."""

    exit_code = 5


class RefChanged(Conflict):
    """A compare-and-swap found another value than the one expected."""


class RefsRejected(Conflict):
    """Some refs were not updated by a push or pull (exit 5); everything else was.
    ``report`` (the transfer's report) says what."""

    def __init__(self, message: str, report: Any) -> None:
        super().__init__(message)
        self.report = report


class IntegrityError(CasrepoError):
    """A corrupt or missing object, a manifest that does not parse."""

    exit_code = 6


class RefsRefused(IntegrityError):
    """Some remote refs do not name a manifest and were refused (exit 6): nothing was
    stored for them; the other refs were fetched. ``report`` says what."""

    def __init__(self, message: str, report: Any) -> None:
        super().__init__(message)
        self.report = report


class RemoteError(CasrepoError):
    """A remote that cannot be reached or refused a request."""

    exit_code = 7


class SystemFailure(CasrepoError):
    """The system refused: an OS error (disk full, permission denied, a read-only file
    system) or a program casrepo runs is missing or failed (Graphviz's dot).
    The exit code is sysexits.h's EX_IOERR; an ``OSError`` that reaches the CLI gets it too."""

    exit_code = 74


class Busy(CasrepoError):
    """A lock is held by a live process; try again later."""

    exit_code = 75
