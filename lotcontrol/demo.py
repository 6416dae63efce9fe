"""``make demo``: the staff workflow on a throw-away data directory, with a public-domain photo.

scikit-image ships NASA's portrait of astronaut Eileen Collins (public domain). The demo enrolls her
from a crop of it, then asks `lotcontrol identify` about a smaller, mirrored copy and about the whole
portrait (where dlib also sees a "face" in her helmet's patch: it must come out as unknown). Each
step runs the real command line and prints what a staff member would see.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image, ImageOps


def portrait() -> Path:
    import skimage

    return Path(skimage.__file__).parent / "data" / "astronaut.png"


def sample_photos(folder: Path) -> dict[str, Path]:
    original = Image.open(portrait()).convert("RGB")
    enroll = folder / "eileen-collins.png"
    original.crop((0, 0, 512, 320)).save(enroll)  # her face only, not the helmet patch below
    gate = folder / "at-the-gate.jpg"
    small = original.crop((60, 0, 400, 300)).resize((238, 210))
    ImageOps.mirror(small).save(gate, quality=85)
    return {"enroll": enroll, "gate": gate, "whole": portrait()}


def lotcontrol(data_dir: Path, *args: str) -> None:
    shown = " ".join(shlex.quote(a) for a in ("lotcontrol", *args))
    print(f"\n$ {shown}", flush=True)
    subprocess.run([sys.executable, "-m", "lotcontrol", "--data-dir", str(data_dir), *args], check=False)


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="lotcontrol-demo-") as tmp:
        folder = Path(tmp)
        data_dir = folder / "data"
        photos = sample_photos(folder)
        print(f"lotcontrol demo: a throw-away data directory in {data_dir}")
        lotcontrol(data_dir, "enroll", "Eileen Collins", str(photos["enroll"]), "--unit", "1A")
        lotcontrol(data_dir, "residents")
        lotcontrol(data_dir, "identify", str(photos["gate"]), str(photos["whole"]))
        lotcontrol(data_dir, "suspend", "Eileen Collins")
        lotcontrol(data_dir, "events")
        lotcontrol(data_dir, "remove", "Eileen Collins", "--yes")
        print("\nThe data directory is deleted now; nothing of this demo stays on disk.")


if __name__ == "__main__":
    main()
