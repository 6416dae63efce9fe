import os
from pathlib import Path

import pytest
from PIL import Image

from lotcontrol.errors import ModelFileError, PhotoError
from lotcontrol.vision.faces import enrollment_face, faces_in_photo, read_photo, verify_models

from .conftest import need
from .photos import PORTRAIT, make


@pytest.fixture(autouse=True)
def _faces_present():
    need(PORTRAIT)


@pytest.mark.parametrize("kind", ["gray", "png16", "alpha", "cmyk", "exif_rotated"])
def test_every_photo_format_gives_the_same_face(tmp_path, kind):
    reference = faces_in_photo(read_photo(PORTRAIT))[0]
    photo = read_photo(make(kind, tmp_path))
    assert photo.rgb.shape == (250, 250, 3) and photo.rgb.dtype.name == "uint8"
    [face] = faces_in_photo(photo)
    # The same person, well inside the accept threshold (losing colour moves the template by ~0.28).
    distance = float(((face.encoding - reference.encoding) ** 2).sum() ** 0.5)
    assert distance < 0.3, distance
    assert abs(face.box.width - reference.box.width) <= 12


def test_a_16_bit_png_keeps_its_tones(tmp_path):
    rgb = read_photo(make("png16", tmp_path)).rgb
    assert 60 < rgb.mean() < 200 and rgb.std() > 30  # not clipped to white


@pytest.mark.parametrize("kind, reason", [
    ("empty", "the file is empty"),
    ("text", "not a JPEG or PNG image"),
    ("truncated", "the image is damaged or truncated (image file is truncated"),
])
def test_unreadable_photos_say_why(tmp_path, kind, reason):
    path = make(kind, tmp_path)
    with pytest.raises(PhotoError) as error:
        read_photo(path)
    assert str(error.value).startswith(f"{path}: {reason}")


def test_a_folder_or_missing_file_is_not_a_photo(tmp_path):
    with pytest.raises(PhotoError, match="is a folder, not a photo"):
        read_photo(tmp_path)
    with pytest.raises(PhotoError, match=r"cannot be read \(No such file or directory\)"):
        read_photo(tmp_path / "gone.jpg")


def test_a_photo_over_the_pixel_limit_is_refused_before_decoding(tmp_path):
    with pytest.raises(PhotoError, match=r"250x250 is 0.0625 megapixels, more than enroll.max_megapixels = 0.01 "
                                         r"allows; scale it down"):
        read_photo(PORTRAIT, max_megapixels=0.01)


def flat(mode: str, path: Path, side: int = 12_000) -> Path:
    """A valid side x side image of one colour: a few kB on disk (PIL's bomb limit is 89 megapixels)."""
    Image.new(mode, (side, side), 1).save(path)
    return path


def test_a_12000_px_photo_is_refused_by_our_limit_naming_file_size_and_setting(tmp_path):
    path = flat("1", tmp_path / "big.png")  # 144 megapixels: PIL's own limit warned first and it read as "not a PNG"
    with pytest.raises(PhotoError) as error:
        read_photo(path)
    assert str(error.value) == (f"{path}: 12000x12000 is 144 megapixels, more than enroll.max_megapixels = 60 "
                                "allows; scale it down")


def test_a_12000_px_photo_is_read_when_the_setting_allows_it(tmp_path):
    limit = Image.MAX_IMAGE_PIXELS
    path = flat("L", tmp_path / "big.jpg")  # decoded at 1/8 scale (JPEG draft): cheap
    photo = read_photo(path, max_megapixels=150)
    assert max(photo.rgb.shape[:2]) <= 1600 and photo.scale == 12_000 / photo.rgb.shape[1]
    assert limit is not None and Image.MAX_IMAGE_PIXELS == limit  # PIL's limit is back for everyone else
    with pytest.warns(Image.DecompressionBombWarning):  # and works: it was off for our header read only
        Image.open(path)


@pytest.mark.parametrize("fmt", ["GIF", "WEBP"])
def test_only_jpeg_and_png_are_accepted_by_content(tmp_path, fmt):
    path = tmp_path / "photo.jpg"  # the name says JPEG; the content decides
    Image.open(PORTRAIT).save(path, format=fmt)
    with pytest.raises(PhotoError) as error:
        read_photo(path)
    assert str(error.value) == f"{path}: a {fmt} image; only JPEG and PNG photos are accepted"
    png_named_jpg = tmp_path / "png.jpg"
    Image.open(PORTRAIT).save(png_named_jpg, format="PNG")
    assert read_photo(png_named_jpg).rgb.shape == (250, 250, 3)


def test_a_file_over_the_size_limit_is_refused_without_reading_it(tmp_path):
    path = tmp_path / "huge.jpg"
    with open(path, "wb") as file:  # sparse: 150 MB long, nothing on disk (old code read it all)
        file.truncate(150_000_000)
    with pytest.raises(PhotoError) as error:
        read_photo(path)
    assert str(error.value) == f"{path}: the file is 150 MB, more than enroll.max_file_mb = 100 allows"
    with pytest.raises(PhotoError, match=r"the file is 0.0[0-9]+ MB, more than enroll.max_file_mb = 0.001 allows"):
        read_photo(PORTRAIT, max_mb=0.001)


def test_a_device_or_fifo_is_refused_without_reading_from_it(tmp_path):
    # the old code read /dev/zero until memory ran out, and waited for a writer on a FIFO
    fifo = tmp_path / "camera.jpg"
    os.mkfifo(fifo)
    for path in ("/dev/zero", fifo):
        with pytest.raises(PhotoError) as error:
            read_photo(path)
        assert str(error.value) == f"{path}: not a regular file (a device, FIFO or socket), not a photo"


def test_a_50_megapixel_photo_is_read_scaled_down_with_its_face(tmp_path):
    photo = read_photo(make("huge", tmp_path))
    assert max(photo.rgb.shape) <= 1600
    face = enrollment_face(photo, min_face_px=50, min_sharpness=0)
    assert 900 < face.box.width < 1100  # in the photo's own pixels, not the scaled-down ones


@pytest.mark.parametrize("kind, reason", [
    ("no_face", "no face found"),
    ("two_faces", "2 faces; an enrollment photo must show one person"),
    ("tiny", "the face is too small (43 px wide, at least 50 needed)"),
    ("blurry", "the face is too blurry (sharpness"),
])
def test_enrollment_refuses_photos_that_would_match_badly(tmp_path, kind, reason):
    path = make(kind, tmp_path)
    with pytest.raises(PhotoError) as error:
        enrollment_face(read_photo(path), min_face_px=50, min_sharpness=20)
    assert str(error.value).startswith(f"{path}: {reason}")


def test_models_are_verified(tmp_path):
    assert set(verify_models()) >= {"dlib_face_recognition_resnet_model_v1", "shape_predictor_5_face_landmarks"}
    manifest = tmp_path / "models.toml"
    manifest.write_text('[files.x]\nfile = "shape_predictor_5_face_landmarks.dat"\nsha256 = "00"\n')
    with pytest.raises(ModelFileError, match="shape_predictor_5_face_landmarks.dat has sha256 c4b1e98.*expected 00"):
        verify_models(manifest)
