"""Chat-record export: the period to ask for, and writing the records to a file.

::

    since = parse_time("2023-11-01", ZoneInfo("Asia/Shanghai"))
    until = parse_time("2023-11-30", ZoneInfo("Asia/Shanghai"), end_of_day=True)
    count = export_records(admin.records(since, until), "november.csv", "csv")

Records stream from the iterator to the file one at a time, so an export of
millions of lines holds one in memory. The file appears only when complete: it
is written next to the target under a temporary name and renamed at the end.
"""
from __future__ import annotations

import csv
import json
import os
import re
import tempfile
from datetime import date, datetime, time, timedelta, tzinfo
from typing import IO, Iterable, Optional, Union

from .admin import Record
from .errors import RecordExportError

__all__ = ["FORMATS", "CSV_COLUMNS", "export_records", "format_for", "parse_time"]

FORMATS = ("jsonl", "csv")
CSV_COLUMNS = ("openid", "opercode", "text", "time", "worker")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_DATETIME_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M")

PathLike = Union[str, "os.PathLike[str]"]


def parse_time(text: str, tz: tzinfo, *, end_of_day: bool = False) -> int:
    """The unix time ``text`` names: ``YYYY-MM-DD``, ``YYYY-MM-DD HH:MM[:SS]`` (in ``tz``) or a unix time.

    A date alone is its first second, or with ``end_of_day`` its last (so
    ``--until 2023-11-30`` includes all of that day).

    :raises ValueError: none of these forms, or no such date.
    """
    text = text.strip()
    if text.isdigit() and text.isascii():
        return int(text)
    if _DATE.fullmatch(text):
        day = date.fromisoformat(text)
        if end_of_day:
            return int(datetime.combine(day + timedelta(days=1), time(0), tz).timestamp()) - 1
        return int(datetime.combine(day, time(0), tz).timestamp())
    for layout in _DATETIME_FORMATS:
        try:
            moment = datetime.strptime(text, layout)
        except ValueError:
            continue
        return int(moment.replace(tzinfo=tz).timestamp())
    raise ValueError(f"{text!r} is not YYYY-MM-DD, YYYY-MM-DD HH:MM[:SS] or a unix time")


def format_for(path: PathLike) -> str:
    """The format a file name asks for: ``csv`` for ``*.csv``, ``jsonl`` otherwise."""
    return "csv" if os.fspath(path).lower().endswith(".csv") else "jsonl"


def export_records(records: Iterable[Record], out: PathLike, fmt: str, progress: Optional[IO[str]] = None) -> int:
    """Write ``records`` to the file ``out`` as ``jsonl`` or ``csv``; the number written.

    JSONL: one JSON object per line, non-ASCII text kept as is. CSV: a header row
    (:data:`CSV_COLUMNS`), then one row per record, quoted where a field holds a
    comma, quote or line break. Both UTF-8. ``progress``: a stream (``sys.stderr``)
    to draw a tqdm progress bar on; ``None`` draws none.

    The file is created readable by its owner only (chat records are personal
    data), and only once every record is written: if the iterator or a write
    fails, no file is left behind and an existing ``out`` is unchanged.

    :raises ValueError: an unknown ``fmt``.
    :raises RecordExportError: the file cannot be written.
    :raises KfError: whatever the ``records`` iterator raises (a WeChat API error, say).
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r} (one of {', '.join(FORMATS)})")
    target = os.path.abspath(os.fspath(out))
    try:
        handle, temporary = tempfile.mkstemp(dir=os.path.dirname(target),
                                             prefix=f".{os.path.basename(target)}.", suffix=".part")
    except OSError as exc:
        raise RecordExportError(f"cannot write {os.fspath(out)}: {exc.strerror or exc}") from exc
    try:
        with open(handle, "w", encoding="utf-8", newline="") as file:
            count = _write(_with_progress(records, progress), file, fmt)
        os.replace(temporary, target)
    except BaseException as exc:
        _remove(temporary)
        if isinstance(exc, OSError):
            raise RecordExportError(f"cannot write {os.fspath(out)}: {exc.strerror or exc}") from exc
        raise
    return count


def _write(records: Iterable[Record], file: IO[str], fmt: str) -> int:
    count = 0
    if fmt == "csv":
        writer = csv.writer(file)
        writer.writerow(CSV_COLUMNS)
        for record in records:
            writer.writerow([record.openid, record.opercode, record.text, record.time, record.worker])
            count += 1
    else:
        for record in records:
            file.write(json.dumps(record.as_dict(), ensure_ascii=False) + "\n")
            count += 1
    return count


def _with_progress(records: Iterable[Record], stream: Optional[IO[str]]) -> Iterable[Record]:
    if stream is None:
        return records
    from tqdm import tqdm
    return tqdm(records, file=stream, unit=" records", desc="exporting", dynamic_ncols=True)


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass
