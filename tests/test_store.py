import datetime as dt
import sqlite3
import stat

import numpy as np
import pytest

from lotcontrol.errors import InvalidName, InvalidValue, ResidentExists, ResidentNotFound, StoreError
from lotcontrol.store import SCHEMA_VERSION, Store, Template, name_key, normalize_name
from lotcontrol.vision import encoders


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "lot.db") as store:
        yield store


def template(seed: int, sha: str | None = None) -> Template:
    encoding = np.random.default_rng(seed).normal(size=128).astype(np.float32)
    return Template(encoding, sha or f"{seed:064x}", 120, 80.0)


def test_new_database_is_private_in_wal_mode_at_the_current_schema(tmp_path):
    with Store(tmp_path / "lot.db") as store:
        assert store.db.journal_mode == "wal"
        assert store.db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert store.db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert stat.S_IMODE((tmp_path / "lot.db").stat().st_mode) == 0o600


def test_reopening_keeps_everything(tmp_path):
    with Store(tmp_path / "lot.db") as store:
        anna = store.add_resident("Anna", unit="4B")
        store.add_templates(anna.id, [Template(np.full(128, 0.25, np.float32), "ab" * 32, 120, 80.0)])
        store.log_event("resident.enrolled", anna.id, {"templates_added": 1})
        before = store.export("Anna")
    with Store(tmp_path / "lot.db") as store:
        assert store.export("Anna") == before
        assert [(r.name, r.unit, r.templates) for r in store.residents()] == [("Anna", "4B", 1)]
        assert store.verify_events() == (1, None)


def test_a_database_from_a_newer_release_is_refused(tmp_path):
    with Store(tmp_path / "lot.db") as store:
        store.db.execute("PRAGMA user_version = 99")
    with pytest.raises(StoreError, match="schema version 99, newer than this lotcontrol"):
        Store(tmp_path / "lot.db")


def test_a_file_that_is_not_a_database_is_refused(tmp_path):
    (tmp_path / "lot.db").write_text("hello" * 1000)
    (tmp_path / "lot.db").chmod(0o600)
    with pytest.raises(StoreError, match=f"database {tmp_path}/lot.db cannot be opened: file is not a database"):
        Store(tmp_path / "lot.db")


@pytest.mark.parametrize("raw, stored", [
    ("  Anna   Berg ", "Anna Berg"),
    ("Zoë", "Zoë"),
    ("Zoe\u0308", "Zoë"),  # decomposed form is stored composed
    ("李小龙", "李小龙"),
])
def test_names_are_normalized(raw, stored):
    assert normalize_name(raw) == stored


@pytest.mark.parametrize("raw, message", [
    ("", "a resident's name cannot be empty"),
    ("   ", "a resident's name cannot be empty"),
    ("x" * 101, "a resident's name can have at most 100 characters, not 101"),
    ("a/b", "a resident's name cannot contain '/': 'a/b'"),
    ("a\\b", "a resident's name cannot contain '\\\\': 'a\\\\b'"),
    ("a\x07b", "a resident's name cannot contain the invisible or control character U+0007 (unnamed): 'a\\x07b'"),
    ("Anna\u200fBerg", "a resident's name cannot contain the invisible or control character U+200F (RIGHT-TO-LEFT MARK): 'Anna\\u200fBerg'"),
])
def test_bad_names_are_refused_with_the_reason(raw, message):
    with pytest.raises(InvalidName) as error:
        normalize_name(raw)
    assert str(error.value) == message


def test_names_that_differ_only_in_unicode_form_or_case_are_one_resident(store):
    store.add_resident("Zo\u00eb")
    with pytest.raises(ResidentExists, match="resident 'Zoë' is already on file"):
        store.add_resident("ZOE\u0308")
    assert store.resident("zoe\u0308").name == "Zoë"
    assert name_key("ﬁona") == name_key("FIONA")


def test_resident_fields_are_checked(store):
    with pytest.raises(InvalidValue, match="phone 'call me' is not a phone number"):
        store.add_resident("A", phone="call me")
    with pytest.raises(InvalidValue, match="valid until '2026-13-01' is not a date"):
        store.add_resident("A", valid_until="2026-13-01")
    with pytest.raises(InvalidValue, match="valid from 2026-05-01 is after valid until 2026-04-01"):
        store.add_resident("A", valid_from="2026-05-01", valid_until="2026-04-01")
    assert store.residents() == []


