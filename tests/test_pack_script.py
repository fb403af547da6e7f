"""scripts/pack_training_subset.py: the packed copy of the training imagery carried to a GPU machine."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "pack_training_subset.py"


@pytest.fixture(scope="module")
def pack():
    spec = importlib.util.spec_from_file_location("pack_training_subset", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _image(path: Path, w: int, h: int, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path)


@pytest.fixture()
def source(tmp_path):
    src = tmp_path / "train"
    _image(src / "aid" / "farm_1.jpg", 150, 150, 0)
    _image(src / "maps" / "ny_1.png", 600, 500, 1)
    _image(src / "maps" / "ny_2.png", 600, 600, 2)
    val = tmp_path / "val"
    _image(val / "aid" / "v1.jpg", 150, 150, 3)
    _image(val / "maps" / "v2.jpg", 600, 600, 4)
    lists = tmp_path / "splits"
    lists.mkdir()
    (lists / "sel.txt").write_text("../val/aid/v1.jpg\n../val/maps/v2.jpg\n")
    return src, lists / "sel.txt"


def test_small_images_are_copied_and_large_ones_cropped_reproducibly(pack, source, tmp_path):
    src, _ = source
    outs = [tmp_path / "p1", tmp_path / "p2"]
    for out in outs:
        assert pack.pack_train([src], out, max_side=400, crop=320, quality=92, seed=0) == 3
    one = outs[0] / "train"
    assert (one / "aid" / "farm_1.jpg").read_bytes() == (src / "aid" / "farm_1.jpg").read_bytes()
    for name in ("ny_1.jpg", "ny_2.jpg"):
        with Image.open(one / "maps" / name) as im:
            assert im.size == (320, 320) and im.format == "JPEG"
        assert (one / "maps" / name).read_bytes() == (outs[1] / "train" / "maps" / name).read_bytes()
    other = tmp_path / "p3"
    pack.pack_train([src], other, max_side=400, crop=320, quality=92, seed=1)
    assert (other / "train/maps/ny_1.jpg").read_bytes() != (one / "maps" / "ny_1.jpg").read_bytes()


def test_narrow_images_keep_their_side_and_reencode_shrinks_small_ones(pack, source, tmp_path):
    src, _ = source
    out = tmp_path / "p"
    # ny_1 is 600 x 500: a 550 px crop keeps its 500 px height instead of failing
    assert pack.pack_train([src], out, max_side=400, crop=550, quality=70, seed=0, reencode=True) == 3
    with Image.open(out / "train/maps/ny_1.jpg") as im:
        assert im.size == (550, 500)
    with Image.open(out / "train/maps/ny_2.jpg") as im:
        assert im.size == (550, 550)
    small = out / "train/aid/farm_1.jpg"
    assert small.read_bytes() != (src / "aid" / "farm_1.jpg").read_bytes()
    with Image.open(small) as im:
        assert im.size == (150, 150) and im.format == "JPEG"


def test_validation_list_is_copied_with_skips(pack, source, tmp_path):
    _, sel = source
    out = tmp_path / "p"
    assert pack.pack_val(sel, out, skip=["/maps/"]) == 1
    assert (out / "val/aid/v1.jpg").read_bytes() == (tmp_path / "val/aid/v1.jpg").read_bytes()
    assert not (out / "val" / "maps").exists()


def test_bad_inputs_name_the_problem(pack, source, tmp_path):
    src, sel = source
    with pytest.raises(SystemExit, match="no such folder"):
        pack.pack_train([tmp_path / "nowhere"], tmp_path / "p", 400, 320, 92, 0)
    sel.write_text("../val/aid/missing.jpg\n")
    with pytest.raises(SystemExit, match="missing.jpg does not exist"):
        pack.pack_val(sel, tmp_path / "p", skip=[])
