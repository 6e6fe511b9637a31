"""`records`: NDJSON, one flat message a line — ClickHouse's `FORMAT JSONEachRow`, Vector's
`http_server`, most HTTP intakes. The HTTP status speaks for the whole request; a ClickHouse
exception about the data (it answers those with 500 and `Code: N` before version 23) is a
refusal, not a failure of the server, so the rows it refuses are found by halving."""

from __future__ import annotations

import re

from logdist.core.delivery import REFUSED, outcome
from logdist.distributor.outputs.base import Sent, Sorted
from logdist.distributor.outputs.converting import Converting
from logdist.net.pool import Answer
from logdist.net.web import NDJSON

_CODE = re.compile(rb"^Code: (\d+)")
# ClickHouse's error codes that say the rows are wrong (src/Common/ErrorCodes.cpp): they
# would be refused again, wherever they were sent.
DATA_ERRORS = frozenset(
    {
        6,  # CANNOT_PARSE_TEXT
        8,  # THERE_IS_NO_COLUMN
        16,  # NO_SUCH_COLUMN_IN_TABLE
        25,  # CANNOT_PARSE_ESCAPE_SEQUENCE
        26,  # CANNOT_PARSE_QUOTED_STRING
        27,  # CANNOT_PARSE_INPUT_ASSERTION_FAILED
        32,  # ATTEMPT_TO_READ_AFTER_EOF
        33,  # CANNOT_READ_ALL_DATA
        38,  # CANNOT_PARSE_DATE
        41,  # CANNOT_PARSE_DATETIME
        53,  # TYPE_MISMATCH
        69,  # ARGUMENT_OUT_OF_BOUND
        70,  # CANNOT_CONVERT_TYPE
        72,  # CANNOT_PARSE_NUMBER
        117,  # INCORRECT_DATA
        131,  # TOO_LARGE_STRING_SIZE
        349,  # CANNOT_INSERT_NULL_IN_ORDINARY_COLUMN
    }
)


class RecordsOutput(Converting):
    def __init__(self) -> None:
        super().__init__("records", NDJSON)

    def sort(self, answer: Answer, sent: Sent) -> Sorted:
        if answer.status == 500:
            code = _CODE.match(answer.body)
            if code is not None and int(code.group(1)) in DATA_ERRORS:
                return Sorted(REFUSED)
        return Sorted(outcome(answer.status))
