import json
import os
import re
import shutil

import pytest

from lotcontrol.config import prepare_data_dir
from lotcontrol.store import Store

from .conftest import FACES, FACES_LOT, need
from .photos import make


@pytest.fixture(autouse=True)
def _faces_present():
    need(FACES)


def lfw(person: str, *numbers: int):
    return [FACES / person / f"{person}_{n:04d}.jpg" for n in numbers]


def blair_photos():
    return sorted((FACES / "Tony_Blair").glob("*.jpg"))


def test_enroll_a_new_resident(run):
    photos = lfw("Naomi_Watts", 1, 3)
    result = run("enroll", "Naomi Watts", *photos, "--unit", "4B", "--phone", "+46 70 123")
    assert result.exit_code == 0
    assert result.output == (
        f"enrolled {photos[0]}\nenrolled {photos[1]}\n"
        "added resident 'Naomi Watts': 2 photo(s) enrolled, 2 template(s) on file\n"
    )
    shown = json.loads(run("show", "naomi watts", "--json").output)
    assert (shown["name"], shown["unit"], shown["phone"], shown["status"], shown["templates"]) == (
        "Naomi Watts", "4B", "+46 70 123", "active", 2)
    [event] = json.loads(run("events", "--json").output)
    assert (event["type"], event["resident"]) == ("resident.enrolled", "Naomi Watts")
    assert event["details"] == {"new_resident": True, "templates_added": 2}


def test_enroll_adds_to_an_existing_resident_and_refuses_a_photo_already_on_file(enrolled, run):
    [old] = sorted((FACES / "Tony_Blair").glob("*.jpg"))[:1]
    new = sorted((FACES / "Tony_Blair").glob("*.jpg"))[3]
    result = run("enroll", "tony_blair", new, old)
    assert result.exit_code == 1
    assert result.stdout == f"enrolled {new}\nupdated resident 'Tony_Blair': 1 photo(s) enrolled, 4 template(s) on file\n"
    assert result.stderr == (f"skipped {old}: already enrolled for 'Tony_Blair'\n"
                             f"Error: 'Tony_Blair' was updated with 1 of 2 photos: 1 photo was refused: {old}: already enrolled "
                             "for 'Tony_Blair'\n")


def test_every_bad_photo_is_reported_and_nothing_is_stored_for_a_new_resident(run, tmp_path):
    kinds = ["empty", "text", "truncated", "no_face", "two_faces", "tiny", "blurry"]
    paths = [make(k, tmp_path) for k in kinds]
    result = run("enroll", "Nobody", *paths)
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert lines[2].startswith(f"rejected {paths[2]}: the image is damaged or truncated (image file is truncated")
    del lines[2], paths[2]
    assert lines[:5] == [
        f"rejected {paths[0]}: the file is empty",
        f"rejected {paths[1]}: not a JPEG or PNG image",
        f"rejected {paths[2]}: no face found",
        f"rejected {paths[3]}: 2 faces; an enrollment photo must show one person",
        f"rejected {paths[4]}: the face is too small (43 px wide, at least 50 needed)",
    ]
    assert lines[5].startswith(f"rejected {paths[5]}: the face is too blurry (sharpness ")
    assert lines[6] == "Error: 'Nobody' was not added: all 7 photos were refused (each is listed above with why)"
    assert run("residents", "--json").output == "[]\n"
    assert run("events", "--json").output == "[]\n"


def test_the_same_photo_twice_in_one_command(run):
    photo = lfw("Naomi_Watts", 1)[0]
    result = run("enroll", "Naomi", photo, photo)
    assert result.exit_code == 1
    assert f"rejected {photo}: the same photo as {photo}\n" in result.stderr


def test_a_look_alike_is_enrolled_flagged_and_cleared_by_staff(enrolled, run):
    photo = blair_photos()[6]  # not one of the three enrolled; 0.42 from them in dlib, 0.37 in faceres
    result = run("enroll", "Someone Else", photo)
    assert result.exit_code == 0, result.output
    flagged = re.match(r"look-alike: 'Someone Else' and 'Tony_Blair' \(distance (0\.\d\d)\) are both on file", result.stderr)
    assert flagged and 0.3 < float(flagged[1]) <= 0.45  # within match.lookalike_distance
    assert json.loads(run("events", "--json", "--type", "resident.enrolled").output)[-1]["details"]["lookalikes"] \
        == ["Tony_Blair"]
    listed = {r["name"]: r["lookalike_of"] for r in json.loads(run("residents", "--json").output)}
    assert {k: v for k, v in listed.items() if v} == {"Someone Else": ["Tony_Blair"], "Tony_Blair": ["Someone Else"]}
    assert "LOOK-ALIKE of Tony_Blair" in run("residents").output
    check = json.loads(run("residents", "check", "--json").output)
    assert [({p["first"], p["second"]}, p["flag"]) for p in check["lookalikes"]] == [({"Someone Else", "Tony_Blair"}, "flagged")]
    on_file = sum(r["templates"] for r in json.loads(run("residents", "--json").output))
    assert check["gallery"]["lookalikes"] == 2 and check["gallery"]["templates"] == on_file
    assert check["lookalikes"][0]["modes"] == {"Someone Else": "face", "Tony_Blair": "face"}  # no PIN yet
    assert run("pin", "set", "Tony_Blair", input="4711\n4711\n").exit_code == 0
    check = json.loads(run("residents", "check", "--json").output)
    # either has a PIN: both held to face_and_pin (the PIN names who), and the one without is told to get one
    assert check["lookalikes"][0]["modes"] == {"Someone Else": "face_and_pin", "Tony_Blair": "face_and_pin"}
    assert check["lookalikes"][0]["without_pin"] == ["Someone Else"]
    assert "'Someone Else' has no PIN and cannot enter in that mode" in run("residents", "check").output
    cleared = run("residents", "clear-lookalike", "Tony_Blair", "Someone Else")
    assert cleared.exit_code == 0 and cleared.output.startswith("cleared: 'Tony_Blair' and 'Someone Else'")
    assert "LOOK-ALIKE" not in run("residents").output
    check = json.loads(run("residents", "check", "--json").output)
    assert check["lookalikes"][0]["flag"].startswith("cleared ")  # the pair is still near: still listed
    again = run("residents", "clear-lookalike", "Tony_Blair", "Someone Else")
    assert (again.exit_code, again.output) == (
        1, "Error: 'Tony_Blair' and 'Someone Else' are not flagged as look-alikes (see `lotcontrol residents check`)\n")
    unknown = run("residents", "clear-lookalike", "Tony_Blair", "Nobody")
    assert unknown.exit_code == 1 and "Nobody" in unknown.output
    run("remove", "Someone Else", "--yes")
    assert json.loads(run("residents", "check", "--json").output)["lookalikes"] == []


def test_bad_names_and_fields_are_errors(run):
    photo = lfw("Naomi_Watts", 1)[0]
    for args, message in [
        (["enroll", "  ", photo], "Error: a resident's name cannot be empty\n"),
        (["enroll", "a/b", photo], "Error: a resident's name cannot contain '/': 'a/b'\n"),
        (["enroll", "Ann", photo, "--valid-until", "soon"], "Error: valid until 'soon' is not a date (YYYY-MM-DD)\n"),
    ]:
        result = run(*args)
        assert (result.exit_code, result.output) == (1, message)
    assert run("residents").output == "no residents on file\n"


def test_a_missing_photo_is_a_usage_error(run, tmp_path):
    result = run("enroll", "Ann", tmp_path / "gone.jpg")
    assert result.exit_code == 2
    assert f"Error: Invalid value for 'PHOTOS...': File '{tmp_path}/gone.jpg' does not exist." in result.output


def test_residents_lists_everyone(enrolled, run):
    result = run("residents")
    assert result.exit_code == 0
    assert result.output == (
        "NAME             UNIT      STATUS     FACES  VALID\n"
        "Colin_Powell     -         active         3  always\n"
        "Serena_Williams  -         active         3  always\n"
        "Tony_Blair       -         active         3  always\n"
        "3 resident(s)\n"
    )
    listed = json.loads(run("residents", "--json").output)
    assert [r["name"] for r in listed] == ["Colin_Powell", "Serena_Williams", "Tony_Blair"]


def test_suspend_resume_rename_remove(enrolled, run):
    assert run("suspend", "tony_blair").output == "suspended 'Tony_Blair'\n"
    assert json.loads(run("show", "Tony_Blair", "--json").output)["status"] == "suspended"
    assert run("resume", "Tony_Blair").output == "resumed 'Tony_Blair'\n"
    assert run("rename", "Tony_Blair", "Tony Blair").output == "renamed 'Tony_Blair' to 'Tony Blair'\n"
    result = run("rename", "Tony Blair", "colin_powell")
    assert (result.exit_code, result.output) == (1, "Error: resident 'Colin_Powell' is already on file\n")
    result = run("remove", "Tony Blair", input="n\n")
    assert result.exit_code == 1 and "Aborted!" in result.output
    assert run("remove", "Tony Blair", "--yes").output == "removed 'Tony Blair' and 3 face template(s)\n"
    result = run("remove", "Tony Blair", "--yes")
    assert (result.exit_code, result.output) == (1, "Error: no resident named 'Tony Blair'\n")
    events = json.loads(run("events", "--json").output)
    assert [e["type"] for e in events][-4:] == ["resident.suspended", "resident.resumed", "resident.renamed",
                                                 "resident.removed"]
    assert not any(e["resident"] == "Tony Blair" or "Tony" in json.dumps(e["details"]) for e in events)


@pytest.mark.parametrize("command", ["show", "suspend", "resume"])
def test_unknown_resident(run, data_dir, command):
    Store.in_dir(prepare_data_dir(data_dir)).close()
    result = run(command, "Ghost")
    assert (result.exit_code, result.output) == (1, "Error: no resident named 'Ghost'\n")


def test_identify_json(enrolled, run, tmp_path):
    blair = blair_photos()[6]
    stranger = lfw("Meryl_Streep", 1)[0]
    bad = make("text", tmp_path)
    wall = make("no_face", tmp_path)
    result = run("identify", "--json", blair, stranger, wall, bad)
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert [r["photo"] for r in report] == [str(blair), str(stranger), str(wall), str(bad)]
    assert report[0]["faces"][0]["resident"] == "Tony_Blair"
    assert report[0]["faces"][0]["distance"] < 0.45
    assert len(report[0]["faces"][0]["box"]) == 4
    assert report[1]["faces"][0]["resident"] is None and report[1]["faces"][0]["distance"] > 0.45
    assert report[2] == {"photo": str(wall), "faces": []}
    assert report[3] == {"photo": str(bad), "faces": [], "error": "not a JPEG or PNG image"}
    assert result.stderr == "Error: 1 of 4 photo(s) could not be read\n"
    ok = run("identify", blair)
    assert ok.exit_code == 0
    assert ok.output.startswith(f"{blair}: Tony_Blair (distance 0.")


def test_identify_with_nobody_on_file(run, data_dir):
    photo = lfw("Meryl_Streep", 1)[0]
    Store.in_dir(prepare_data_dir(data_dir)).close()  # a database with nobody on file (reading creates none)
    result = run("identify", "--json", photo)
    [face] = json.loads(result.output)[0]["faces"]
    assert (face["resident"], face["distance"]) == (None, None)
    top, right, bottom, left = face["box"]
    assert 0 <= left < right <= 250 and 0 <= top < bottom <= 250 and right - left > 40  # a face in the photo


