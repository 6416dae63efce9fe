"""Staff commands against a database another process holds: reading commands open it read-only and
never wait for a writer; a lock they cannot pass is a one-line error naming the file, exit 1;
`status` shows the controller's live state whatever the database does."""

import contextlib
import json
import sqlite3

import pytest
import sqlite_utils

from lotcontrol.config import parse_config, prepare_data_dir
from lotcontrol.sim.pins import simulated_factory
from lotcontrol.store import DB_NAME, MIGRATIONS, SCHEMA_VERSION, Store

from .lots import running_lot

#: Every command that only reads the lot's database (identify is added with a photo file).
READING = [["events"], ["events", "verify"], ["residents"], ["residents", "check"], ["show", "Anna"],
           ["export", "Anna"], ["charging", "report"]]


@pytest.fixture
def database(data_dir):
    with Store.in_dir(prepare_data_dir(data_dir)) as store:
        anna = store.add_resident("Anna")
        store.log_event("resident.added", anna.id)
    return data_dir / DB_NAME


@pytest.fixture
def reading(tmp_path):
    photo = tmp_path / "visitor.jpg"
    photo.write_bytes(b"not read: the database is opened first")
    return [*READING, ["identify", photo]]


@pytest.fixture
def short_timeouts(monkeypatch):
    """Locks are waited for 0.2 s, not 2 or 10: the same code, a shorter test."""
    monkeypatch.setattr("lotcontrol.cli.READ_TIMEOUT", 0.2)
    monkeypatch.setattr("lotcontrol.cli.WRITE_TIMEOUT", 0.2)


@contextlib.contextmanager
def held(path, *, exclusive_mode=False):
    """Another process's write transaction, open for as long as the block runs: ``BEGIN EXCLUSIVE``
    as a sqlite3 shell takes it (in WAL mode readers still read), or with ``locking_mode=EXCLUSIVE``,
    which shuts readers out too."""
    conn = sqlite3.connect(path, isolation_level=None, timeout=0)
    if exclusive_mode:
        conn.execute("PRAGMA locking_mode=EXCLUSIVE")
    conn.execute("BEGIN EXCLUSIVE")
    conn.execute("INSERT INTO events (time, type, details) VALUES ('2026-12-01', 'test.held', '{}')")
    try:
        yield
    finally:
        conn.execute("ROLLBACK")
        conn.close()


def locked_error(path, seconds):
    return f"Error: database {path} is locked by another process (waited {seconds} s): try again in a moment"


def test_reading_commands_answer_while_another_process_writes(run, database, reading):
    """The issue's case: a writer holds BEGIN EXCLUSIVE; every reading command answers at once with
    what is committed (the old code migrated in BEGIN IMMEDIATE on every open: 30 s, then an error)."""
    with held(database):
        for command in reading:
            result = run(*command)
            if command[0] == "identify":  # the database read, then the photo: not one
                assert result.output.endswith("Error: 1 of 1 photo(s) could not be read\n"), result.output
            else:
                assert (result.exit_code, "Error" in result.output) == (0, False), (command, result.output)
        assert "Anna" in run("residents").output
        assert "resident.added" in run("events").output and "test.held" not in run("events").output
        assert run("events", "verify").output == "1 event(s), hash chain intact\n"


def test_a_lock_readers_cannot_pass_is_one_clear_line(run, database, reading, short_timeouts):
    with held(database, exclusive_mode=True):
        for command in reading:
            result = run(*command)
            assert result.exit_code == 1, command
            assert result.output.startswith(locked_error(database, 0.2)), (command, result.output)
            assert result.output.count("\n") == 1 and "fuser" in result.output, command


def test_a_writing_command_says_the_database_is_locked(run, database, short_timeouts):
    with held(database):
        result = run("suspend", "Anna")
    assert result.exit_code == 1 and result.output.startswith(locked_error(database, 0.2)), result.output
    with Store(database) as store:
        assert store.resident("Anna").status == "active"  # nothing changed
    assert run("suspend", "Anna").output == "suspended 'Anna'\n"


def locked(*args, **kwargs):
    raise sqlite3.OperationalError("database is locked")


def test_a_lock_met_after_the_open_is_the_same_clear_error(run, database, monkeypatch):
    monkeypatch.setattr(Store, "set_status", locked)
    result = run("suspend", "Anna")
    assert (result.exit_code, result.output.startswith(locked_error(database, 10))) == (1, True), result.output


def test_the_timeouts_are_short_and_the_controller_keeps_its_own():
    from lotcontrol import cli, store

    assert (cli.READ_TIMEOUT, cli.WRITE_TIMEOUT, store.BUSY_TIMEOUT) == (2.0, 10.0, 30.0)


def test_reading_creates_and_migrates_nothing(run, data_dir, tmp_path):
    mistyped = tmp_path / "no" / "such" / "dir"
    for command in (["residents"], ["events"], ["status"]):
        result = run("--data-dir", str(mistyped), *command, data_dir=False)
        assert (result.exit_code, not (tmp_path / "no").exists()) == (1, True), command
        assert result.output.startswith(f"Error: data directory {mistyped} does not exist"), command
    hub = run("--hub", str(mistyped), "residents", data_dir=False)
    assert hub.exit_code == 1 and "does not exist" in hub.output and not (tmp_path / "no").exists()
    prepare_data_dir(data_dir)
    result = run("residents")
    assert result.exit_code == 1
    assert result.output.startswith(f"Error: database {data_dir / DB_NAME} does not exist yet")
    assert not (data_dir / DB_NAME).exists()
    with sqlite_utils.Database(data_dir / DB_NAME) as older:  # as the previous lotcontrol left it
        for migration in MIGRATIONS[:-1]:
            migration(older)
        older.execute(f"PRAGMA user_version = {SCHEMA_VERSION - 1}")
    (data_dir / DB_NAME).chmod(0o600)
    result = run("events")
    assert result.exit_code == 1 and f"older than this lotcontrol's ({SCHEMA_VERSION})" in result.output
    with sqlite3.connect(data_dir / DB_NAME) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION - 1
    assert run("suspend", "Ghost").exit_code == 1  # a command that writes migrates it, as before
    assert run("residents").output == "no residents on file\n"


def test_status_shows_the_live_state_while_the_database_is_locked(run, data_dir, database, monkeypatch):
    factory = simulated_factory()
    try:
        with running_lot(parse_config({}), data_dir, factory) as lot:
            assert lot.controller.writer.flush()
            with held(database):  # the case: the controller's own writer can hold it so
                readable = run("status")
            # A lock readers cannot pass (the controller's open connection keeps a test from taking
            # one, so the read meets it as SQLite would report it)
            with monkeypatch.context() as patch:
                patch.setattr(Store, "events", locked)
                result = run("status")
                as_json = run("status", "--json")
    finally:
        factory.reset()
    assert readable.exit_code == 0 and "resident.added" in readable.output, readable.output
    assert result.exit_code == 0, result.output
    assert result.output.startswith("gate   SHUT\n") and "vision not running\n" in result.output
    assert f"events unavailable: {locked_error(database, 2)[len('Error: '):]}" in result.output
    assert as_json.exit_code == 0
    status = json.loads(as_json.output)
    assert (status["gate"], status["last_events"]) == ("shut", None)
    assert status["database_error"].startswith(f"database {database} is locked by another process")
