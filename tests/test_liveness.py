"""Liveness's depth cue: flat things moved by a hand stay rank 2, a turning head does not."""

import numpy as np
import pytest

from lotcontrol.bench.liveness import choose_limit, refused
from lotcontrol.sim.attacks import SIZE, Attack, film, rotation
from lotcontrol.vision import liveness

FOCAL = 560.0


def head(rng):
    """68 points roughly on a face: a plane's landmarks given depth (nose forward, jaw back), metres."""
    xy = rng.uniform(-0.07, 0.07, size=(68, 2))
    xy[36:42] = [-0.035, -0.02] + rng.normal(0, 0.004, (6, 2))  # one eye
    xy[42:48] = [0.035, -0.02] + rng.normal(0, 0.004, (6, 2))  # the other
    z = -0.03 * np.exp(-(xy[:, 0] ** 2 + (xy[:, 1] - 0.01) ** 2) / 0.002) + 10 * (xy[:, 0] ** 2)  # 8 cm deep
    return np.column_stack([xy, z])


def filmed(points, poses, noise, rng):
    """The points' images under a pinhole camera, one frame per (yaw, pitch, roll, distance)."""
    frames = []
    for yaw, pitch, roll, distance in poses:
        world = points @ rotation(yaw, pitch, roll).T + [0, 0, distance]
        image = world[:, :2] / world[:, 2:3] * FOCAL
        frames.append(image + rng.normal(0, noise, image.shape))
    return np.asarray(frames)


def poses(n, rng, turn):
    t = np.linspace(0, 1, n)
    return np.column_stack([turn * np.sin(6 * t + rng.uniform(0, 6)), turn / 2 * np.sin(4 * t), 2 * np.sin(3 * t),
                            3.0 - 1.8 * t])


@pytest.mark.parametrize("seed", range(5))
def test_a_flat_picture_moved_and_turned_by_a_hand_shows_no_depth_and_a_turning_head_does(seed):
    rng = np.random.default_rng(seed)
    face = head(rng)
    flat = face * [1, 1, 0]  # the same landmarks printed on a sheet
    motion = poses(20, rng, turn=8.0)
    picture = liveness.depth(filmed(flat, motion, 0.3, rng))
    person = liveness.depth(filmed(face, motion, 0.3, rng))
    assert picture < 0.01 < 0.03 < person


def test_too_few_frames_or_no_eyes_give_no_cue():
    rng = np.random.default_rng(0)
    frames = filmed(head(rng), poses(liveness.MIN_FRAMES - 1, rng, 8.0), 0.3, rng)
    assert liveness.depth(frames) is None
    frames = filmed(head(rng), poses(10, rng, 8.0), 0.3, rng)
    frames[3, 36:48] = frames[3, 36]  # both eyes on one point
    assert liveness.depth(frames) is None


def test_the_verdict_waits_for_depth_then_refuses_at_the_end_or_after_a_full_window():
    rng = np.random.default_rng(1)
    face = head(rng)
    flat = filmed(face * [1, 1, 0], poses(liveness.KEEP_FRAMES, rng, 8.0), 0.3, rng)
    motion = liveness.FaceMotion(limit=0.03)
    for index, points in enumerate(flat):
        motion.add(points)
        verdict = motion.verdict()
        if index + 1 < liveness.KEEP_FRAMES:
            assert verdict.live is None
    assert verdict.live is False and verdict.frames == liveness.KEEP_FRAMES
    short = liveness.FaceMotion(limit=0.03)
    for points in flat[:8]:
        short.add(points)
    assert short.verdict().live is None and short.verdict(final=True).live is False
    person = liveness.FaceMotion(limit=0.03)
    for points in filmed(face, poses(12, rng, 8.0), 0.3, rng):
        person.add(points)
    assert person.verdict().live is True and person.verdict().details()["depth"] > 0.03


def test_the_limit_is_chosen_between_attacks_and_live_faces_and_never_above_a_live_one():
    assert choose_limit([0.01, 0.02], [0.04, 0.08]) == pytest.approx(0.03)
    assert choose_limit([0.01, 0.05], [0.04, 0.08]) == 0.04  # overlap: no live face refused
    assert refused([None, 0.01, 0.03, 0.05], 0.03) == 2


@pytest.mark.parametrize("attack", [Attack("print", 3, bend=0.02, hand=True, seconds=0.4),
                                    Attack("screen", 4, device="phone", seconds=0.4)])
def test_attacks_are_filmed_frames_of_the_camera_size_and_the_same_for_the_same_seed(attack):
    photo = np.random.default_rng(0).integers(0, 255, (250, 250, 3), dtype=np.uint8)
    frames = film(attack, photo)
    assert len(frames) == int(attack.seconds * attack.fps)
    assert frames[0].shape == (SIZE[1], SIZE[0], 3) and frames[0].dtype == np.uint8
    assert np.array_equal(film(attack, photo)[-1], frames[-1])
    assert not np.array_equal(frames[0], frames[-1])  # it moves
