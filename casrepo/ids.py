"""Object ids and ref names: validation only, no I/O.

Everything a user types that later becomes part of a path goes through here
first (design invariant 6).
"""

from __future__ import annotations

import re

from casrepo.errors import InvalidId, InvalidName, UsageError

ID_LENGTH = 64
MIN_PREFIX = 4
_ID_RE = re.compile(r"[0-9a-f]{64}")
_PREFIX_RE = re.compile(r"[0-9a-f]{4,64}")
_MAX_REF_BYTES = 255
# git check-ref-format: these never appear in a component.
_FORBIDDEN_CHARS = set(" ~^:?*[\\\x7f")


def is_object_id(text: str) -> bool:
    """True when ``text`` is a full id: 64 lowercase hex characters."""
    return _ID_RE.fullmatch(text) is not None


def is_id_prefix(text: str) -> bool:
    """True when ``text`` could be a prefix of an id (4 to 64 lowercase hex)."""
    return _PREFIX_RE.fullmatch(text) is not None


def check_object_id(text: str) -> str:
    """Return ``text`` if it is a full object id, else raise :class:`InvalidId`."""
    if not isinstance(text, str) or not is_object_id(text):
        raise InvalidId(f"not an object id (64 lowercase hex characters): {text!r}")
    return text


def check_prefix(text: str) -> str:
    """Return ``text`` if it is a valid id prefix, else raise :class:`InvalidId`."""
    if not is_id_prefix(text):
        raise InvalidId(f"not an id prefix (at least {MIN_PREFIX} lowercase hex characters): {text!r}")
    return text


def ref_name_problem(name: str) -> str | None:
    """Why ``name`` is not a valid name or tag (git's ref-name rules), or None."""
    if not name:
        return "it is empty"
    if len(name.encode("utf-8", "surrogatepass")) > _MAX_REF_BYTES:
        return f"it is longer than {_MAX_REF_BYTES} bytes"
    if name == "@":
        return "'@' alone is reserved"
    if name.startswith("/") or name.endswith("/"):
        return "it starts or ends with '/'"
    if name.endswith("."):
        return "it ends with '.'"
    if ".." in name:
        return "it contains '..'"
    if "@{" in name:
        return "it contains '@{'"
    for ch in name:
        if ch < " " or ch in _FORBIDDEN_CHARS:
            return f"it contains the forbidden character {ch!r}"
        if 0xD800 <= ord(ch) <= 0xDFFF:
            return "it is not valid UTF-8"
    for part in name.split("/"):
        if not part:
            return "it has an empty component ('//')"
        if part.startswith("."):
            return f"component {part!r} starts with '.'"
        if part.endswith(".lock"):
            return f"component {part!r} ends with '.lock'"
    return None


def check_ref_name(name: str, what: str = "name") -> str:
    """Return ``name`` if it follows the ref-name rules, else raise :class:`InvalidName`."""
    problem = ref_name_problem(name)
    if problem is not None:
        raise InvalidName(f"invalid {what} {name!r}: {problem}")
    return name


# -- text --------------------------------------------------------------------------


def shown(text: str) -> str:
    """``text`` fit to print: bytes that are not UTF-8 (which Python holds as lone
    surrogates) shown as backslash escapes, e.g. ``bad\\xff``."""
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return raw.decode("utf-8", "backslashreplace")


def is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def require_utf8(text: str | None, what: str) -> None:
    """UsageError unless ``text`` is valid UTF-8: manifests and the ref log are UTF-8
    JSON, which cannot hold the bytes of a name or argument that is not
    (docs/format.md, "Text")."""
    if text is not None and not is_utf8(text):
        raise UsageError(f"{what} is not valid UTF-8: '{shown(text)}' (casrepo stores text as "
                         "UTF-8)")
