"""What the vision workers' fork server loads once (supervisor.py): the worker's code and the face
models, verified, so that every worker forked from it (the first, and each one restarted after a
crash or a stall) starts with them in memory instead of reading and checking 130 MB of models again:
4-5 CPU-s on a PC, far more on a Pi, during which face entry is shut.

The server first pins BLAS/OpenMP to one thread (numpy reads it when it loads, below; the workers
inherit it) and lowers its priority as a worker does, so loading the models yields to the
controller's loop. Whatever fails here is left for each worker to meet again and report as it always
did (a model missing or damaged: ``vision.refused``); the fork server itself must never fail to start.
"""

import logging
import os

from .supervisor import ONE_THREAD

os.environ.update(ONE_THREAD)

log = logging.getLogger(__name__)

try:
    from .worker import worker_entry, yield_cores  # noqa: F401  (its imports, once)

    yield_cores()
    from .pipeline import warm_up

    warm_up()
except Exception as exc:  # each worker loads and checks the models itself and reports what fails
    log.debug("vision preload: %s (each worker loads its models itself)", exc)
