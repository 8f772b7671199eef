"""Rewrite the settings table of docs/configuration.md from kf_plugin/config.py's SETTINGS.

    python docs/generate_configuration.py           # rewrite the table in place
    python docs/generate_configuration.py --check   # exit 1 if the table differs from SETTINGS

tests/test_project.py fails while the two differ.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List, Optional

from kf_plugin.config import settings_markdown

PAGE = Path(__file__).with_name("configuration.md")
START = "<!-- generated from kf_plugin/config.py"
END = "<!-- end of the generated table -->"


def generated_part(page: str) -> str:
    """The text between the page's markers (the table, as the page holds it).

    :raises ValueError: a marker is missing.
    """
    start, end = page.find(START), page.find(END)
    if start < 0 or end < start:
        raise ValueError(f"{PAGE.name} has lost its markers: a line starting {START!r}, then {END!r}")
    return page[page.index("\n", start) + 1:end]


def with_table(page: str, table: str) -> str:
    """``page`` with the text between its markers replaced by ``table``."""
    old = generated_part(page)
    start = page.index("\n", page.find(START)) + 1
    return page[:start] + table + page[start + len(old):]


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check; exit 1 if the table is out of date")
    args = parser.parse_args(argv)
    page = PAGE.read_text(encoding="utf-8")
    table = settings_markdown()
    if generated_part(page) == table:
        return 0
    if args.check:
        print(f"{PAGE} is out of date: run python docs/generate_configuration.py", file=sys.stderr)
        return 1
    PAGE.write_text(with_table(page, table), encoding="utf-8")
    print(f"rewrote the settings table of {PAGE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