def test_refusal_reasons_follow_status_and_dates(store):
    anna = store.add_resident("Anna", valid_from="2026-01-01", valid_until="2026-12-31")
    assert anna.refusal(dt.date(2026, 6, 1)) is None
    assert anna.refusal(dt.date(2025, 12, 31)) == "not_yet_valid"
    assert anna.refusal(dt.date(2027, 1, 1)) == "expired"
    assert store.set_status("Anna", "suspended").refusal(dt.date(2026, 6, 1)) == "suspended"


def test_templates_round_trip_as_a_matrix_grouped_by_resident(store):
    a, b = store.add_resident("A"), store.add_resident("B")
    store.add_templates(b.id, [template(1)])
    store.add_templates(a.id, [template(2), template(3)])
    matrix, ids = store.templates_matrix()
    assert ids.tolist() == [a.id, a.id, b.id]
    assert np.array_equal(matrix[2], template(1).encoding)
    assert store.resident("A").templates == 2


def test_the_same_photo_cannot_be_enrolled_twice(store):
    a = store.add_resident("A")
    store.add_templates(a.id, [template(1, "ab" * 32)])
    assert store.photo_owner("ab" * 32) == "A"
    with pytest.raises(sqlite3.IntegrityError):
        store.add_templates(a.id, [template(2, "ab" * 32)])


def test_gallery_version_changes_when_templates_change(store):
    a = store.add_resident("A")
    before = store.gallery_version()
    store.add_templates(a.id, [template(1)])
    assert store.gallery_version() > before
    before = store.gallery_version()
    store.remove("A")
    assert store.gallery_version() > before


def test_remove_erases_templates_and_keeps_events_without_the_name(store):
    a = store.add_resident("Anna")
    store.add_templates(a.id, [template(1)])
    store.log_event("access.granted", a.id, {"distance": 0.3})
    store.remove("Anna")
    assert store.templates_matrix()[0].shape == (0, 128)
    assert store.db.execute("SELECT count(*) FROM residents").fetchone()[0] == 0
    [event] = store.events()
    assert (event.type, event.resident, event.details) == ("access.granted", None, {"distance": 0.3})
    with pytest.raises(ResidentNotFound, match="no resident named 'Anna'"):
        store.remove("Anna")


def test_a_failed_transaction_leaves_nothing(store):
    with pytest.raises(RuntimeError):
        with store.transaction():
            a = store.add_resident("Half")
            store.add_templates(a.id, [template(1)])
            raise RuntimeError("power cut")
    assert store.residents() == []
    assert len(store.templates_matrix()[1]) == 0


def test_rename_refuses_a_name_in_use(store):
    store.add_resident("A")
    store.add_resident("B")
    with pytest.raises(ResidentExists, match="resident 'B' is already on file"):
        store.rename("A", "b")
    assert store.rename("A", "a").name == "a"  # a change of case alone is allowed


def test_events_filter_by_time_and_dotted_type(tmp_path):
    times = iter(dt.datetime(2026, 1, 1, h, tzinfo=dt.timezone.utc) for h in range(10))
    with Store(tmp_path / "lot.db", clock=lambda: next(times)) as store:
        store.log_event("access.granted")
        store.log_event("access.denied")
        store.log_event("accessory.x")
        store.log_event("fire.alarm")
        assert [e.type for e in store.events(type="access")] == ["access.granted", "access.denied"]
        assert [e.type for e in store.events(type="access.denied")] == ["access.denied"]
        assert [e.type for e in store.events(since="2026-01-01T02:00:00.000+00:00")] == ["accessory.x", "fire.alarm"]
        assert [e.time for e in store.events()][0] == "2026-01-01T00:00:00.000+00:00"


def test_the_event_log_is_a_hash_chain(store):
    anna = store.add_resident("Anna")
    for i in range(5):
        store.log_event("access.granted", anna.id, {"n": i})
    assert store.verify_events() == (5, None)
    store.remove("Anna")  # erasure keeps every link valid
    assert store.verify_events() == (5, None)
    store.db.execute("UPDATE events SET details = '{\"n\": 9}' WHERE id = 3")
    count, broken = store.verify_events()
    assert count == 2 and broken.startswith("event 3 (") and "does not match its hash" in broken


def test_a_removed_event_breaks_the_chain(store):
    for i in range(4):
        store.log_event("gate.manual_open", None, {"n": i})
    assert store.verify_events() == (4, None)
    store.db.execute("DELETE FROM events WHERE id = 2")
    count, broken = store.verify_events()
    assert count == 1 and broken.startswith("event 3 (")


