"""export_records (JSONL and CSV, written whole or not at all), parse_time and format_for."""
from __future__ import annotations

import csv
import io
import json
import os
import stat
from datetime import timezone
from pathlib import Path
from typing import Iterator, List
from zoneinfo import ZoneInfo

import pytest

from kf_plugin.admin import Record
from kf_plugin.errors import KfError, RecordExportError
from kf_plugin.export import export_records, format_for, parse_time

SHANGHAI = ZoneInfo("Asia/Shanghai")
RECORDS = [
    Record("oUser", 2003, "你好，我要退款", 1700000000, ""),
    Record("oUser", 2002, 'He said "hi", then: left', 1700000001, "wang@gh_test"),
    Record("oUser", 2003, "第一行\n第二行\r\n第三行", 1700000002, ""),
    Record("o,comma", 2002, "emoji 🙂 and tab\t", 1700000003, "li@gh_test"),
]

JSONL = (
    '{"openid": "oUser", "opercode": 2003, "text": "你好，我要退款", "time": 1700000000, "worker": ""}\n'
    '{"openid": "oUser", "opercode": 2002, "text": "He said \\"hi\\", then: left", "time": 1700000001, '
    '"worker": "wang@gh_test"}\n'
    '{"openid": "oUser", "opercode": 2003, "text": "第一行\\n第二行\\r\\n第三行", "time": 1700000002, "worker": ""}\n'
    '{"openid": "o,comma", "opercode": 2002, "text": "emoji 🙂 and tab\\t", "time": 1700000003, '
    '"worker": "li@gh_test"}\n'
)
CSV = (
    'openid,opercode,text,time,worker\r\n'
    'oUser,2003,你好，我要退款,1700000000,\r\n'
    'oUser,2002,"He said ""hi"", then: left",1700000001,wang@gh_test\r\n'
    'oUser,2003,"第一行\n第二行\r\n第三行",1700000002,\r\n'
    '"o,comma",2002,emoji 🙂 and tab\t,1700000003,li@gh_test\r\n'
)


def raw(path: Path) -> str:
    """The file's text without newline translation."""
    return path.read_bytes().decode("utf-8")


def test_jsonl(tmp_path, capsys):
    out = tmp_path / "r.jsonl"
    assert export_records(iter(RECORDS), out, "jsonl") == 4
    assert raw(out) == JSONL
    assert [json.loads(line) for line in raw(out).split("\n")[:-1]] == [r.as_dict() for r in RECORDS]
    assert capsys.readouterr() == ("", "")  # no progress bar unless asked


def test_csv(tmp_path, capsys):
    out = tmp_path / "r.csv"
    assert export_records(iter(RECORDS), str(out), "csv") == 4
    assert raw(out) == CSV
    with out.open(encoding="utf-8", newline="") as file:
        rows = list(csv.DictReader(file))
    assert rows == [{k: str(v) for k, v in r.as_dict().items()} for r in RECORDS]
    assert capsys.readouterr() == ("", "")


@pytest.mark.parametrize("fmt, content", [("jsonl", ""), ("csv", "openid,opercode,text,time,worker\r\n")])
def test_no_records(tmp_path, fmt, content):
    out = tmp_path / f"r.{fmt}"
    assert export_records([], out, fmt) == 0
    assert raw(out) == content


def test_progress_bar_on_the_given_stream(tmp_path, capsys):
    bar = io.StringIO()
    assert export_records(iter(RECORDS), tmp_path / "r.jsonl", "jsonl", progress=bar) == 4
    assert "exporting" in bar.getvalue()
    assert "4 records" in bar.getvalue()
    assert capsys.readouterr() == ("", "")  # only on the stream given
    assert raw(tmp_path / "r.jsonl") == JSONL  # the bar is not written into the file


