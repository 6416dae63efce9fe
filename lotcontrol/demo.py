"""``make demo``: the gate and the staff workflow on a machine with no Pi and no camera.

scikit-image ships NASA's portrait of astronaut Eileen Collins (public domain). The demo enrolls her
from it, then films a short scene: the empty gate, Eileen walking up and leaving, then a stranger (the
same photo with the nose and chin reshaped until dlib no longer takes it for her) walking up. The real
`lotcontrol run --simulate` watches the scene at its own frame rate and prints its decisions and the
gate relay's pin changes as they happen. Everything lives in a throw-away directory.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

FPS = 15
FRAME = (640, 480)
FACE_CROP = (120, 0, 320, 260)  # her face and hair, none of the helmet's patch (a second "face")


def portrait() -> Path:
    import skimage

    return Path(skimage.__file__).parent / "data" / "astronaut.png"


def altered(rgb: np.ndarray) -> np.ndarray:
    """Her face with a longer chin, a larger nose, narrower eyes, heavier brows and another skin tone:
    a stranger in every encoder space (from her template: dlib 0.83, faceres 0.60, fused 0.68; chin
    and nose alone were 0.65 in dlib but 0.49 in faceres, which sees through a reshaped face)."""
    out = rgb.copy()
    face = rgb[60:190, 160:280]
    lower = cv2.resize(face[65:], (120, 91))
    out[60:216, 160:280] = np.vstack([face[:65], lower])
    nose = out[110:165, 195:245]
    big = cv2.resize(nose, None, fx=1.5, fy=1.5)
    out[110:165, 195:245] = big[13:68, 12:62]
    eyes = out[100:130, 165:275].copy()
    out[100:130, 165:275] = cv2.resize(cv2.resize(eyes, (110, 18)), (110, 30), interpolation=cv2.INTER_NEAREST)
    out[92:102, 170:270] = (out[92:102, 170:270] * 0.35).astype(np.uint8)
    skin = out[60:216, 160:280].astype(np.float32) * np.float32([0.8, 1.0, 1.15])
    out[60:216, 160:280] = np.clip(skin, 0, 255).astype(np.uint8)
    return out


def background() -> np.ndarray:
    ramp = np.linspace(90, 150, FRAME[1], dtype=np.uint8)[:, None]
    return np.dstack([np.repeat(ramp, FRAME[0], axis=1)] * 3)


def walk_up(face: np.ndarray, seconds: float, start: float, end: float) -> list[np.ndarray]:
    """Frames of ``face`` growing from ``start`` to ``end`` times its size, centred: someone coming closer."""
    frames = []
    count = int(seconds * FPS)
    for i in range(count):
        scale = start + (end - start) * min(1.0, i / (0.6 * count))
        person = cv2.resize(face, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        frame = background()
        h, w = person.shape[:2]
        top, left = max(0, FRAME[1] - h), (FRAME[0] - w) // 2
        frame[top:top + h, left:left + w] = person[: FRAME[1] - top, : FRAME[0] - left]
        frames.append(frame)
    return frames


def film(path: Path) -> None:
    rgb = np.asarray(Image.open(portrait()).convert("RGB"))
    x0, y0, x1, y1 = FACE_CROP
    eileen = rgb[y0:y1, x0:x1]
    stranger = altered(rgb)[y0:y1, x0:x1]
    empty = [background()] * FPS
    scene = empty + walk_up(eileen, 3.5, 1.0, 1.6) + empty * 2 + walk_up(stranger, 3.5, 1.0, 1.6) + empty
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, FRAME)
    for frame in scene:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()


def enrollment_photo(folder: Path) -> Path:
    path = folder / "eileen-collins.png"
    Image.open(portrait()).convert("RGB").crop((0, 0, 512, 320)).save(path)  # without the helmet patch
    return path


def lotcontrol(data_dir: Path, *args: str) -> None:
    shown = " ".join(shlex.quote(a) for a in ("lotcontrol", *args))
    print(f"\n$ {shown}", flush=True)
    subprocess.run([sys.executable, "-m", "lotcontrol", "--data-dir", str(data_dir), *args], check=False)


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="lotcontrol-demo-") as tmp:
        folder = Path(tmp)
        data_dir = folder / "data"
        scene = folder / "gate-camera.mp4"
        film(scene)
        print(f"lotcontrol demo: a throw-away data directory in {data_dir}")
        print(f"The scene ({scene.name}, 12 s): empty gate, Eileen Collins walks up and leaves, a stranger walks up.")
        lotcontrol(data_dir, "enroll", "Eileen Collins", str(enrollment_photo(folder)), "--unit", "1A")
        lotcontrol(data_dir, "run", "--simulate", "--camera", str(scene))
        lotcontrol(data_dir, "events", "--type", "access")
        lotcontrol(data_dir, "remove", "Eileen Collins", "--yes")
        print("\nThe data directory is deleted now; nothing of this demo stays on disk.")


if __name__ == "__main__":
    main()
