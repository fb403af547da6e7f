"""Bad inputs, table-driven: every error a user can cause ends in one line naming the input and
the fix, with exit status 2 and no traceback, and leaves no partial output. Inputs that used to
fail but are now handled (tiny images, odd PNG modes, unicode paths) colorize with exit 0.

Each case is run through the real entry point (``aerocolor.cli.main``) in-process."""

from __future__ import annotations

import io
import os
import struct
import warnings
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_helpers import run_main
from PIL import Image

from aerocolor.cli import main
from aerocolor.infer import default_model_path

UNWRITABLE = Path("/sys")  # a folder nobody can create files in, root included


def png_header_only(path: Path, width: int, height: int) -> Path:
    """A tiny PNG whose header claims ``width`` x ``height`` pixels (a decompression bomb)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))
    return path


def gray_png(path: Path, h: int, w: int, mode: str = "L") -> Path:
    rng = np.random.default_rng(h * 1000 + w)
    arr = rng.integers(0, 255, (h, w), dtype=np.uint8)
    img = Image.fromarray(arr)
    if mode == "I;16":
        img = Image.fromarray(arr.astype(np.uint16) * 257)
    elif mode != "L":
        img = img.convert(mode)
    img.save(path)
    return path


def truncated_jpeg(path: Path, size: int = 64, keep: float | None = None) -> Path:
    """A JPEG cut after 300 bytes (inside its header), or after the share ``keep`` of its bytes
    (the header whole, the image data ending part way)."""
    buf = io.BytesIO()
    pixels = np.random.default_rng(size).integers(0, 255, (size, size, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(buf, format="JPEG")
    data = buf.getvalue()
    path.write_bytes(data[:300] if keep is None else data[: int(len(data) * keep)])
    return path


def multi_page_tiff(path: Path, pages: int = 2) -> Path:
    """A gray TIFF of several pages, without georeference (a plain scan)."""
    rng = np.random.default_rng(pages)
    images = [Image.fromarray(rng.integers(0, 255, (72, 80), dtype=np.uint8)) for _ in range(pages)]
    images[0].save(path, save_all=pages > 1, append_images=images[1:])
    return path


@dataclass
class Case:
    name: str
    make: Callable[[Path], list[str]]  # tmp folder -> CLI arguments
    status: int = 2
    says: tuple[str, ...] = ()  # the one error line names these
    no_output: str | None = None  # a folder (relative to tmp) that must hold no file afterwards


def colorize(*names: str, out: str = "out", extra: tuple[str, ...] = ()) -> Callable[[Path], list[str]]:
    return lambda tmp: ["colorize", *[str(tmp / n) for n in names], "-o", str(tmp / out), *extra]


def files(make: Callable[[Path], None], args: Callable[[Path], list[str]]) -> Callable[[Path], list[str]]:
    def run(tmp: Path) -> list[str]:
        make(tmp)
        return args(tmp)
    return run


def train(*sets: str, extra: tuple[str, ...] = ()) -> Callable[[Path], list[str]]:
    return lambda tmp: ["train", "-o", str(tmp / "run"), "-q", *extra,
                        *[a for s in sets for a in ("--set", s)]]


def write_text(name: str, text: str) -> Callable[[Path], None]:
    return lambda tmp: (tmp / name).write_text(text)


def write_bytes(name: str, data: bytes) -> Callable[[Path], None]:
    return lambda tmp: (tmp / name).write_bytes(data)


CASES = [
    # images that cannot be read
    Case("bomb png", files(lambda t: png_header_only(t / "bomb.png", 100000, 100000), colorize("bomb.png")),
         says=("bomb.png", "--max-pixels N", "AEROCOLOR_MAX_PIXELS"), no_output="out"),
    Case("truncated jpeg", files(lambda t: truncated_jpeg(t / "cut.jpg"), colorize("cut.jpg")),
         says=("cut.jpg", "not a readable image"), no_output="out"),
    Case("zero bytes", files(write_bytes("empty.png", b""), colorize("empty.png")), says=("empty.png",),
         no_output="out"),
    Case("text named .png", files(write_text("notes.png", "hello"), colorize("notes.png")),
         says=("notes.png", "not a readable image"), no_output="out"),
    Case("missing input", colorize("nowhere.png"), says=("nowhere.png", "no such file")),
    Case("missing raster", colorize("nowhere.tif"), says=("nowhere.tif", "no such file")),
    Case("folder without images", files(lambda t: (t / "scans").mkdir(), colorize("scans")),
         says=("scans", "a folder without images"), no_output="out"),
    Case("folder without images, restore", files(
        lambda t: (t / "scans").mkdir(), lambda t: ["restore", str(t / "scans"), "-o", str(t / "out")]),
         says=("scans", "a folder without images"), no_output="out"),
    Case("bomb png in training data", files(
        lambda t: (t / "data").mkdir() or png_header_only(t / "data" / "bomb.png", 100000, 100000),
        lambda t: ["train", "--data", str(t / "data"), "-o", str(t / "run"), "-q", "--steps", "1",
                   "--set", "data.crop_size=32", "--set", "model.nets.netG=unet_128"]),
         says=("bomb.png", "--max-pixels")),
    Case("bomb png in evaluation data", files(
        lambda t: (t / "data").mkdir() or png_header_only(t / "data" / "bomb.png", 100000, 100000),
        lambda t: ["evaluate", "--data", str(t / "data"), "-o", str(t / "ev"), "--no-download", "--device", "cpu",
                   "--cache", str(t / "cache")]),
         says=("bomb.png", "--max-pixels"), no_output="ev"),
    Case("bomb png cut into tiles", files(lambda t: png_header_only(t / "bomb.png", 100000, 100000),
                                          lambda t: ["tiles", str(t / "bomb.png"), "-o", str(t / "out")]),
         says=("bomb.png", "100000 x 100000", "--max-pixels"), no_output="out"),
    Case("truncated jpeg cut into tiles", files(lambda t: truncated_jpeg(t / "cut.jpg", 300, keep=0.5),
                                                lambda t: ["tiles", str(t / "cut.jpg"), "-o", str(t / "out"),
                                                           "--size", "64"]),
         says=("cut.jpg", "truncated"), no_output="out"),
    Case("jpeg cut in its header, into tiles", files(lambda t: truncated_jpeg(t / "cut.jpg"),
                                                     lambda t: ["tiles", str(t / "cut.jpg"), "-o", str(t / "out")]),
         says=("cut.jpg", "not a readable raster"), no_output="out"),
    Case("image over --max-pixels", files(lambda t: gray_png(t / "a.png", 40, 40),
                                          colorize("a.png", extra=("--max-pixels", "1000"))),
         says=("a.png", "1,000 pixels", "--max-pixels"), no_output="out"),
    Case("image over --max-pixels, into tiles", files(lambda t: gray_png(t / "a.png", 40, 40),
                                                      lambda t: ["tiles", str(t / "a.png"), "-o", str(t / "out"),
                                                                 "--max-pixels", "1000"]),
         says=("a.png", "40 x 40 pixels, more than the limit of 1,000", "--max-pixels"), no_output="out"),
    Case("max-pixels 0", files(lambda t: gray_png(t / "a.png", 40, 40), colorize("a.png", extra=("--max-pixels", "0"))),
         says=("--max-pixels 0",), no_output="out"),
    # fetch plans: counted without listing them, refused above --max-tiles (before any request)
    Case("whole world at zoom 15", lambda t: ["fetch", "http://127.0.0.1:9/{z}/{x}/{y}.png", "--bbox",
                                              "-180,-85,180,85", "-z", "15", "-o", str(t / "out")],
         says=("1,070,268,416 tiles", "--max-tiles 1,000,000"), no_output="out"),
    Case("max-tiles 0", lambda t: ["fetch", "http://127.0.0.1:9/{z}/{x}/{y}.png", "--bbox", "139.6,35.6,139.7,35.7",
                                   "-z", "10", "--max-tiles", "0", "-o", str(t / "out")],
         says=("--max-tiles 0",), no_output="out"),
    # output paths
    Case("output is a file", files(lambda t: (gray_png(t / "a.png", 40, 40), write_text("afile", "x")(t)),
                                   colorize("a.png", out="afile")), says=("--out", "afile", "is a file")),
    Case("output below a file", files(lambda t: (gray_png(t / "a.png", 40, 40), write_text("afile", "x")(t)),
                                      colorize("a.png", out="afile/sub")), says=("--out", "afile/sub")),
    Case("output not writable", files(lambda t: gray_png(t / "a.png", 40, 40),
                                      lambda t: ["colorize", str(t / "a.png"), "-o", str(UNWRITABLE)]),
         says=("--out", str(UNWRITABLE), "cannot write")),
    Case("export into a file's folder", files(write_text("afile", "x"), lambda t: [
        "export", str(default_model_path()), "--onnx", str(t / "afile" / "m.onnx")]), says=("--onnx", "afile")),
    Case("int8 without onnx", lambda t: ["export", str(default_model_path()), "--slim", str(t / "s.pt"),
                                         "--int8", str(t)], says=("--int8", "--onnx")),
    Case("int8 calibration folder missing", lambda t: [
        "export", str(default_model_path()), "--onnx", str(t / "m.onnx"), "--int8", str(t / "photos")],
         says=("--int8", "photos", "no such folder")),
    Case("int8 calibration folder without images", files(
        lambda t: ((t / "photos").mkdir(), (t / "photos" / "notes.md").write_text("x")), lambda t: [
        "export", str(default_model_path()), "--onnx", str(t / "m.onnx"), "--int8", str(t / "photos")]),
         says=("--int8", "no images")),
    Case("tiles output is a file", files(lambda t: (gray_png(t / "a.png", 40, 40), write_text("afile", "x")(t)),
                                         lambda t: ["tiles", str(t / "a.png"), "-o", str(t / "afile")]),
         says=("--out", "afile")),
    Case("prepare output is a file", files(write_text("afile", "x"), lambda t: [
        "prepare", "--color", str(t), "-o", str(t / "afile")]), says=("afile",)),
    # colorize options
    Case("batch size 0", files(lambda t: gray_png(t / "a.png", 40, 40), colorize("a.png", extra=("--batch-size", "0"))),
         says=("--batch-size 0",), no_output="out"),
    Case("tile 0", files(lambda t: gray_png(t / "a.png", 40, 40), colorize("a.png", extra=("--tile", "0"))),
         says=("--tile 0",), no_output="out"),
    Case("overlap above tile", files(lambda t: gray_png(t / "a.png", 40, 40),
                                     colorize("a.png", extra=("--overlap", "1200"))),
         says=("--overlap 1200", "1023"), no_output="out"),
    Case("negative overlap", files(lambda t: gray_png(t / "a.png", 40, 40),
                                   colorize("a.png", extra=("--overlap", "-1"))), says=("--overlap -1",)),
    Case("zero chroma", files(lambda t: gray_png(t / "a.png", 40, 40),
                              colorize("a.png", extra=("--chroma", "0"))), says=("--chroma 0", "above 0")),
    Case("unknown precision", files(lambda t: gray_png(t / "a.png", 40, 40),
                                    colorize("a.png", extra=("--precision", "float8"))),
         says=("--precision float8", "bfloat16"), no_output="out"),
    Case("precision with onnx", files(lambda t: gray_png(t / "a.png", 40, 40),
                                      colorize("a.png", extra=("--precision", "bfloat16", "--backend", "onnx"))),
         says=("--precision bfloat16", "torch backend"), no_output="out"),
    Case("negative samples", files(lambda t: gray_png(t / "a.png", 40, 40),
                                   colorize("a.png", extra=("--samples", "-3"))), says=("--samples -3",)),
    Case("samples on a one-colouring model", files(lambda t: gray_png(t / "a.png", 40, 40),
                                                   colorize("a.png", extra=("--samples", "2"))),
         says=("multimodal",)),
    # checkpoints
    Case("corrupt checkpoint", files(write_bytes("bad.pt", os.urandom(300)),
                                     lambda t: ["colorize", str(t / "bad.pt"), str(t / "bad.pt"), "-o", str(t / "o")]),
         says=("bad.pt",)),
    Case("checkpoint of another format", files(lambda t: torch.save({"weights": [1, 2]}, t / "other.pt"),
                                               lambda t: ["info", str(t / "other.pt")]), says=("other.pt",)),
    Case("missing checkpoint", lambda t: ["info", str(t / "none.pt")], says=("none.pt",)),
    Case("evaluate with nothing to evaluate", lambda t: ["evaluate", "-o", str(t / "ev")], says=("--data",)),
    # training configs
    Case("batch size 0 in config", train("optim.batch_size=0"), says=("optim.batch_size",)),
    Case("negative crop size", train("data.crop_size=-2"), says=("data.crop_size",)),
    Case("misspelt generator", train("model.nets.netG=unet_265"), says=("model.nets.netG", "unet_265")),
    Case("steps 0", train(extra=("--steps", "0")), says=("optim.max_steps",)),
    Case("negative steps", train(extra=("--steps", "-5")), says=("optim.max_steps",)),
    Case("config key typo", train("optim.batchsize=2"), says=("optim.batchsize",)),
    Case("config value of the wrong type", train("optim.lr_G=fast"), says=("optim.lr_G",)),
    Case("negative learning rate", train("optim.lr_G=-1"), says=("optim.lr_G",)),
    Case("unknown method", train("model.method=pix3pix"), says=("pix3pix", "pix2pix")),
    Case("unknown data balance", train("data.balance=by_colour"), says=("data.balance",)),
    Case("missing config file", lambda t: ["train", "-c", str(t / "none.yaml")], says=("none.yaml",)),
    Case("config file not a mapping", files(write_text("list.yaml", "- a\n- b\n"),
                                            lambda t: ["train", "-c", str(t / "list.yaml")]), says=("list.yaml",)),
    Case("no training images", train(extra=("--data", "/nonexistent-folder")), says=("nonexistent-folder",)),
    # now handled: these colorize
    Case("1x1 image", files(lambda t: gray_png(t / "dot.png", 1, 1), colorize("dot.png")), status=0),
    Case("4x4 image", files(lambda t: gray_png(t / "four.png", 4, 4), colorize("four.png")), status=0),
    Case("3x500 strip", files(lambda t: gray_png(t / "strip.png", 3, 500), colorize("strip.png")), status=0),
    Case("16-bit png", files(lambda t: gray_png(t / "deep.png", 50, 60, "I;16"), colorize("deep.png")), status=0),
    Case("palette png", files(lambda t: gray_png(t / "pal.png", 50, 60, "P"), colorize("pal.png")), status=0),
    Case("alpha png", files(lambda t: gray_png(t / "alpha.png", 50, 60, "LA"), colorize("alpha.png")), status=0),
    Case("cmyk jpeg", files(lambda t: Image.new("CMYK", (48, 40), (10, 20, 30, 40)).save(t / "cmyk.jpg"),
                            colorize("cmyk.jpg")), status=0),
    Case("unicode and spaces in paths", files(lambda t: gray_png(t / "häuser über 1962.png", 40, 50),
                                              colorize("häuser über 1962.png", out="ausgabe ü")), status=0),
]


@pytest.fixture(scope="module", autouse=True)
def bundled_model():
    if not default_model_path().is_file():
        pytest.fail(f"the bundled model {default_model_path()} is missing from the package")


def test_there_are_at_least_forty_cases():
    assert len(CASES) >= 40
    assert len({c.name for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input(case: Case, tmp_path: Path, capsys):
    code, err = run_main(case.make(tmp_path), capsys)
    assert code == case.status, err
    assert "Traceback" not in err
    if case.status == 2:
        lines = [ln for ln in err.splitlines() if ln.strip()]
        errors = [ln for ln in lines if ln.startswith("error: ")]
        assert len(errors) == 1, err
        for word in case.says:
            assert word in errors[0], (word, errors[0])
    if case.no_output:
        out = tmp_path / case.no_output
        assert not out.exists() or not [p for p in out.rglob("*") if p.is_file()]


def test_a_bad_file_in_a_folder_does_not_stop_the_others(tmp_path, capsys):
    folder = tmp_path / "scans"
    folder.mkdir()
    for i in range(3):
        gray_png(folder / f"good{i}.png", 40 + i, 50)
    truncated_jpeg(folder / "bad.jpg")
    code, err = run_main(["colorize", str(folder), "-o", str(tmp_path / "out")], capsys)
    assert code == 1
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [f"good{i}_color.png" for i in range(3)]
    assert "bad.jpg" in err and "1 of 4 inputs failed" in err


def test_outputs_follow_the_umask(tmp_path, capsys):
    gray_png(tmp_path / "a.png", 40, 40)
    old = os.umask(0o022)
    try:
        import aerocolor.imageio as imageio

        assert imageio.FILE_MODE == 0o644 or old != 0o022  # the mode was read from the umask at import
        code, err = run_main(["colorize", str(tmp_path / "a.png"), "-o", str(tmp_path / "out")], capsys)
    finally:
        os.umask(old)
    assert code == 0, err
    mode = (tmp_path / "out" / "a_color.png").stat().st_mode & 0o777
    assert mode == imageio.FILE_MODE and mode & 0o044  # readable by group and others under umask 022


def test_debug_shows_the_traceback(tmp_path):
    from aerocolor.errors import AerocolorError

    with pytest.raises(AerocolorError, match="nowhere.png"):
        main(["colorize", str(tmp_path / "nowhere.png"), "-o", str(tmp_path / "out"), "--debug"])


def test_tiny_images_keep_their_size_and_gray(tmp_path, capsys):
    from aerocolor.imageio import read_image

    gray_png(tmp_path / "dot.png", 1, 1)
    gray_png(tmp_path / "strip.png", 3, 500)
    for name in ("dot", "strip"):
        code, err = run_main(["colorize", str(tmp_path / f"{name}.png"), "-o", str(tmp_path / "out")], capsys)
        assert code == 0, err
        colour, gray = read_image(tmp_path / "out" / f"{name}_color.png"), read_image(tmp_path / f"{name}.png")
        assert colour.shape == gray.shape + (3,)
        assert np.abs(colour.mean(axis=2) - gray).mean() < 0.08  # lightness kept


@pytest.mark.parametrize("command", ["colorize", "tiles"])
def test_multi_page_tiff_warns_in_one_line_and_plain_scans_raise_no_georeference_warning(
        command, tmp_path, capsys):
    from rasterio.errors import NotGeoreferencedWarning

    multi_page_tiff(tmp_path / "pages.tif", 3)
    multi_page_tiff(tmp_path / "plain.tif", 1)
    args = [command, str(tmp_path / "pages.tif"), str(tmp_path / "plain.tif"), "-o", str(tmp_path / "out")]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code, err = run_main(args + (["--size", "32"] if command == "tiles" else []), capsys)
    assert code == 0, err
    notes = [ln for ln in err.splitlines() if "multi-page" in ln]
    assert notes == [f"warning: {tmp_path / 'pages.tif'}: a multi-page TIFF (3 pages); only the first page is used"]
    assert not [w for w in caught if issubclass(w.category, NotGeoreferencedWarning)]
    assert "NotGeoreferenced" not in err


def test_max_pixels_raises_the_limit_for_one_command(tmp_path, capsys, monkeypatch):
    from PIL import Image

    gray_png(tmp_path / "a.png", 40, 40)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # as AEROCOLOR_MAX_PIXELS=1000 would set it
    args = ["colorize", str(tmp_path / "a.png"), "-o", str(tmp_path / "out")]
    code, err = run_main(args, capsys)
    assert code == 2 and "more than 1,000 pixels" in err
    code, err = run_main(args + ["--max-pixels", "1500"], capsys)
    assert code == 2 and "more than 1,500 pixels" in err
    assert Image.MAX_IMAGE_PIXELS == 1000  # a failed command gives its limit back too
    code, err = run_main(args + ["--max-pixels", "2000"], capsys)
    assert code == 0, err
    assert (tmp_path / "out" / "a_color.png").is_file()
    assert Image.MAX_IMAGE_PIXELS == 1000  # the option ends with its command


def test_the_readme_troubleshooting_table_lists_every_case():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("## Troubleshooting", 1)[1].split("\n## ", 1)[0]
    listed = {row.split(" | ")[0].removeprefix("| ") for row in section.splitlines() if row.startswith("| ")}
    missing = [c.name for c in CASES if c.name not in listed]
    assert not missing, f"add them with scripts/troubleshooting_table.py: {missing}"


def test_tiles_leave_nothing_partial_and_clear_the_staging_of_killed_runs(tmp_path, capsys):
    from aerocolor.data.tiles import STAGING_PREFIX
    from aerocolor.imageio import list_images

    out = tmp_path / "out"
    abandoned = out / f"{STAGING_PREFIX}999999999" / "old"  # a run killed before it moved its tiles
    abandoned.mkdir(parents=True)
    gray_png(abandoned / "0000_0000.png", 64, 64)
    assert list_images(out) == []  # work in progress is never taken for images
    gray_png(tmp_path / "good.png", 128, 128)
    truncated_jpeg(tmp_path / "cut.jpg", 300, keep=0.5)
    args = ["tiles", str(tmp_path / "good.png"), str(tmp_path / "cut.jpg"), "-o", str(out), "--size", "64"]
    code, err = run_main(args, capsys)
    assert code == 2 and "cut.jpg" in err
    assert [p for p in out.rglob("*") if p.is_file()] == []  # good.png's tiles were not kept either
    code, err = run_main(args[:2] + args[3:], capsys)
    assert code == 0, err
    assert sorted(p.name for p in list_images(out)) == [f"000{r}_000{c}.png" for r in (0, 1) for c in (0, 1)]
    assert sorted(p.name for p in out.iterdir()) == ["good", "manifest.jsonl"]  # no staging left
