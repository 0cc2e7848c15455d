"""Packing encoded items into request bodies that respect every limit of their endpoint
(entries, bytes as sent, bytes decompressed), compressing where the endpoint takes it; the
compressed size is counted exactly, so no body is ever over and none is compressed twice.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass

from .payloads import (
    CHECKS_MAX_BYTES,
    CHECKS_MAX_ENTRIES,
    LOGS_MAX_BYTES,
    LOGS_MAX_ENTRIES,
    SERIES_MAX_BYTES,
    SERIES_MAX_COMPRESSED,
    SERIES_MAX_POINTS,
)


@dataclass(frozen=True)
class BatchLimits:
    """How one kind's items are joined into a request body, and Datadog's limits for it:
    items, bytes decompressed and, when the body is gzipped, bytes as sent."""

    prefix: bytes
    suffix: bytes
    max_items: int
    max_bytes: int
    gzip: bool = True
    max_sent: int | None = None


LOGS_BATCH = BatchLimits(b"[", b"]", LOGS_MAX_ENTRIES, LOGS_MAX_BYTES)
SERIES_BATCH = BatchLimits(
    b'{"series":[', b"]}", SERIES_MAX_POINTS, SERIES_MAX_BYTES, max_sent=SERIES_MAX_COMPRESSED
)
CHECKS_BATCH = BatchLimits(b"[", b"]", CHECKS_MAX_ENTRIES, CHECKS_MAX_BYTES, gzip=False)

GZIP_LEVEL = 6
SEPARATOR = b","


@dataclass(frozen=True)
class Packed:
    """One request body: the indexes of the items in it, the bytes as sent (gzipped when
    the kind is) and its decompressed size."""

    indexes: list[int]
    body: bytes
    raw_size: int


def pack(parts: Sequence[bytes], limits: BatchLimits) -> list[Packed]:
    """Join encoded items, in order, into as few bodies as every limit allows. An item too
    large on its own still gets a body so Datadog can judge it."""
    bodies: list[Packed] = []
    body = _Body(limits)
    for index, part in enumerate(parts):
        if body.indexes and not body.fits(part):
            bodies.append(body.close())
            body = _Body(limits)
        body.add(index, part)
    if body.indexes:
        bodies.append(body.close())
    return bodies


def compress_bound(size: int) -> int:
    """Most bytes deflate can turn ``size`` bytes into (zlib's ``compressBound``), plus the
    gzip header and trailer and a sync flush."""
    return size + (size >> 12) + (size >> 14) + (size >> 25) + 13 + 32


class _Body:
    """A body being filled. Compressed bytes are counted exactly, as the Datadog Agent's
    payload compressor does: items wait uncompressed while the worst case of compressing
    them still fits; when it would not, they are compressed and sync-flushed, which tells
    the exact size so far, and the item is tried again."""

    def __init__(self, limits: BatchLimits) -> None:
        self.limits = limits
        self.indexes: list[int] = []
        self.raw_size = len(limits.prefix) + len(limits.suffix)
        self._waiting: list[bytes] = [limits.prefix]
        self._waiting_size = len(limits.prefix)
        self._sent: list[bytes] = []
        self._sent_size = 0
        self._zip = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31) if limits.gzip else None

    def fits(self, part: bytes) -> bool:
        extra = len(part) + len(SEPARATOR)
        if len(self.indexes) >= self.limits.max_items:
            return False
        if self.raw_size + extra > self.limits.max_bytes:
            return False
        if self.limits.max_sent is None or self._room(extra):
            return True
        self._flush()
        return self._room(extra)

    def add(self, index: int, part: bytes) -> None:
        if self.indexes:
            self._waiting.append(SEPARATOR)
            self._waiting_size += len(SEPARATOR)
            self.raw_size += len(SEPARATOR)
        self._waiting.append(part)
        self._waiting_size += len(part)
        self.raw_size += len(part)
        self.indexes.append(index)

    def close(self) -> Packed:
        self._waiting.append(self.limits.suffix)
        tail = b"".join(self._waiting)
        if self._zip is None:
            return Packed(self.indexes, tail, self.raw_size)
        self._sent += [self._zip.compress(tail), self._zip.flush()]
        return Packed(self.indexes, b"".join(self._sent), self.raw_size)

    def _room(self, extra: int) -> bool:
        assert self.limits.max_sent is not None
        worst = compress_bound(self._waiting_size + extra + len(self.limits.suffix))
        return self._sent_size + worst <= self.limits.max_sent

    def _flush(self) -> None:
        assert self._zip is not None
        chunk = self._zip.compress(b"".join(self._waiting)) + self._zip.flush(zlib.Z_SYNC_FLUSH)
        self._sent.append(chunk)
        self._sent_size += len(chunk)
        self._waiting, self._waiting_size = [], 0
