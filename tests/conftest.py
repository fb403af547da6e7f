"""Shared fixtures: the real imagery in ../shared/data and small trained models."""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# backend measurements (--backend auto) go to a cache of the test run, not the user's
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="aerocolor-test-cache-")
# float32 on every CPU, so that the tolerances between backends and between runs hold whatever
# the machine; tests/test_precision.py turns the CPU's bfloat16 on where it tests that path
os.environ["AEROCOLOR_CPU_BF16"] = "0"
SHARED_DATA = ROOT.parent / "shared" / "data"


def tiny_overrides(out_dir: Path, steps: int = 40, **extra) -> list[str]:
    """Config overrides for a tiny model: ngf 8, 64x64 crops, 6-level U-Net, CPU."""
    sets = {
        "model.nets.netG": "unet", "model.nets.unet_depth": 6, "model.nets.ngf": 8,
        "model.nets.ndf": 8, "data.crop_size": 64, "optim.max_steps": steps,
        "train.out_dir": str(out_dir), "train.device": "cpu", "train.log_every": 10,
        "train.val_every": 10**9, "train.save_every": 10**9, "train.sample_every": 0,
    }
    sets.update(extra)
    return [f"{k}={v}" for k, v in sets.items()]


class Terminal(io.StringIO):
    """A stderr that says it is a terminal, so progress bars are drawn into it."""

    def isatty(self) -> bool:
        return True


@pytest.fixture
def cpu_bf16_as(monkeypatch):
    """Set what the CPU bfloat16 detection says (True, False), as its environment override does,
    or None: the CPU's own flags. The suite's own setting (float32, above) comes back after."""
    from aerocolor.runtime import cpu_bf16

    def force(on: bool | None) -> None:
        if on is None:
            monkeypatch.delenv("AEROCOLOR_CPU_BF16", raising=False)
        else:
            monkeypatch.setenv("AEROCOLOR_CPU_BF16", "1" if on else "0")
        cpu_bf16.cache_clear()
    yield force
    monkeypatch.undo()
    cpu_bf16.cache_clear()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real imagery not found at {SHARED_DATA} (the ../shared/data folder beside the repository)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def tiny_checkpoint(shared_data: Path, tmp_path_factory) -> Path:
    """A tiny pix2pix (lab mode, instance norm) trained 40 steps on real colour images."""
    from aerocolor.config import load_config
    from aerocolor.train import train

    out = tmp_path_factory.mktemp("tiny_run")
    cfg = load_config(None, tiny_overrides(out, 40, **{
        "model.color_mode": "lab", "model.nets.norm": "instance",
        "data.train": f"[{shared_data / 'color/train/neon'}]",
    }))
    train(cfg, progress=False)
    return out / "last.pt"


@pytest.fixture(scope="session")
def web_models(tiny_checkpoint: Path, tmp_path_factory) -> Path:
    """A --models folder for the web app holding the tiny model as ``tiny.pt``."""
    folder = tmp_path_factory.mktemp("web_models")
    (folder / "tiny.pt").symlink_to(tiny_checkpoint)
    return folder


@pytest.fixture(scope="session")
def web_server(web_models: Path, tmp_path_factory) -> str:
    """The session's one ``aerocolor serve`` on a free loopback port: the tiny model (and the
    bundled one where present), a 2 MB upload limit and a 4 megapixel limit so that the limits
    can be tested with small files. Returns its base URL."""
    from aerocolor.web.launch import served

    log = tmp_path_factory.mktemp("web_server") / "server.log"
    with served(["--models", str(web_models), "--device", "cpu", "--max-upload-mb", "2",
                 "--max-megapixels", "4"], log) as url:
        yield url


@pytest.fixture(scope="session")
def town_tiles(shared_data: Path, tmp_path_factory) -> Path:
    """The 4-band town raster cut into 64 px tiles by ``aerocolor tiles`` (with a manifest)."""
    from typer.testing import CliRunner

    from aerocolor.cli import app

    out = tmp_path_factory.mktemp("town_tiles")
    res = CliRunner().invoke(app, ["tiles", str(shared_data / "geo/town_rgbn_5m.tif"), "-o", str(out),
                                   "--size", "64"])
    assert res.exit_code == 0, res.output
    return out


from servers import wmts  # noqa: E402,F401  (the MapProxy WMTS server fixture, for any test file)
