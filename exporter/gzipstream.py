"""One gzip member assembled from deflate segments compressed apart and kept.

Each segment is a raw deflate stream of some pieces, ended by a sync flush (a byte-aligned,
non-final block) and compressed without reference to what comes before it, so segments can be
placed one after the other and each compressed once for as long as its pieces do not change.
A body is the gzip header, the segments, an empty final block and the trailer (CRC-32 and
length of the whole text): one ordinary gzip member (RFC 1952), which every reader takes, also
those that read only the first member of a multi-member body (httpx, some browsers).
"""

import ctypes
import ctypes.util
import struct
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

LEVEL = 3  # 10,000 functions (28 MB): 35 ms to 1.1 MB; level 6 takes 94 ms for 0.99 MB
HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"  # deflate, no name, no mtime, OS unknown
FINAL_BLOCK = b"\x03\x00"  # an empty fixed-Huffman block marked final

Chunk = Sequence[bytes]


def segment(pieces: Chunk) -> bytes:
    """The pieces, in order, as a raw deflate segment that ends on a byte boundary."""
    compressor = zlib.compressobj(LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS)
    return b"".join(
        [*(compressor.compress(p) for p in pieces), compressor.flush(zlib.Z_SYNC_FLUSH)]
    )


def trailer(crc: int, length: int) -> bytes:
    """The end of a member whose text has this CRC-32 and length, after its last segment."""
    return FINAL_BLOCK + struct.pack("<II", crc & 0xFFFFFFFF, length & 0xFFFFFFFF)


def checksum(pieces: Sequence[bytes], crc: int = 0) -> tuple[int, int]:
    """The CRC-32 and length of the pieces one after the other, continuing from `crc`."""
    length = 0
    for piece in pieces:
        crc = zlib.crc32(piece, crc)
        length += len(piece)
    return crc, length


def _zlib_crc32_combine() -> Callable[[int, int, int], int] | None:
    """zlib's crc32_combine64 (the CRC-32 of two texts one after the other, from theirs and
    the second's length, without reading them), which Python's zlib module does not offer;
    None where the zlib library cannot be loaded or gives a wrong answer."""
    name = ctypes.util.find_library("z")
    try:
        combine = ctypes.CDLL(name or "libz.so.1").crc32_combine64
    except (OSError, AttributeError):
        return None
    combine.restype = ctypes.c_ulong
    combine.argtypes = [ctypes.c_ulong, ctypes.c_ulong, ctypes.c_int64]
    text = b"0123456789" * 7
    if combine(zlib.crc32(text[:3]), zlib.crc32(text[3:]), len(text) - 3) != zlib.crc32(text):
        return None
    return lambda crc, then, length: int(combine(crc, then, length))


_crc32_combine = _zlib_crc32_combine()


@dataclass(frozen=True)
class _Segment:
    """A chunk (whose pieces it holds, so no other object can take their ids while it
    lives), as a deflate segment, and the CRC-32 and length of its text."""

    chunk: Chunk
    deflated: bytes
    crc: int
    length: int


class SegmentCache:
    """Each chunk's segment, kept while a render uses the chunk. A chunk is known by the
    identities of its pieces."""

    def __init__(self, compress: Callable[[Chunk], bytes] = segment) -> None:
        self._compress = compress
        self._segments: dict[tuple[int, ...], _Segment] = {}

    def compressed(self, chunks: Sequence[Chunk]) -> tuple[bytes, int, int]:
        """This render's chunks as their segments one after the other, and the CRC-32 and
        length of their text; only the new chunks are compressed (and read). The entries of
        chunks this render no longer has are dropped."""
        kept: dict[tuple[int, ...], _Segment] = {}
        segments = []
        for chunk in chunks:
            key = tuple(map(id, chunk))
            entry = self._segments.get(key) or kept.get(key) or self._new(chunk)
            kept[key] = entry
            segments.append(entry)
        self._segments = kept
        if _crc32_combine is None:  # the text read again, all of it
            crc, length = checksum([piece for chunk in chunks for piece in chunk])
        else:
            crc = length = 0
            for entry in segments:
                crc = _crc32_combine(crc, entry.crc, entry.length)
                length += entry.length
        return b"".join(entry.deflated for entry in segments), crc, length

    def _new(self, chunk: Chunk) -> _Segment:
        return _Segment(chunk, self._compress(chunk), *checksum(chunk))
