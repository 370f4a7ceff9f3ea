"""Downloads: one stored file streamed from the store, with HEAD, ranges and ETags.

The bytes come from a descriptor the store opened for a validated id (never a path
built from request text, never through a symlink); they are read a chunk at a time
in a worker thread, so memory does not grow with the file's size.
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING
from urllib.parse import quote

import anyio.to_thread
from starlette.datastructures import Headers
from starlette.responses import Response

if TYPE_CHECKING:
    from starlette.types import Receive, Scope, Send

CHUNK = 256 * 1024
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


def parse_range(header: str | None, size: int) -> tuple[int, int] | bool | None:
    """The one byte range ``header`` asks for, as (first, last) inclusive; None to send
    the whole file (no header, several ranges, or one the RFC says to ignore); False
    when it cannot be satisfied (416)."""
    if header is None:
        return None
    match = _RANGE.fullmatch(header.replace(" ", ""))
    if match is None:
        return None  # another unit, several ranges or nonsense: the whole file (RFC 9110)
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:  # the last N bytes
        count = int(last)
        if count == 0 or size == 0:
            return False
        return max(0, size - count), size - 1
    start = int(first)
    end = int(last) if last else size - 1
    if last and end < start:
        return None
    if start >= size:
        return False
    return start, min(end, size - 1)


def attachment(filename: str) -> str:
    """A Content-Disposition value naming ``filename`` safely (RFC 6266 and 5987)."""
    fallback = "".join(c if c.isascii() and c.isprintable() and c not in '"\\;%' else "_"
                       for c in filename) or "download"
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


class BlobResponse(Response):
    """The bytes of an open descriptor ``fd`` of ``size`` bytes, whose content id is
    ``etag``; the descriptor is closed when the response is done."""

    def __init__(self, fd: int, size: int, etag: str, filename: str, request_headers: Headers,
                 method: str) -> None:
        self.fd = fd
        self.head = method == "HEAD"
        quoted = f'"{etag}"'
        headers = {"accept-ranges": "bytes", "etag": quoted,
                   "content-disposition": attachment(filename),
                   "cache-control": "private, max-age=3600"}
        self.start, self.length = 0, size
        if request_headers.get("if-none-match") in (quoted, "*"):
            status = 304
            self.length = 0
        else:
            if_range = request_headers.get("if-range")
            wanted = parse_range(request_headers.get("range"), size)
            if if_range is not None and if_range != quoted:
                wanted = None  # the client holds other bytes: send them all
            if wanted is False:
                status, self.length = 416, 0
                headers["content-range"] = f"bytes */{size}"
            elif isinstance(wanted, tuple):
                status = 206
                self.start, last = wanted
                self.length = last - self.start + 1
                headers["content-range"] = f"bytes {self.start}-{last}/{size}"
            else:
                status = 200
            headers["content-length"] = str(self.length)
        super().__init__(status_code=status, headers=headers,
                         media_type=None if status == 304 else "application/octet-stream")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await send({"type": "http.response.start", "status": self.status_code,
                        "headers": self.raw_headers})
            if self.head or self.status_code in (304, 416) or self.length == 0:
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                return
            position, left = self.start, self.length
            while left > 0:
                chunk = await anyio.to_thread.run_sync(os.pread, self.fd, min(CHUNK, left), position)
                if not chunk:
                    break  # the file shrank (objects never do): end here, the client sees it short
                position += len(chunk)
                left -= len(chunk)
                await send({"type": "http.response.body", "body": chunk, "more_body": left > 0})
            if left > 0:
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            os.close(self.fd)