def test_the_file_is_private_and_replaces_an_old_one(tmp_path):
    out = tmp_path / "r.jsonl"
    out.write_text("old\n", encoding="utf-8")
    export_records(RECORDS[:1], out, "jsonl")
    assert raw(out) == JSONL.split("\n")[0] + "\n"
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600
    assert os.listdir(tmp_path) == ["r.jsonl"]


def failing_after(count: int, error: BaseException) -> Iterator[Record]:
    yield from RECORDS[:count]
    raise error


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
@pytest.mark.parametrize("error", [KfError("WeChat API error 45009"), KeyboardInterrupt()])
def test_a_failure_midway_leaves_no_file(tmp_path, fmt, error):
    out = tmp_path / "r.out"
    with pytest.raises(type(error)):
        export_records(failing_after(3, error), out, fmt)
    assert os.listdir(tmp_path) == []


def test_a_failure_midway_keeps_the_old_file(tmp_path):
    out = tmp_path / "r.jsonl"
    out.write_text("the previous export\n", encoding="utf-8")
    with pytest.raises(KfError):
        export_records(failing_after(2, KfError("boom")), out, "jsonl")
    assert raw(out) == "the previous export\n"
    assert os.listdir(tmp_path) == ["r.jsonl"]


def test_records_are_streamed_not_collected(tmp_path):
    """The records are pulled one by one while the temporary file is open, not collected before."""
    out = tmp_path / "r.jsonl"
    handed_out: List[Record] = []

    def records() -> Iterator[Record]:
        for record in RECORDS:
            parts = [p for p in os.listdir(tmp_path) if p.endswith(".part")]
            assert len(parts) == 1
            handed_out.append(record)
            yield record
    export_records(records(), out, "jsonl")
    assert handed_out == RECORDS


def test_an_unwritable_place(tmp_path):
    with pytest.raises(RecordExportError, match="cannot write .*missing/r.jsonl: No such file or directory"):
        export_records(RECORDS, tmp_path / "missing" / "r.jsonl", "jsonl")


def test_an_unknown_format_writes_nothing(tmp_path):
    with pytest.raises(ValueError, match="unknown export format 'xml' \\(one of jsonl, csv\\)"):
        export_records(RECORDS, tmp_path / "r.xml", "xml")
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("name, fmt", [("r.csv", "csv"), ("R.CSV", "csv"), ("r.jsonl", "jsonl"),
                                       ("r.json", "jsonl"), ("r", "jsonl"), ("csv", "jsonl")])
def test_format_for(name, fmt):
    assert format_for(name) == fmt
    assert format_for(Path("/tmp") / name) == fmt


@pytest.mark.parametrize("text, tz, end_of_day, expected", [
    ("2023-11-15", SHANGHAI, False, 1699977600),
    ("2023-11-15", SHANGHAI, True, 1700063999),
    ("2023-11-15", timezone.utc, False, 1700006400),
    ("2023-11-15 06:13:20", SHANGHAI, False, 1700000000),
    ("2023-11-15 06:13:20", SHANGHAI, True, 1700000000),  # a time is exact, even for --until
    ("2023-11-15 06:13", SHANGHAI, False, 1699999980),
    ("2023-11-15T06:13:20", SHANGHAI, False, 1700000000),
    ("  2023-11-15 06:13  ", SHANGHAI, False, 1699999980),
    ("1700000000", SHANGHAI, False, 1700000000),
    ("1700000000", timezone.utc, True, 1700000000),
    ("2024-02-29", SHANGHAI, True, 1709222399),
])
def test_parse_time(text, tz, end_of_day, expected):
    assert parse_time(text, tz, end_of_day=end_of_day) == expected


@pytest.mark.parametrize("text", ["", "yesterday", "2023-11-31", "2023-13-01", "2023-11-15 25:00", "2023/11/15",
                                  "１７００００００００", "-5", "1.5e9", "2023-11-15 06:13:20+08:00"])
def test_parse_time_refuses(text):
    with pytest.raises(ValueError):
        parse_time(text, SHANGHAI)
