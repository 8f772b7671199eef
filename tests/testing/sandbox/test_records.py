"""Message records over HTTP: filtering, paging with msgid, parameter checks."""
from __future__ import annotations

import pytest

from .conftest import Clock

RECORDS = "/customservice/msgrecord/getmsglist"


def query(api, start, end, msgid=1, number=10000) -> dict:
    return api.post(RECORDS, {"starttime": start, "endtime": end, "msgid": msgid, "number": number})


def test_records_inside_the_period(api, sandbox, clock: Clock):
    now = int(clock.now)
    sandbox.add_record("oUser1", "before", at=now - 100)
    sandbox.add_record("oUser1", "你好", at=now)
    sandbox.add_record("oUser1", "hello back", opercode=2002, worker="kf1@test", at=now + 10)
    sandbox.add_record("oUser1", "after", at=now + 1000)
    answer = query(api, now, now + 10)
    assert answer["errcode"] == 0
    assert answer["recordlist"] == [
        {"openid": "oUser1", "opercode": 2003, "text": "你好", "time": now, "worker": ""},
        {"openid": "oUser1", "opercode": 2002, "text": "hello back", "time": now + 10, "worker": "kf1@test"},
    ]
    assert (answer["number"], answer["msgid"]) == (2, 4)


def test_paging_with_the_returned_msgid(api, sandbox, clock: Clock):
    now = int(clock.now)
    for number in range(25):
        sandbox.add_record("oUser1", f"m{number}", at=now + number)
    texts, msgid, pages = [], 1, []
    while True:
        answer = query(api, now, now + 3600, msgid=msgid, number=10)
        pages.append(answer["number"])
        texts += [record["text"] for record in answer["recordlist"]]
        msgid = answer["msgid"]
        if answer["number"] < 10:
            break
    assert pages == [10, 10, 5]
    assert texts == [f"m{n}" for n in range(25)]
    assert msgid == 26
    assert query(api, now, now + 3600, msgid=26, number=10) | {"errmsg": ""} == {
        "errcode": 0, "errmsg": "", "recordlist": [], "number": 0, "msgid": 26}


def test_msgid_and_the_period_both_filter(api, sandbox, clock: Clock):
    now = int(clock.now)
    ids = [sandbox.add_record("oUser1", text, at=at) for text, at in
           [("a", now), ("old", now - 5000), ("b", now + 1), ("c", now + 2)]]
    assert ids == [1, 2, 3, 4]
    answer = query(api, now, now + 60, msgid=2, number=1)
    assert [r["text"] for r in answer["recordlist"]] == ["b"] and answer["msgid"] == 4


@pytest.mark.parametrize("body, expected", [
    ({"starttime": 0, "endtime": 86400, "msgid": 1, "number": 1}, 0),
    ({"starttime": 0, "endtime": 86401, "msgid": 1, "number": 1}, 65417),
    ({"starttime": 10, "endtime": 9, "msgid": 1, "number": 1}, 65416),
    ({"starttime": 0, "endtime": 10, "msgid": 1, "number": 0}, 65416),
    ({"starttime": 0, "endtime": 10, "msgid": 1, "number": 10000}, 0),
    ({"starttime": 0, "endtime": 10, "msgid": 1, "number": 10001}, 65416),
    ({"starttime": 0, "endtime": 10, "msgid": 0, "number": 1}, 65416),
    ({"starttime": 0, "endtime": 10, "number": 1}, 65416),
    ({"starttime": "0", "endtime": 10, "msgid": 1, "number": 1}, 65416),
    ({"starttime": 0, "endtime": 10.5, "msgid": 1, "number": 1}, 65416),
    (None, 44002),
])
def test_query_parameter_checks(api, body, expected):
    assert api.post(RECORDS, body)["errcode"] == expected
