"""A packet answered record by record is split into parts that keep their records' identity."""

from __future__ import annotations

import orjson

from logdist.distributor.outputs.base import Sorted
from logdist.distributor.routing.parts import halves, plan
from logdist.formats.packet import Packet, parse_line, parse_stored


def packet(pid: str, n: int, segment: int = 4) -> Packet:
    body = orjson.dumps({"packetId": pid, "emitter": "e", "messages": [{"i": i} for i in range(n)]})
    return Packet(pid, "e", n, body, segment=segment)


def test_each_packet_goes_whole_or_in_parts_by_its_records() -> None:
    whole, mixed = packet("a", 2), packet("b", 4)
    verdict = Sorted("partial", retry=[3], refused=[(4, 400, "bad field"), (5, 400, "bad")])
    out = plan([whole, mixed], verdict)
    # records: a0 a1 | b0 b1 b2 b3 -> b1 again, b2 and b3 refused, b0 delivered
    assert out.delivered[0] is whole
    done, again = out.delivered[1], out.again[0]
    (refused, status, reason) = out.refused[0]
    assert [orjson.loads(p.body)["indexes"] for p in (done, again, refused)] == [[0], [1], [2, 3]]
    assert [p.id for p in (done, again, refused)] == ["b#0", "b#1", "b#2"]
    assert [orjson.loads(p.body)["messages"] for p in (done, again)] == [[{"i": 0}], [{"i": 1}]]
    assert (status, reason) == (400, "bad field; bad")
    assert out.splits == [(mixed, [done, again, refused])]
    assert {p.segment for p in (done, again, refused)} == {4}  # the spool keeps the packet


def test_a_packet_all_of_one_kind_is_not_split() -> None:
    p = packet("a", 3)
    out = plan([p], Sorted("partial", retry=[0, 1, 2]))
    assert out.again == [p] and out.splits == [] and out.delivered == []


def test_a_part_read_back_keeps_its_id_and_a_part_of_a_part_its_original_indexes() -> None:
    (first, second) = halves(packet("c", 5))
    assert [second.id, second.messages] == ["c#2", 3]
    assert parse_line(second.body).id == "c#2"  # from the spool or a dead letter: same id
    assert parse_stored(second.body)[0].id == "c#2"
    out = plan([second], Sorted("partial", retry=[2]))
    assert orjson.loads(out.again[0].body)["indexes"] == [4]
    assert out.again[0].id == "c#4" and out.delivered[0].id == "c#2"
