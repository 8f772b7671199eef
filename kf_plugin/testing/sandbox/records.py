"""Customer-service message records (``msgrecord/getmsglist``)."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, List, Mapping, Sequence

from .errors import ApiError

__all__ = ["RecordBook", "Record", "RECEIVED", "SENT", "MAX_PAGE", "MAX_SPAN"]

SENT = 2002
RECEIVED = 2003
MAX_PAGE = 10000
MAX_SPAN = 86400


@dataclass(frozen=True)
class Record:
    msgid: int
    openid: str
    opercode: int
    text: str
    time: int
    worker: str

    def entry(self) -> dict:
        """The record as ``getmsglist`` lists it (without its id)."""
        data = asdict(self)
        del data["msgid"]
        return data


def _whole_numbers(query: Mapping[str, Any], names: Sequence[str]) -> List[int]:
    """The named fields of ``query`` as integers.

    :raises ApiError: 65416 when one is missing or not an integer (``true`` is not one).
    """
    numbers = []
    for name in names:
        value = query.get(name)
        if not isinstance(value, int) or isinstance(value, bool):
            raise ApiError(65416)
        numbers.append(value)
    return numbers


class RecordBook:
    """Records with ids increasing from 1, in the order they were added."""

    def __init__(self) -> None:
        self._records: List[Record] = []

    def __iter__(self):
        return iter(list(self._records))

    def add(self, openid: str, text: str, opercode: int, worker: str, time: float) -> Record:
        record = Record(len(self._records) + 1, openid, opercode, text, int(time), worker)
        self._records.append(record)
        return record

    def page(self, query: Mapping[str, Any]) -> dict:
        """The answer to a ``getmsglist`` body: records with id ≥ msgid inside [starttime, endtime].

        The answer's ``msgid`` is where the next call continues: one past the last
        record listed (the asked msgid when nothing was listed).

        :raises ApiError: 65416 a field missing or not an integer, starttime > endtime,
            number outside 1..10000, msgid < 1; 65417 endtime − starttime > 86400.
        """
        start, end, msgid, number = _whole_numbers(query, ("starttime", "endtime", "msgid", "number"))
        if start > end or not 1 <= number <= MAX_PAGE or msgid < 1:
            raise ApiError(65416)
        if end - start > MAX_SPAN:
            raise ApiError(65417)
        listed = [r for r in self._records[msgid - 1:] if start <= r.time <= end][:number]
        next_msgid = listed[-1].msgid + 1 if listed else msgid
        return {"recordlist": [r.entry() for r in listed], "number": len(listed), "msgid": next_msgid}
