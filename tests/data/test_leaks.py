"""The leak check tells copies from look-alikes (``data.leaks``): re-saved and re-encoded copies
are found, a copy with a thin defect added and distinct look-alike parts are not."""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np
import pytest
import skimage.data
from PIL import Image
from scipy.ndimage import gaussian_filter

from inspection.core.errors import RegistryError
from inspection.data.leaks import (
    CANDIDATE_LEVELS,
    THUMB_SIDE,
    TrainPrints,
    held_out_copies,
    pixel_print,
    prints_of,
    same_picture,
)


def _brick() -> np.ndarray:
    """(256, 256, 3) uint8: a crop of scikit-image's brick texture."""
    return np.repeat(skimage.data.brick()[:256, :256, None], 3, axis=2)


def _cell(seed: int) -> np.ndarray:
    """(256, 256, 3) uint8 solar-cell look-alike: the same busbars and fingers on every cell,
    a seeded crystal grain of ~2 grey levels that tells one cell from another."""
    grain = gaussian_filter(np.random.default_rng(seed).normal(0, 1, (256, 256)), 1.5)
    cell = 140 + 2.0 * grain / grain.std()
    cell[:, 60:68] = cell[:, 188:196] = 30  # busbars
    cell[::16] -= 60  # fingers, 2 px wide
    cell[1::16] -= 60
    return np.repeat(np.clip(cell, 0, 255).astype(np.uint8)[..., None], 3, axis=2)


def _scratched(image: np.ndarray) -> np.ndarray:
    """``image`` with a 1 px anti-aliased scratch 40 grey levels darker, 64 px long."""
    line = np.zeros(image.shape[:2], np.float32)
    cv2.line(line, (90, 100), (150, 124), 1.0, 1, cv2.LINE_AA)
    return np.clip(image - 40.0 * line[..., None], 0, 255).astype(np.uint8)


def _stained(image: np.ndarray) -> np.ndarray:
    """``image`` with a faint Gaussian stain (sigma 8 px) 6 grey levels deep."""
    y, x = np.mgrid[: image.shape[0], : image.shape[1]]
    blob = 6.0 * np.exp(-((y - 140) ** 2 + (x - 110) ** 2) / (2 * 8.0**2))
    return np.clip(image - blob[..., None], 0, 255).astype(np.uint8)


def _save(array: np.ndarray, path: Path, **options: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, **options)
    return path


def _copies(tmp_path: Path, held: dict[str, np.ndarray], new: dict[str, Path]) -> set[str]:
    """Names of ``new`` files the check finds to copy one of ``held`` (saved as PNG)."""
    held_paths = [_save(a, tmp_path / "held" / f"{n}.png") for n, a in held.items()]
    found = held_out_copies(prints_of(list(new.values())), prints_of(held_paths))
    return {name for name, path in new.items() if path in found}


def test_re_encoded_copies_are_found_and_defective_look_alikes_are_not(tmp_path: Path) -> None:
    """JPEG 75 and a brighter PNG re-save of a held-out texture are copies; the same texture
    with a thin scratch or a faint stain is a defective part (the thumbnail rule called all
    four copies: the defects vanish in a 32x32 thumbnail)."""
    brick = _brick()
    new = {
        "jpeg75": _save(brick, tmp_path / "new" / "a.jpg", quality=75),
        "brighter": _save(np.clip(brick + 4, 0, 255).astype(np.uint8), tmp_path / "new" / "b.png"),
        "scratch": _save(_scratched(brick), tmp_path / "new" / "c.png"),
        "stain": _save(_stained(brick), tmp_path / "new" / "d.png"),
    }
    assert _copies(tmp_path, {"brick": brick}, new) == {"jpeg75", "brighter"}
    thumb = pixel_print(brick)
    for name in ("scratch", "stain"):
        defective = pixel_print(np.asarray(Image.open(new[name]).convert("RGB")))
        assert np.abs(defective - thumb).mean() < 0.5  # the thumbnails are all but equal


def test_distinct_look_alike_cells_are_not_copies(tmp_path: Path) -> None:
    """Two cells with the same layout and a different grain are within the thumbnail's
    candidate range, yet distinct parts at full resolution; a JPEG 85 copy of one is found."""
    first, second = _cell(1), _cell(2)
    distance = np.abs(pixel_print(first) - pixel_print(second)).mean()
    assert distance < min(1.5, CANDIDATE_LEVELS)  # one picture to the former thumbnail rule
    new = {
        "other cell": _save(second, tmp_path / "new" / "other.png"),
        "copy": _save(first, tmp_path / "new" / "copy.jpg", quality=85),
    }
    assert _copies(tmp_path, {"cell": first}, new) == {"copy"}


@pytest.mark.parametrize(
    ("change", "copy"),
    [
        (lambda a: a, True),
        (lambda a: cv2.resize(a, (128, 128), interpolation=cv2.INTER_AREA), True),
        (lambda a: np.clip(a * 1.05 + 3, 0, 255).astype(np.uint8), True),
        (lambda a: np.clip(a * 1.3, 0, 255).astype(np.uint8), False),  # another exposure
        (lambda a: a[:, :200], False),  # another aspect ratio
    ],
    ids=["same", "half size", "5 % brighter", "30 % brighter", "cropped"],
)
def test_same_picture_allows_size_and_small_brightness_changes(change, copy: bool) -> None:
    brick = _brick()
    assert same_picture(brick, change(brick)) is copy


def test_black_text_on_white_survives_jpeg_clipping() -> None:
    """Ringing clipped at 0 and 255 biases block means beyond the DC bound: a JPEG 75 copy of
    a label is still a copy, a label with one more character is not."""
    label = np.full((128, 256, 3), 255, np.uint8)
    cv2.putText(label, "LOT 4711", (8, 80), cv2.FONT_HERSHEY_SIMPLEX, 1.8, (0, 0, 0), 4)
    jpeg = cv2.imdecode(cv2.imencode(".jpg", label, [cv2.IMWRITE_JPEG_QUALITY, 75])[1], 1)
    other = label.copy()
    cv2.putText(other, "7", (230, 120), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1)
    assert same_picture(label, jpeg)
    assert not same_picture(label, other)


def test_train_prints_read_back_as_written_and_refuse_another_file(tmp_path: Path) -> None:
    """A version's training prints come back with their names (one not UTF-8 among them);
    a file that holds something else, or prints of another size, is refused naming it."""
    written = {
        "train/good/000.png": pixel_print(_brick()),
        "train/good/\udcff.png": pixel_print(_cell(1)),
    }
    TrainPrints.of(written).save(tmp_path / "prints.npz")
    read = TrainPrints.load(tmp_path / "prints.npz").by_name()
    assert read.keys() == written.keys()
    assert all(
        np.array_equal(read[n], p) and read[n].dtype == np.float32 for n, p in written.items()
    )
    TrainPrints.of({}).save(tmp_path / "none.npz")
    assert TrainPrints.load(tmp_path / "none.npz").names == ()

    np.savez(
        tmp_path / "other.npz", names=np.array(["a.png"]), prints=np.zeros((1, 16, 16), np.float32)
    )
    (tmp_path / "text.npz").write_text("not numpy")
    side = f"expected (1, {THUMB_SIDE}, {THUMB_SIDE}) float32, got (1, 16, 16)"
    for name, why in [("other.npz", side), ("text.npz", "does not hold training prints")]:
        with pytest.raises(RegistryError, match=re.escape(why)) as refused:
            TrainPrints.load(tmp_path / name)
        assert str(tmp_path / name) in str(refused.value)
