"""The web console's process, as ``lotcontrol web`` starts it (it checks the settings and the users,
then replaces itself with this lean process: none of the command line's modules, such as OpenCV,
is loaded into the console). ``python -m lotcontrol.web --data-dir DIR [--config FILE]``."""

from __future__ import annotations

import argparse
from pathlib import Path


def serve(config_path: str | None, data_dir: Path) -> None:
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
