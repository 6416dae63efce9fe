"""The web console's process, as ``lotcontrol web`` starts it (it checks the settings and the users,
then replaces itself with this lean process: none of the command line's modules, such as OpenCV,
is loaded into the console). ``python -m lotcontrol.web --data-dir DIR [--config FILE]``."""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
from pathlib import Path

M_MMAP_THRESHOLD, M_ARENA_MAX = -3, -8  # glibc's mallopt parameters (malloc.h)
MMAP_THRESHOLD = 1 << 20  # bytes: an allocation this large or larger gets pages of its own, returned when freed
ARENA_MAX = 2  # malloc arenas (glibc's default: 8 a core), shared by the request threads


def fixed_mmap_threshold() -> bool:
    """Each login's argon2id check takes 7 MiB (web/users.py) and frees it. glibc raises its mmap
    threshold to the size of a freed mmapped block, so from the second login on those 7 MiB came from
    the heap and stayed resident (bench.web: 71.4 MB before a second login, 79.3 MB after it; 73.5 MB
    with the threshold fixed). A fixed threshold keeps large blocks mapped and returned. The request
    threads share ARENA_MAX arenas instead of up to 16 of their own (bench.web --chromium: 72.4 MB
    with 20 Chromium pages open instead of 73.8 MB, twice each). Whether both were set (not glibc:
    nothing to do)."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        return bool(libc is not None and libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)
                    and libc.mallopt(M_ARENA_MAX, ARENA_MAX))
    except (OSError, AttributeError):
        return False


def serve(config_path: str | None, data_dir: Path) -> None:
    fixed_mmap_threshold()  # first: the imports' allocations are made under it too
    import uvicorn

    from ..config import load_config
    from .server import build

    config = load_config(config_path)
    tls = config.web.tls
    uvicorn.run(build(config, data_dir, config_path=config_path), host=config.web.host, port=config.web.port, log_level="warning",
                ssl_certfile=tls.cert_file if tls else None, ssl_keyfile=tls.key_file if tls else None,
                timeout_graceful_shutdown=2, proxy_headers=False, server_header=False)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m lotcontrol.web", description=__doc__.splitlines()[0])
    parser.add_argument("--config")
    parser.add_argument("--data-dir", required=True, type=Path)
    args = parser.parse_args()
    serve(args.config, args.data_dir)


if __name__ == "__main__":
    main()
