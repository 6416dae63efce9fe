"""lotcontrol.phrases: one table of code → English sentence, said in English by the command line and by
its code in the web console's language (enroll --codes)."""

import json
import pickle
import re

import pytest

from lotcontrol.errors import PhotoError, too_large
from lotcontrol.phrases import PHRASES, Phrase, json_line


def test_a_phrase_is_its_english_sentence_and_keeps_its_code_and_values():
    reason = Phrase("photo.faces", count=2)
    line = Phrase("enroll.rejected", path="b.jpg", reason=reason)
    assert line == "rejected b.jpg: 2 faces; an enrollment photo must show one person"
    assert f"{line}" == line and line.code == "enroll.rejected" and line.params["reason"].code == "photo.faces"
    again = pickle.loads(pickle.dumps(line))  # as a worker process hands it back (enroll.analyse_photos)
    assert again == line and again.code == line.code and again.params["reason"].params == {"count": 2}


def test_the_json_line_carries_the_codes_and_reads_back_nested():
    line = Phrase("enroll.added", name="Anna Berg", count=2, what=Phrase("what.photo"), templates=3)
    data = json.loads(json_line(line, error=True))
    assert data == {"code": "enroll.added", "text": "added resident 'Anna Berg': 2 photo(s) enrolled, 3 template(s) on file",
                    "params": {"name": "Anna Berg", "count": 2, "templates": 3,
                               "what": {"code": "what.photo", "params": {}, "text": "photo"}}, "error": True}
    back = Phrase.parsed(data)
    assert back == line and back.code == "enroll.added" and back.params["what"].code == "what.photo"
    assert Phrase.parsed({"not": "a phrase"}) == {"not": "a phrase"}


def test_a_photo_error_names_the_file_and_carries_its_reason_by_code():
    error = PhotoError(too_large("big.jpg", 20_000_000, 10), code="photo.named")
    assert str(error) == "big.jpg: the file is 20 MB, more than enroll.max_file_mb = 10 allows"
    grew = too_large("big.jpg", None, 10)
    assert grew.params["reason"].code == "photo.grew" and grew == "big.jpg: the file is larger, more than " \
        "enroll.max_file_mb = 10 allows"


def test_every_phrase_has_a_chinese_message_naming_the_same_values():
    pytest.importorskip("babel", reason="Babel, the web extra's, is not installed (EXTRAS without web: a Pi's pi,test)")
    from babel.messages.pofile import read_po

    from lotcontrol.web import i18n

    with i18n.catalogue_path("zh_CN").open("rb") as po:
        catalogue = read_po(po)
    for code, english in PHRASES.items():
        found = catalogue.get(english)
        assert found is not None and found.string, f"{code}: {english!r} is not translated in messages.po"
        names = set(re.findall(r"%\((\w+)\)s", english))
        assert set(re.findall(r"%\((\w+)\)s", found.string)) == names, code
        assert not re.search(r"%[^(%]", english.replace("%%", "")), f"{code}: only %(name)s values"


def test_the_page_says_a_phrase_in_chinese_part_by_part_and_falls_back_to_the_english():
    pytest.importorskip("babel", reason="Babel, the web extra's, is not installed (EXTRAS without web: a Pi's pi,test)")
    from lotcontrol.web import i18n, said

    zh, en = i18n.translations("zh_CN").gettext, i18n.translations("en").gettext
    line = Phrase("enroll.rejected", path="notes.txt", reason=Phrase("photo.not_image"))
    assert said.error(line, zh) == "未采用 notes.txt：不是 JPEG 或 PNG 图片"
    assert said.error(line, en) == "rejected notes.txt: not a JPEG or PNG image"
    assert said.error(Phrase(None, "something the child printed"), zh) == "something the child printed"
    assert said.error(Phrase("no.such_code", "as it came"), zh) == "as it came"


def test_enroll_with_codes_prints_json_lines_and_its_error_as_one(run, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("not a photo")
    plain = run("enroll", "Mallory", notes)
    assert plain.exit_code == 1
    assert f"rejected {notes}: not a JPEG or PNG image" in plain.stderr
    assert f"Error: 'Mallory' was not added: its only photo was refused: {notes}: not a JPEG or PNG image" \
        in plain.stderr
    coded = run("enroll", "--codes", "Mallory", notes)
    assert coded.exit_code == 1 and "Error:" not in coded.output
    rejected, error = [json.loads(line) for line in coded.stdout.splitlines()]
    assert rejected["code"] == "enroll.rejected" and rejected["params"]["reason"]["code"] == "photo.not_image"
    assert error["error"] is True and error["code"] == "enroll.only_refused"
    assert error["params"]["who"]["code"] == "enroll.not_added" and error["params"]["what"]["code"] == "what.photo"
    assert error["text"] == f"'Mallory' was not added: its only photo was refused: {notes}: not a JPEG or PNG image"


def test_enroll_with_codes_says_a_stores_error_by_its_code(run, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("not a photo")
    coded = run("enroll", "--codes", "Mal/lory", notes)
    [error] = [json.loads(line) for line in coded.stdout.splitlines() if '"error": true' in line]
    assert coded.exit_code == 1 and error["code"] == "name.char" and error["params"]["char"] == "/"
