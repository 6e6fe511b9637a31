"""The spool's on-disk framing: a magic header, then records of [length][checksum][payload],
then possibly zeros (a segment is sized up front; its unwritten tail reads as zeros).

The checksum is CRC-32C (as in ext4's metadata and RocksDB's log), computed by the CPU's own
instruction: 4 µs for a 100 KB bulk request where zlib's CRC-32 took 28. Segments written
before it (magic `LDSPOOL1`, zlib's CRC-32) are still read.

Pure functions over bytes; the distributor's spool does the file I/O.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass

from google_crc32c import value as crc32c

MAGIC = b"LDSPOOL2"
MAGIC_CRC32 = b"LDSPOOL1"
CHECKSUMS: dict[bytes, Callable[[bytes], int]] = {MAGIC: crc32c, MAGIC_CRC32: zlib.crc32}
HEADER = struct.Struct("<II")  # payload length, checksum of the payload
MAX_RECORD = 64 << 20


def header(payload: bytes) -> bytes:
    """The record header for `payload` (write the two back to back: no copy of the payload).

    A record is never empty: zeros mark where the written part of a segment ends.
    """
    if not payload:
        raise ValueError("a spool record cannot be empty")
    return HEADER.pack(len(payload), crc32c(payload))


def is_segment(data: bytes) -> bool:
    """Whether `data` starts like a spool segment (of this version or the one before)."""
    return data[: len(MAGIC)] in CHECKSUMS


def encode(payload: bytes) -> bytes:
    return header(payload) + payload


@dataclass(frozen=True)
class Decoded:
    records: list[bytes]
    # Bytes of the segment that framed correctly; anything after is torn or corrupt.
    good_bytes: int
    problem: str | None


def decode(data: bytes) -> Decoded:
    """Every record up to the first that does not frame or check out, or up to zeros."""
    checksum = CHECKSUMS.get(data[: len(MAGIC)])
    if checksum is None:
        return Decoded([], 0, "no spool header")
    records: list[bytes] = []
    offset = len(MAGIC)
    end = len(data)
    while offset < end:
        if end - offset < HEADER.size:
            if not data[offset:].strip(b"\0"):
                break  # a zero tail shorter than a header
            return Decoded(records, offset, f"torn record header at byte {offset}")
        length, crc = HEADER.unpack_from(data, offset)
        if length == 0 and crc == 0:
            break  # zeros: the unused tail of a segment sized up front (no record is empty)
        start = offset + HEADER.size
        if length > MAX_RECORD:
            return Decoded(records, offset, f"impossible record length {length} at byte {offset}")
        if start + length > end:
            return Decoded(
                records, offset, f"torn record at byte {offset} ({end - start} of {length} bytes)"
            )
        payload = data[start : start + length]
        if checksum(payload) != crc:
            return Decoded(records, offset, f"checksum mismatch at byte {offset}")
        records.append(payload)
        offset = start + length
    return Decoded(records, offset, None)