def test_enroll_folder_is_safe_to_run_again(run, tmp_path):
    folder = tmp_path / "import"
    for person in ("Laura_Bush", "Kofi_Annan"):
        (folder / person).mkdir(parents=True)
        for photo in sorted((FACES / person).glob("*.jpg"))[:2]:
            shutil.copy(photo, folder / person)
    (folder / "Kofi_Annan" / "readme.txt").write_text("hi")
    make("no_face", folder / "Laura_Bush")
    result = run("enroll-folder", folder)
    assert result.exit_code == 0
    assert result.stdout == "2 resident(s) added, 4 photo(s) enrolled, 0 already on file or copies, 1 rejected\n"
    assert f"rejected {folder}/Laura_Bush/wall.jpg: no face found\n" in result.stderr
    assert f"ignored {folder}/Kofi_Annan/readme.txt: not a .jpg, .jpeg or .png in a resident's folder\n" in result.stderr
    again = run("enroll-folder", folder)
    assert again.stdout == "0 resident(s) added, 0 photo(s) enrolled, 4 already on file or copies, 1 rejected\n"
    assert [r["templates"] for r in json.loads(run("residents", "--json").output)] == [2, 2]


def test_enroll_folder_skips_copies_by_face_and_refuses_a_folder_of_two_people(run, tmp_path):
    from PIL import Image

    folder = tmp_path / "import"
    (folder / "Mixed").mkdir(parents=True)
    (folder / "Kofi").mkdir()
    laura, hugo = lfw("Laura_Bush", 1)[0], lfw("Hugo_Chavez", 1)[0]
    shutil.copy(laura, folder / "Mixed" / "a.jpg")
    shutil.copy(hugo, folder / "Mixed" / "b.jpg")
    kofi = sorted((FACES / "Kofi_Annan").glob("*.jpg"))[0]
    shutil.copy(kofi, folder / "Kofi" / "a.jpg")
    Image.open(kofi).save(folder / "Kofi" / "b.png")
    result = run("enroll-folder", folder)
    assert result.exit_code == 0
    assert result.stdout == ("1 resident(s) added, 1 photo(s) enrolled, 1 already on file or copies, 1 rejected, "
                             "1 resident(s) refused as not one person\n")
    assert re.search(rf"rejected {folder}/Mixed/b.jpg: its face is 0\.[789]\d from {folder}/Mixed/a.jpg", result.stderr)
    assert f"skipped {folder}/Kofi/b.png: the same face as {folder}/Kofi/a.jpg (distance 0.00)\n" in result.stderr
    assert "refused 'Mixed': the photos do not show one person (see above), nothing was enrolled" in result.stderr
    assert [(r["name"], r["templates"]) for r in json.loads(run("residents", "--json").output)] == [("Kofi", 1)]


def test_events_filters(enrolled, run):
    run("suspend", "Tony_Blair")
    assert [e["type"] for e in json.loads(run("events", "--json", "--type", "resident.suspended").output)] == [
        "resident.suspended"]
    assert json.loads(run("events", "--json", "--since", "2999-01-01").output) == []
    assert len(json.loads(run("events", "--json", "--since", "1h").output)) == 4
    result = run("events", "--since", "yesterday")
    assert result.exit_code == 2
    assert "'yesterday' is neither a time (2026-11-28 or 2026-11-28T08:00) nor an age (30m, 24h, 7d)" in result.output
    text = run("events", "--type", "resident.suspended").output
    assert text.endswith("  resident.suspended   Tony_Blair\n")


def test_every_command_has_help_with_an_example_and_is_in_the_readme(run):
    from pathlib import Path

    from lotcontrol.cli import cli

    import click

    root = Path(__file__).resolve().parents[1]
    readme = "\n".join(p.read_text() for p in [root / "README.md", *sorted((root / "docs").glob("*.md"))])

    def commands(group, prefix=()):
        for name, command in group.commands.items():
            if isinstance(command, click.Group):
                yield from commands(command, (*prefix, name))
            else:
                yield (*prefix, name)

    for words in commands(cli):
        result = run(*words, "--help", data_dir=False)
        assert result.exit_code == 0, words
        assert "Example: lotcontrol " in result.output, words
        assert f"lotcontrol {' '.join(words)}" in readme, f"README.md and docs/ do not document `lotcontrol {' '.join(words)}`"


