import pytest

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
    with pytest.raises(PhotoError, match=r"250x250 is 0 megapixels, more than the 0.01 allowed; scale it down"):
        read_photo(PORTRAIT, max_megapixels=0.01)


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