def test_a_version_1_database_is_migrated_with_its_events_chained(tmp_path):
    import sqlite_utils

    from lotcontrol.store import MIGRATIONS

    path = tmp_path / "old.db"
    db = sqlite_utils.Database(path)
    MIGRATIONS[0](db)
    db.execute("PRAGMA user_version = 1")
    db["residents"].insert({"name": "Anna", "name_key": "anna", "status": "active", "created": "x", "updated": "x"})
    db["events"].insert({"time": "2026-01-01T00:00:00.000+00:00", "type": "resident.enrolled", "resident_id": 1, "details": "{}"})
    db.conn.commit()
    db.close()
    path.chmod(0o600)
    with Store(path) as store:
        assert store.verify_events() == (1, None)
        store.log_event("resident.suspended", 1)
        assert store.verify_events() == (2, None)
        assert store.events()[0].resident == "Anna"


def test_events_verify_command(enrolled, run):
    assert run("events", "verify").output == "3 event(s), hash chain intact\n"
    with Store.in_dir(enrolled) as store:
        store.db.execute("UPDATE events SET type = 'resident.removed' WHERE id = 2")
    result = run("events", "verify")
    assert result.exit_code == 1
    assert result.output.startswith("Error: 1 event(s) check out, then: event 2 (")


def test_a_database_others_can_read_is_refused_with_the_fix(tmp_path):
    import os

    Store(tmp_path / "lot.db").close()
    os.chmod(tmp_path / "lot.db", 0o644)
    with pytest.raises(StoreError, match=r"is open to other users \(mode 644\).*chmod 600"):
        Store(tmp_path / "lot.db")


def test_export_gives_everything_stored_about_a_resident(store):
    anna = store.add_resident("Anna", unit="4B")
    store.add_templates(anna.id, [template(1, "ab" * 32)])
    store.log_event("access.granted", anna.id, {"distance": 0.3})
    store.log_event("access.granted", None, {"distance": 0.4})
    exported = store.export("anna")
    assert exported["resident"]["name"] == "Anna" and exported["resident"]["unit"] == "4B"
    [t] = exported["templates"]
    assert t["photo_sha256"] == "ab" * 32 and list(t["embeddings"]) == ["dlib"]
    assert t["embeddings"]["dlib"]["version"] == "dlib_face_recognition_resnet_model_v1"
    assert len(t["embeddings"]["dlib"]["vector"]) == 128
    assert exported["events"] == [{"time": store.events()[0].time, "type": "access.granted", "details": {"distance": 0.3}}]


def test_pruning_old_events_keeps_the_rest_verifiable(tmp_path):
    times = iter(dt.datetime(2026, 1, d, tzinfo=dt.timezone.utc) for d in range(1, 20))
    with Store(tmp_path / "lot.db", clock=lambda: next(times)) as store:
        for i in range(6):
            store.log_event("gate.manual_open", None, {"n": i})
        assert store.prune_events("2026-01-04T00:00:00.000+00:00") == 3
        assert [e.details["n"] for e in store.events()] == [3, 4, 5]
        assert store.verify_events() == (3, None)
        store.db.execute("UPDATE events SET details = '{\"n\": 7}' WHERE id = 5")
        assert store.verify_events()[0] == 1


# --- embeddings per encoder (issue 18) ---


def unit_vector(seed: int, dim: int = 1024) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=dim).astype(np.float32)
    return v / np.linalg.norm(v)


def both(seed: int, sha: str | None = None) -> Template:
    return Template({"dlib": template(seed).encoding, "faceres": unit_vector(seed)}, sha or f"{seed:064x}", 120, 80.0)


def test_a_database_from_before_encoders_keeps_its_dlib_templates(tmp_path):
    import sqlite_utils

    from lotcontrol.store import MIGRATIONS, _migrate_embeddings

    path = tmp_path / "old.db"
    db = sqlite_utils.Database(path)
    before = MIGRATIONS.index(_migrate_embeddings)  # the database as the version before encoders left it
    for migration in MIGRATIONS[:before]:
        migration(db)
    db.execute(f"PRAGMA user_version = {before}")
    db["residents"].insert({"name": "Anna", "name_key": "anna", "status": "active", "created": "x", "updated": "x"})
    old = template(5).encoding
    db["templates"].insert({"resident_id": 1, "encoding": old.tobytes(), "photo_sha256": "cd" * 32,
                            "face_px": 90, "quality": 50.0, "added": "x"})
    db.conn.commit()
    db.close()
    path.chmod(0o600)
    with Store(path) as store:
        [t] = store.templates_of(1)
        assert t.photo_sha256 == "cd" * 32 and t.face_px == 90 and list(t.embeddings) == ["dlib"]
        assert t.embeddings["dlib"].version == "dlib_face_recognition_resnet_model_v1"
        assert np.array_equal(t.encoding, old)
        matrix, ids = store.templates_matrix("dlib")
        assert np.array_equal(matrix, old[None]) and ids.tolist() == [1]
        assert store.templates_matrix("faceres")[0].shape == (0, encoders.space_dim("faceres"))
        assert store.lacking("faceres") == {1: (1, 1)}