def test_identify_on_many_photos_uses_every_core_and_keeps_the_order(enrolled, run, tmp_path, monkeypatch):
    """The same report, in the order given, whether the photos are read in one process or several."""
    import json

    import lotcontrol.enroll as enroll_module

    pools = []
    real = enroll_module.in_order
    monkeypatch.setattr(enroll_module, "in_order", lambda f, jobs, workers: (pools.append(workers), real(f, jobs, workers))[1])

    from .conftest import FACES

    photos = sorted(FACES.glob("*/*.jpg"))[:12]
    (tmp_path / "empty.jpg").write_bytes(b"")
    photos.append(tmp_path / "empty.jpg")  # one that cannot be read, reported in its place
    serial = tmp_path / "one.toml"
    serial.write_text("[enroll]\nworkers = 1\n")
    parallel = tmp_path / "two.toml"
    parallel.write_text("[enroll]\nworkers = 2\n")
    one = run("--config", serial, "identify", "--json", *photos)
    two = run("--config", parallel, "identify", "--json", *photos)
    assert one.exit_code == two.exit_code == 1  # the missing photo
    assert json.loads(one.output.split("Error:")[0]) == json.loads(two.output.split("Error:")[0])
    assert [r["photo"] for r in json.loads(two.output.split("Error:")[0])] == [str(p) for p in photos]
    assert pools == [1, 2]  # the second run really used two processes


def _models_loaded_by_the_worker(job):
    """In a worker of enroll.in_order: whether it had to load the face models itself."""
    from lotcontrol.vision import faces

    before = faces._face_recognition.cache_info().misses
    faces._face_recognition()
    return os.getpid(), faces._face_recognition.cache_info().misses - before


def test_face_work_in_several_processes_loads_the_models_once_before_the_workers_start():
    """enroll-folder and identify fork their workers with the face models loaded and checked (shared
    pages), instead of each worker reading and checking 130 MB of models again."""
    from lotcontrol.enroll import in_order
    from lotcontrol.vision import faces

    faces._face_recognition.cache_clear()  # as in a command that has not loaded them yet
    found = list(in_order(_models_loaded_by_the_worker, list(range(6)), 2))
    assert {pid for pid, _ in found} - {os.getpid()}, "no worker process ran"
    assert [loaded for _, loaded in found] == [0] * 6


def test_a_resident_whose_only_photo_is_refused_is_not_added_and_the_error_says_why(run, tmp_path):
    photo = make("empty", tmp_path)
    result = run("enroll", "Bad Photo", photo)
    assert (result.exit_code, result.stderr) == (1, (
        f"rejected {photo}: the file is empty\n"
        f"Error: 'Bad Photo' was not added: its only photo was refused: {photo}: the file is empty\n"))


def test_a_copy_of_a_photo_on_file_is_a_duplicate_by_its_face_not_its_bytes(run, tmp_path):
    # the same photo as PNG, and resized: different bytes, the same face (distances 0.00 and about 0.1)
    from PIL import Image

    from .photos import PORTRAIT

    original = Image.open(PORTRAIT)
    png = tmp_path / "again.png"
    original.save(png)
    larger = tmp_path / "larger.jpg"
    original.resize((500, 500), Image.LANCZOS).save(larger, quality=95)
    assert run("enroll", "George", PORTRAIT).exit_code == 0
    result = run("enroll", "george", png, larger)
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert lines[0].startswith(f"skipped {png}: the same face as a photo already enrolled for 'George' (distance 0.0")
    assert lines[1].startswith(f"skipped {larger}: the same face as a photo already enrolled for 'George' (distance ")
    assert lines[2] == "Error: nothing was added to 'George': all 2 photos were refused (each is listed above with why)"
    assert json.loads(run("show", "George", "--json").output)["templates"] == 1
    # within one command too; and another resident's copy is theirs
    result = run("enroll", "Someone", png, larger)
    assert result.exit_code == 1 and "enrolled for 'George'" in result.stderr
    assert run("residents", "--json").output.count('"name"') == 1


