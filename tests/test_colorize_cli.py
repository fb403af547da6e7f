"""The command line in-process: colorize real images, inputs of every kind, one-line errors."""

import numpy as np
import pytest
import rasterio
from PIL import Image

from aerocolor import __version__
from aerocolor.cli import main
from aerocolor.imageio import read_image


def run(args, capsys):
    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in args])
    out, err = capsys.readouterr()
    return exc.value.code, out, err


def test_version(capsys):
    code, out, _ = run(["--version"], capsys)
    assert code == 0 and out.strip() == f"aerocolor {__version__}"


def test_colorize_writes_outputs_of_the_input_size(tiny_checkpoint, shared_data, tmp_path, capsys):
    gray_png = shared_data / "old/val/gsi1960s"
    first = sorted(gray_png.glob("*.png"))[0]
    maps = sorted((shared_data / "color/val/maps").glob("*.jpg"))[0]
    code, out, err = run(["colorize", tiny_checkpoint, first, maps, "-o", tmp_path, "--compare",
                          "--tile", "256", "--overlap", "32"], capsys)
    assert code == 0, err
    result = read_image(tmp_path / f"{first.stem}_color.png")
    assert result.shape == (256, 256, 3)
    big = read_image(tmp_path / f"{maps.stem}_color.png")
    assert big.shape == (600, 600, 3)  # larger than one tile: tiled and blended
    assert "colour input, converted to gray" in err and maps.name in err
    assert "converted" not in err.split(maps.name)[0]  # the gray photo was not converted
    compare = read_image(tmp_path / f"{maps.stem}_compare.png")
    assert compare.shape[1] > 3 * 600  # gray | colour | original


def test_lab_model_keeps_the_gray_input_lightness(tiny_checkpoint, shared_data, tmp_path, capsys):
    from aerocolor.color import rgb_to_lab, to_tensor
    from aerocolor.colorize import to_gray
    from aerocolor.infer import load_colorizer

    img = read_image(sorted((shared_data / "color/val/neon").glob("*.jpg"))[0])
    gray = to_gray(img)
    colour = load_colorizer(tiny_checkpoint, "cpu").colorize(gray)
    L_out = rgb_to_lab(to_tensor(colour))[0, 0].numpy()
    L_in = rgb_to_lab(to_tensor(np.repeat(gray[:, :, None], 3, 2)))[0, 0].numpy()
    inside = (colour > 0.002).all(2) & (colour < 0.998).all(2)  # clipping may move L* at gamut edges
    assert np.abs(L_out - L_in)[inside].mean() < 0.5


def test_sixteen_bit_and_gray_tiffs_are_read_by_their_range(tmp_path):
    arr = (np.linspace(0, 65535, 64 * 64).reshape(64, 64)).astype(np.uint16)
    path = tmp_path / "scan16.tif"
    with rasterio.open(path, "w", driver="GTiff", width=64, height=64, count=1, dtype="uint16") as dst:
        dst.write(arr[None])
    img = read_image(path)
    assert img.ndim == 2 and img.dtype == np.float32
    assert img.max() == pytest.approx(1.0) and img.min() == 0.0
    Image.fromarray(arr).save(tmp_path / "scan16.png")
    assert np.allclose(read_image(tmp_path / "scan16.png"), img, atol=1e-6)
    Image.fromarray((arr >> 8).astype(np.uint8), "L").save(tmp_path / "gray8.png")
    assert read_image(tmp_path / "gray8.png").ndim == 2


def test_corrupt_input_gives_a_one_line_error_naming_the_file(tiny_checkpoint, tmp_path, capsys):
    bad = tmp_path / "not_a_photo.png"
    bad.write_bytes(b"this is not an image")
    code, _, err = run(["colorize", tiny_checkpoint, bad, "-o", tmp_path / "out"], capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "not_a_photo.png" in lines[0] and "Traceback" not in err
    code, _, err = run(["colorize", tiny_checkpoint, tmp_path / "missing.jpg"], capsys)
    assert code == 2 and "missing.jpg" in err


def test_bad_checkpoint_and_bad_config_are_named(tmp_path, capsys):
    fake = tmp_path / "model.pt"
    fake.write_bytes(b"garbage")
    img = tmp_path / "x.png"
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(img)
    code, _, err = run(["colorize", fake, img, "-o", tmp_path], capsys)
    assert code == 2 and "model.pt" in err and "not an aerocolor checkpoint" in err
    code, _, err = run(["train", "--set", "model.nets.netD=huge", "--data", tmp_path], capsys)
    assert code == 2 and "model.nets.netD" in err


def test_plot_losses_and_info(tiny_checkpoint, tmp_path, capsys):
    code, out, err = run(["plot-losses", tiny_checkpoint.parent, "--key", "G_GAN", "-o", tmp_path / "g.png"], capsys)
    assert code == 0, err
    assert Image.open(tmp_path / "g.png").size[0] > 100
    code, out, _ = run(["info", tiny_checkpoint], capsys)
    assert code == 0 and "method: pix2pix" in out and "color_mode: lab" in out


def test_chroma_option_overrides_the_model_saturation(tiny_checkpoint, shared_data, tmp_path, capsys):
    from aerocolor.evaluate import colorfulness

    photo = sorted((shared_data / "color/val/neon").glob("*.jpg"))[0]
    colourful = {}
    for chroma in ("1", "2.5"):
        code, _, err = run(["colorize", tiny_checkpoint, photo, "-o", tmp_path / chroma, "--chroma", chroma,
                            "-q"], capsys)
        assert code == 0, err
        img = read_image(tmp_path / chroma / f"{photo.stem}_color.png")
        colourful[chroma] = colorfulness(img, np.ones(img.shape[:2], bool))
    assert colourful["2.5"] > 1.8 * colourful["1"] > 0