def test_each_face_keeps_every_encoder_and_a_space_takes_the_faces_that_have_its_encoders(store):
    anna = store.add_resident("Anna")
    bert = store.add_resident("Bert")
    store.add_templates(anna.id, [both(1), template(2)])  # one face with both, one from before faceres
    store.add_templates(bert.id, [both(3)])
    [first, second] = store.templates_of(anna.id)
    assert set(first.embeddings) == {"dlib", "faceres"} and set(second.embeddings) == {"dlib"}
    assert np.array_equal(first.embeddings["faceres"].vector, unit_vector(1))
    matrix, ids = store.templates_matrix("dlib")
    assert matrix.shape == (3, 128) and ids.tolist() == [anna.id, anna.id, bert.id]
    matrix, ids = store.templates_matrix("faceres")
    assert matrix.shape == (2, encoders.space_dim("faceres")) and ids.tolist() == [anna.id, bert.id]
    matrix, ids = store.templates_matrix("fused")
    assert matrix.shape == (2, encoders.space_dim("fused")) and ids.tolist() == [anna.id, bert.id]
    assert store.lacking("faceres") == {anna.id: (1, 2)}


def test_an_embedding_of_another_version_is_not_in_the_space(store):
    from lotcontrol.store import Embedding

    anna = store.add_resident("Anna")
    store.add_templates(anna.id, [Template({"dlib": template(1).encoding,
                                            "faceres": Embedding("human-models-2.0", unit_vector(1))}, "ab" * 32, 1, 1.0)])
    assert store.templates_matrix("faceres")[0].shape == (0, encoders.space_dim("faceres"))
    assert store.lacking("faceres") == {anna.id: (1, 1)}


def test_removing_a_resident_erases_every_embedding(store):
    anna = store.add_resident("Anna")
    store.add_templates(anna.id, [both(1), both(2)])
    store.remove("Anna")
    assert store.db.execute("SELECT count(*) FROM embeddings").fetchone()[0] == 0


def test_a_template_with_a_wrong_embedding_is_refused_whole(store):
    anna = store.add_resident("Anna")
    with pytest.raises(ValueError, match="faceres face template must be 1024"):
        store.add_templates(anna.id, [both(1), Template({"dlib": template(2).encoding, "faceres": np.zeros(512)},
                                                        "ef" * 32, 1, 1.0)])
    assert store.db.execute("SELECT count(*) FROM templates").fetchone()[0] == 0
    with pytest.raises(ValueError, match="needs dlib"):
        Template({"faceres": unit_vector(1)}, "ef" * 32, 1, 1.0)
    with pytest.raises(ValueError, match="unknown face encoder 'arcface'"):
        Template({"dlib": template(1).encoding, "arcface": unit_vector(1)}, "ef" * 32, 1, 1.0)


def test_sqlite_utils_is_imported_without_numpy_only_where_numpy_is_not_loaded(tmp_path):
    """The store hides numpy from sqlite-utils' import (the console needs none of its 17 MB), but only
    where numpy is not loaded yet: hiding a loaded numpy saves nothing, and another thread's `import
    numpy` meanwhile would fail."""
    import subprocess
    import sys
    from pathlib import Path

    check = ("import sys\n"
             "if sys.argv[1] == 'loaded':\n    import numpy\n"
             "import lotcontrol.store, sqlite_utils.db\n"
             "print(sorted(t.__module__ for t in sqlite_utils.db.COLUMN_TYPE_MAPPING if 'numpy' in getattr(t, '__module__', ''))[:1],"
             " 'numpy' in sys.modules)\n")
    root = Path(__file__).resolve().parents[1]
    for numpy_first, expected in (("loaded", "['numpy'] True"), ("not", "[] False")):
        out = subprocess.run([sys.executable, "-c", check, numpy_first], capture_output=True, text=True, timeout=120,
                             env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"}, cwd=root)
        assert out.stdout.strip() == expected, out.stdout + out.stderr
