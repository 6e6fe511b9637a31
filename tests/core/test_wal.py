from __future__ import annotations

import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from logdist.core import wal


def segment(payloads: list[bytes]) -> bytes:
    return wal.MAGIC + b"".join(wal.encode(p) for p in payloads)


@given(st.lists(st.binary(min_size=1, max_size=200), max_size=20), st.integers(0, 300))
def test_records_round_trip_and_a_zero_tail_is_where_they_end(
    payloads: list[bytes], zeros: int
) -> None:
    # A segment is sized up front; what was not written of it reads as zeros.
    whole = segment(payloads)
    decoded = wal.decode(whole + bytes(zeros))
    assert decoded.records == payloads and decoded.problem is None
    assert decoded.good_bytes == len(whole)


def test_an_empty_record_is_refused_since_zeros_mark_the_end() -> None:
    with pytest.raises(ValueError, match="cannot be empty"):
        wal.encode(b"")


@given(st.lists(st.binary(min_size=1, max_size=50), min_size=1, max_size=10), st.data())
def test_a_torn_tail_keeps_every_whole_record_before_it(
    payloads: list[bytes], data: st.DataObject
) -> None:
    whole = segment(payloads)
    cut = data.draw(st.integers(len(wal.MAGIC), len(whole) - 1))
    decoded = wal.decode(whole[:cut])
    # Exactly the records that ended at or before the cut survive.
    ends = []
    offset = len(wal.MAGIC)
    for p in payloads:
        offset += wal.HEADER.size + len(p)
        ends.append(offset)
    assert decoded.records == [p for p, end in zip(payloads, ends, strict=True) if end <= cut]
    if cut not in ends and cut != len(wal.MAGIC):
        assert decoded.problem is not None and "torn" in decoded.problem
    assert decoded.good_bytes <= cut


def test_a_flipped_byte_is_caught_by_the_checksum() -> None:
    whole = bytearray(segment([b"first", b"second", b"third"]))
    whole[-2] ^= 0xFF
    decoded = wal.decode(bytes(whole))
    assert decoded.records == [b"first", b"second"]
    assert decoded.problem is not None and "checksum" in decoded.problem


def test_a_file_that_is_not_a_segment_yields_nothing() -> None:
    decoded = wal.decode(b"hello world")
    assert decoded.records == [] and decoded.problem == "no spool header"


def test_a_segment_from_the_version_before_is_still_read() -> None:
    # LDSPOOL1 segments checksum with zlib's CRC-32; a spool left by it is replayed.
    old = wal.MAGIC_CRC32 + b"".join(
        wal.HEADER.pack(len(p), zlib.crc32(p)) + p for p in (b"first", b"second")
    )
    assert wal.is_segment(old)
    assert wal.decode(old).records == [b"first", b"second"]
    # Each version's checksum is checked as its own: the other's would not match.
    assert wal.decode(wal.MAGIC + old[len(wal.MAGIC) :]).problem is not None
