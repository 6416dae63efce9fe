import pytest
from gpiozero.pins.mock import MockFactory

from lotcontrol.config import Config, prepare_data_dir
from lotcontrol.store import Store

from .lots import running_lot


def test_run_without_gpio_says_to_simulate_and_never_falls_back(run, tmp_path):
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"")
    result = run("run", "--camera", clip)
    assert result.exit_code == 1
    assert result.output.startswith("Error: no GPIO on this machine (LGPIOFactory: ")
    assert result.output.endswith("On a Raspberry Pi run `make install EXTRAS=pi`; anywhere else run with --simulate\n")


def test_run_with_a_camera_source_that_does_not_exist(run, tmp_path):
    result = run("run", "--simulate", "--camera", tmp_path / "nope.mp4")
    assert (result.exit_code, result.output) == (
        1, f"Error: camera source '{tmp_path}/nope.mp4' is neither a device, a stream URL nor a video file\n")


def test_gate_open_with_no_controller_running(run, data_dir):
    from lotcontrol.config import prepare_data_dir

    result = run("gate", "open")  # a data directory nothing ever ran on: a mistyped path, likely
    assert (result.exit_code, not data_dir.exists()) == (1, True)
    assert result.output.startswith(f"Error: data directory {data_dir} does not exist: is the path right?")
    prepare_data_dir(data_dir)
    result = run("gate", "open")
    assert result.exit_code == 1
    assert result.output == (f"Error: the controller is not running on {data_dir} (no answer on "
                             f"{data_dir}/control.sock); start it with `lotcontrol run`\n")


def test_gate_open_reaches_the_running_controller(run, data_dir):
    factory = MockFactory()
    with running_lot(Config(), prepare_data_dir(data_dir), factory):
        result = run("gate", "open", "--seconds", "30")
        assert (result.exit_code, result.output) == (0, "gate open for 30 s\n")
        assert factory.pin(17).state == 1
    assert [s.state for s in factory.pin(17).states] == [False, True, False]
    with Store.in_dir(data_dir) as store:
        assert [e.type for e in store.events()] == ["gate.manual_open"]
    assert not (data_dir / "control.sock").exists()


def test_run_refuses_a_config_file_others_can_change(run, tmp_path):
    import os

    path = tmp_path / "lot.toml"
    path.write_text("[gate]\nopen_seconds = 3\n")
    os.chmod(path, 0o666)
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"")
    result = run("--config", path, "run", "--simulate", "--camera", clip)
    assert (result.exit_code, result.output) == (1, (
        f"Error: config file {path} can be changed by other users (mode 666); it says which command the "
        f"controller runs: run `chmod 600 {path}`\n"))


def test_run_refuses_a_config_with_secrets_others_can_read(run, tmp_path):
    import os

    path = tmp_path / "lot.toml"
    path.write_text('[camera]\nsource = "rtsp://admin:secret@192.0.2.7/stream"\n')
    os.chmod(path, 0o644)
    result = run("--config", path, "run", "--simulate")
    assert (result.exit_code, result.output) == (1, (
        f"Error: config file {path} can be read by other users (mode 644) and holds a camera password: "
        f"run `chmod 600 {path}`\n"))


@pytest.mark.parametrize("command", [["run", "--simulate"], ["hub"]])
def test_run_and_hub_refuse_a_broker_password_in_a_config_others_can_read(run, tmp_path, command):
    import os

    path = tmp_path / "lot.toml"
    path.write_text('[mqtt]\nenabled = true\nlot = "A"\nusername = "lot-A"\npassword = "A-secret"\n'
                    '[mqtt.tls]\nca_file = "/etc/ssl/certs/ca-certificates.crt"\n')
    os.chmod(path, 0o640)
    (tmp_path / "hub").mkdir(mode=0o700)
    result = run("--config", path, *(["--hub", tmp_path / "hub"] if command == ["hub"] else []), *command,
                 data_dir=command != ["hub"])
    assert (result.exit_code, result.output) == (1, (
        f"Error: config file {path} can be read by other users (mode 640) and holds the broker password "
        f"(mqtt.password): run `chmod 600 {path}`, or move it to mqtt.password_file\n"))


def test_logging_never_waits_on_a_stalled_stdout(monkeypatch):
    """Every event is logged from the safety loop: a stdout that blocks (journald stalled) must not
    hold it. The run command's handler only queues; a writer thread does the I/O."""
    import logging
    import threading

    from lotcontrol.cli import run as run_module

    stalled, release = threading.Event(), threading.Event()

    class StalledStdout:
        def write(self, text):
            stalled.set()
            release.wait(10)

        def flush(self):
            pass

    monkeypatch.setattr(run_module.sys, "stdout", StalledStdout())
    monkeypatch.setattr(run_module, "LOG_BACKLOG", 3)
    listener = run_module._logging_to_stdout()
    log = logging.getLogger("lotcontrol")
    try:
        log.info("first")  # the writer thread blocks in write()
        assert stalled.wait(5)
        for i in range(10):
            log.info("event %d", i)  # returns at once; past the backlog they are dropped
        assert log.handlers[0].dropped >= 7
    finally:
        release.set()
        listener.stop()
        log.handlers[:] = []
        log.propagate = True
