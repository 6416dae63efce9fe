"""The vision worker's supervisor starts each worker from one fork server that has loaded the worker's
code and the face models (vision/preload.py): a worker restarted after a crash or a stall does not
read and check them again."""

import queue
from pathlib import Path

from lotcontrol.config import Config, prepare_data_dir
from lotcontrol.messages import Heartbeat, WorkerGone
from lotcontrol.vision.supervisor import VisionWorker

WAIT = 300  # s: a failure guard only (a loaded machine); each wait ends on the message it waits for


def parent_of(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat[stat.rindex(")") + 2:].split()[1])


def test_a_restarted_worker_comes_from_the_fork_server_that_holds_the_models(tmp_path):
    heard: queue.Queue = queue.Queue()
    data = prepare_data_dir(tmp_path / "data")
    # a camera that is not there: the worker stays up, retrying it and sending heartbeats
    worker = VisionWorker(Config(), str(data), "/dev/video-none", deliver=heard.put)
    servers = []
    try:
        for generation in (1, 2):
            worker.start()
            while not isinstance(message := heard.get(timeout=WAIT), Heartbeat):
                assert not isinstance(message, WorkerGone), message
            server = parent_of(worker.pid)
            servers.append(server)
            assert b"forkserver" in Path(f"/proc/{server}/cmdline").read_bytes()
            # the server imported dlib and the worker's code before forking: the preload ran
            assert "_dlib_pybind11" in Path(f"/proc/{server}/maps").read_text()
            worker.kill()  # as the supervisor does to a stalled worker
            while not isinstance(message := heard.get(timeout=WAIT), WorkerGone):
                pass
            assert message.generation == generation
    finally:
        worker.stop()
    assert servers[0] == servers[1]  # one server: the second worker did not load anything again
