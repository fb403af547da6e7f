"""The demo: colorize the bundled sample aerial photo with the bundled model."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from .colorize import side_by_side
from .imageio import read_image, write_image
from .infer import default_model_path, load_colorizer
from .metrics import mean_ciede2000

SAMPLE_GRAY = "neon_osbs_029_gray.tif"
SAMPLE_TRUTH = "neon_osbs_029_rgb_0.1m.tif"


def sample_path(name: str) -> Path:
    return Path(str(resources.files("aerocolor") / "samples" / name))


def run_demo(out: Path) -> list[str]:
    colorizer = load_colorizer(default_model_path(), "auto")
    gray = read_image(sample_path(SAMPLE_GRAY))
    truth = read_image(sample_path(SAMPLE_TRUTH))
    colour = colorizer.colorize(gray)
    result = write_image(out / "sample_color.png", colour)
    compare = write_image(out / "sample_compare.png", side_by_side(gray, colour, truth))
    de = mean_ciede2000(colour, truth)
    return [
        f"model: {colorizer.source} ({colorizer.config.model.method}, {colorizer.mode} mode)",
        f"sample: {sample_path(SAMPLE_GRAY).name} (NEON AOP orthophoto, CC BY 4.0; see samples/ATTRIBUTION.md)",
        f"colorized: {result}",
        f"comparison (gray | colorized | original colour): {compare}",
        f"mean CIEDE2000 against the original colour: {de:.2f}",
    ]