def test_two_shots_of_one_press_event_are_two_photos_not_a_copy(run):
    """Different photos of one resident, 0.185 apart (faces-lot, which enroll.duplicate_distance was not
    chosen on): both are looks at the resident, and a limit of 0.2 took the second for a copy."""
    first, second = (need(FACES_LOT / "residents" / "Arminio_Fraga" / f"Arminio_Fraga_{n:04d}.jpg") for n in (3, 4))
    result = run("enroll", "Arminio Fraga", first, second)
    assert result.exit_code == 0, result.output
    assert json.loads(run("show", "Arminio Fraga", "--json").output)["templates"] == 2


def test_two_people_are_not_enrolled_as_one_unless_staff_confirm(run):
    from lotcontrol.config import parse_config
    from lotcontrol.vision.matcher import SamePerson

    laura, hugo = lfw("Laura_Bush", 1)[0], lfw("Hugo_Chavez", 1)[0]  # 0.81 apart in dlib, 0.70 in faceres
    result = run("enroll", "Mixed", laura, hugo)
    assert result.exit_code == 1
    rule = SamePerson(0.6, parse_config({}).vision.encoder)  # the default space, at its own limit
    said = re.match(rf"rejected {re.escape(str(hugo))}: its face is (0\.\d\d) from", result.stderr)
    assert said and float(said[1]) > rule.limit + 0.05
    apart = said[1]
    reason = f"its face is {apart} from {laura}, more than {rule.described}: not the same person?"
    assert result.stderr == (
        f"rejected {hugo}: {reason}\n"
        f"Error: 'Mixed' was not added: the photos do not show one person: {hugo}: {reason} Check them: enroll "
        "each person under their own name, or run again with --confirm-same-person if they are one person\n")
    assert run("residents", "--json").output == "[]\n" and run("events", "--json").output == "[]\n"
    check = json.loads(run("residents", "check", "--json").output)
    assert check["not_one_person"] == []

    confirmed = run("enroll", "Mixed", laura, hugo, "--confirm-same-person")
    assert confirmed.exit_code == 0, confirmed.output
    assert "confirmed by staff as one person: " + str(hugo) in confirmed.stderr
    event = json.loads(run("events", "--json", "--type", "resident.same_person_confirmed").output)[-1]
    assert (event["resident"], event["details"]) == ("Mixed", {"photos": [str(hugo)], "limit": 0.6})
    check = json.loads(run("residents", "check", "--json").output)
    assert check["not_one_person"] == [{"resident": "Mixed", "distance": pytest.approx(float(apart), abs=0.01)}]
    assert f"two people? 'Mixed': a template is {apart} from their first ones" in run("residents", "check").output


def test_a_photo_far_from_a_residents_templates_is_not_added_to_them(enrolled, run):
    stranger = lfw("Meryl_Streep", 1)[0]
    result = run("enroll", "tony_blair", stranger)
    assert result.exit_code == 1
    assert result.stderr.startswith(
        f"rejected {stranger}: its face is 0.")
    assert "from the templates on file for 'Tony_Blair', more than enroll.camera_same_person = 0.6" in result.stderr
    assert "Error: nothing was added to 'Tony_Blair': the photos do not show one person" in result.stderr
    assert json.loads(run("show", "Tony_Blair", "--json").output)["templates"] == 3
    assert json.loads(run("residents", "check", "--json").output)["not_one_person"] == []


def test_enroll_puts_a_new_resident_in_access_groups_with_their_own_anti_passback(run, tmp_path):
    config = tmp_path / "groups.toml"
    config.write_text('[access.groups.day]\nwindows = ["mon-fri 06:00-23:00"]\n')
    result = run("--config", config, "enroll", "Naomi Watts", *lfw("Naomi_Watts", 1), "--groups", "day",
                 "--antipassback", "enforce")
    assert result.exit_code == 0, result.output
    shown = json.loads(run("show", "Naomi Watts", "--json").output)
    assert (shown["groups"], shown["antipassback"]) == (["day"], "enforce")
