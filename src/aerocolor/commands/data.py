"""Dataset commands: fetch tiles from map services, cut rasters into tiles, prepare training
folders, preview synthetic ageing."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..errors import AerocolorError
from .app import MaxPixels, app

MAX_LISTED_FAILURES = 10
MAX_TILES = 1_000_000  # a larger plan needs --max-tiles: a typo in a bbox or zoom must not start it


def _open_layers(url: str, layers: list[str], session, style, fmt, tms):
    from ..data.sources import is_xyz, open_wmts, open_xyz

    if is_xyz(url):
        if len(layers) > 1:
            raise AerocolorError("an XYZ template is one layer: give one --layer name, or run "
                                 "fetch once per template into the same --out")
        return [open_xyz(url, layers[0] if layers else "xyz")]
    if not layers:
        raise AerocolorError(f"no layer given for the WMTS at {url}: pass --layer NAME")
    return [open_wmts(url, name, session, style, fmt, tms) for name in layers]


@app.command()
def fetch(
    url: Annotated[str, typer.Argument(
        help="WMTS service/capabilities URL, or an XYZ template with {z}/{x}/{y}.")],
    out: Annotated[Path, typer.Option(
        "--out", "-o", help="Output folder (one sub-folder per layer).")] = Path("tiles"),
    layer: Annotated[list[str] | None, typer.Option(
        "--layer", "-l", help="WMTS layer (repeatable: two layers give aligned pairs).")] = None,
    bbox: Annotated[str | None, typer.Option(
        "--bbox", help="minx,miny,maxx,maxy (lon/lat unless --bbox-crs).")] = None,
    bbox_crs: Annotated[str, typer.Option(
        "--bbox-crs", help="CRS of --bbox, e.g. EPSG:32618.")] = "EPSG:4326",
    aoi: Annotated[Path | None, typer.Option(
        "--aoi",
        help="Area polygon: GeoJSON, GeoPackage, shapefile, or a GeoTIFF's footprint.")] = None,
    zoom: Annotated[str | None, typer.Option(
        "--zoom", "-z", help="Zoom level / tile matrix identifier.")] = None,
    resolution: Annotated[float | None, typer.Option(
        "--resolution", help="Ground resolution in metres per pixel (picks the matrix).")] = None,
    workers: Annotated[int, typer.Option(help="Concurrent downloads.")] = 4,
    rate: Annotated[float | None, typer.Option(
        help="At most this many requests per second.")] = 10.0,
    retries: Annotated[int, typer.Option(
        help="Retries per tile on timeouts, 5xx and broken bodies.")] = 4,
    backoff: Annotated[float, typer.Option(
        help="First retry delay in seconds (doubles each try).")] = 0.5,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for a tile.")] = 30.0,
    style: Annotated[str | None, typer.Option(
        help="WMTS style (default: the layer's default).")] = None,
    fmt: Annotated[str | None, typer.Option(
        "--format", help="WMTS format, e.g. image/jpeg.")] = None,
    tile_matrix_set: Annotated[str | None, typer.Option(
        "--tile-matrix-set", help="WMTS TileMatrixSet (default: the layer's first).")] = None,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Print the tile count and estimated size, fetch nothing.")] = False,
    max_tiles: Annotated[int, typer.Option(
        "--max-tiles", help="Refuse plans of more tiles than this (a guard against a mistyped "
        "bbox or zoom); raise it for a larger harvest.")] = MAX_TILES,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Harvest tiles from a WMTS or XYZ service over a bbox or an area polygon (resumable)."""
    from ..data.area import bbox_area, file_area
    from ..data.harvest import (
        Fetcher,
        RateLimit,
        check_plan_size,
        estimate_tile_bytes,
        harvest,
        nth_job,
        plan_tiles,
        write_pairs,
    )
    from ..data.sources import http_session, probe
    from ..imageio import output_folder

    if (bbox is None) == (aoi is None):
        raise AerocolorError("give the area as one of --bbox minx,miny,maxx,maxy or --aoi FILE")
    area = bbox_area(bbox, bbox_crs) if bbox else file_area(aoi)
    session = http_session(workers)
    layers = _open_layers(url, list(layer or []), session, style, fmt, tile_matrix_set)
    plans = []
    for lyr in layers:
        plans.append(plan := plan_tiles(lyr, lyr.matrix(zoom, resolution), area))
        m = plan.matrix
        typer.echo(f"{lyr.name}: zoom {m.identifier} ({m.ground_resolution:.3g} m/pixel, "
                   f"{m.crs}), {plan.count:,} tiles")
    if not dry_run:
        check_plan_size(plans, max_tiles)
    probe(nth_job(plans).url, timeout)
    fetcher = Fetcher(session, RateLimit(rate), timeout=timeout, retries=retries, backoff=backoff)
    if dry_run:
        total = sum(p.count for p in plans)
        each = estimate_tile_bytes(plans, Fetcher(session, RateLimit(rate), timeout, retries=0))
        typer.echo(f"dry run: {total:,} tiles, about {_data_size(total * each)} "
                   f"({each / 1e3:.0f} kB a tile) into {out}")
        if total > max_tiles:
            typer.echo(f"note: more than --max-tiles {max_tiles:,}: the fetch would need "
                       f"--max-tiles {total}")
        return
    output_folder(out)
    result = harvest(plans, out, fetcher, workers=workers, progress=not quiet)
    typer.echo(result.summary())
    if len(layers) >= 2:
        path, n = write_pairs(out, layers[0].name, layers[1].name)
        typer.echo(f"{n} aligned pairs in {path}")
    if result.failed:
        for tile, reason in list(result.failed.items())[:MAX_LISTED_FAILURES]:
            typer.echo(f"failed: {tile}: {reason}", err=True)
        typer.echo(f"{len(result.failed)} tiles failed; rerun the same command to fetch them",
                   err=True)
        raise typer.Exit(1)


def _data_size(n_bytes: float) -> str:
    """'12.3 MB', '4.5 TB': MB up to 10,000, then the largest unit that keeps the number short."""
    value, units = n_bytes / 1e6, ["MB", "GB", "TB", "PB", "EB"]
    while value >= 10_000 and len(units) > 1:
        value, units = value / 1000, units[1:]
    return f"{value:,.1f} {units[0]}"


def _int_list(text: str | None) -> list[int] | None:
    if not text:
        return None
    try:
        return [int(v) for v in text.split(",")]
    except ValueError:
        raise AerocolorError(f"--bands {text!r}: write band numbers like 1,2,3") from None


@app.command()
def tiles(
    rasters: Annotated[list[Path], typer.Argument(help="GeoTIFFs or large scans.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("tiles"),
    size: Annotated[int, typer.Option(help="Tile size in pixels.")] = 256,
    stride: Annotated[int | None, typer.Option(help="Step between tiles (default: size).")] = None,
    max_nodata: Annotated[float, typer.Option(
        help="Skip tiles with more no-data than this share.")] = 0.5,
    bands: Annotated[str | None, typer.Option(
        help="Bands to keep, e.g. 1,2,3 (default: RGB or gray).")] = None,
    require_georef: Annotated[bool, typer.Option(help="Refuse rasters without a CRS.")] = False,
    max_pixels: MaxPixels = None,
) -> None:
    """Cut rasters into tiles; each tile's georeference goes into OUT/manifest.jsonl."""
    from ..data.tiles import cut_rasters
    from ..imageio import output_folder

    output_folder(out)
    result = cut_rasters(rasters, out, size=size, stride=stride, max_nodata=max_nodata,
                         bands=_int_list(bands), require_georef=require_georef)
    for note in result.notes:
        typer.echo(f"warning: {note}", err=True)
    typer.echo(f"{result.written} tiles written to {out}, {result.skipped} mostly no-data skipped")


@app.command()
def prepare(
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("dataset"),
    color: Annotated[list[Path] | None, typer.Option(
        "--color", help="Folder of colour tiles (repeatable).")] = None,
    old: Annotated[list[Path] | None, typer.Option(
        "--old", help="Folder of old gray tiles (repeatable).")] = None,
    val: Annotated[float, typer.Option(help="Share of tiles for validation.")] = 0.1,
    test: Annotated[float, typer.Option(help="Share of tiles for testing.")] = 0.1,
    block: Annotated[int, typer.Option(help="Split blocks of BLOCK x BLOCK tiles.")] = 8,
    seed: Annotated[int, typer.Option(help="Seed of the block order.")] = 0,
    age: Annotated[str | None, typer.Option(
        help="Age the gray versions: 'default' or e.g. grain=0.8,blur=0.3,seed=1.")] = None,
    aligned: Annotated[bool, typer.Option(
        help="Also write gray|colour pairs (reference pix2pix format).")] = False,
    overwrite: Annotated[bool, typer.Option(
        help="Replace a dataset already prepared in --out (else it is refused).")] = False,
) -> None:
    """Build paired / unpaired training folders with a spatial train/val/test split."""
    from ..data.ageing import parse_ageing
    from ..data.prepare import prepare as prepare_folders

    counts = prepare_folders(list(color or []), list(old or []), out, val=val, test=test,
                             block=block, seed=seed, ageing=parse_ageing(age) if age else None,
                             aligned=aligned, overwrite=overwrite)
    for note in counts.pop("warnings"):
        typer.echo(f"warning: {note}", err=True)
    for kind, per_split in counts.items():
        if sum(per_split.values()):
            typer.echo(f"{kind}: " + ", ".join(f"{s} {n}" for s, n in per_split.items()))
    typer.echo(f"written to {out} (splits in {out / 'splits.csv'})")


@app.command("age-preview")
def age_preview(
    images: Annotated[list[str], typer.Argument(help="Colour images, folders or glob patterns.")],
    out: Annotated[Path, typer.Option(
        "--out", "-o", help="PNG grid to write.")] = Path("ageing.png"),
    age: Annotated[str, typer.Option(
        help="'default' or effect strengths, e.g. grain=0.8,seed=2.")] = "default",
    variants: Annotated[int, typer.Option(help="Aged versions per image.")] = 4,
    count: Annotated[int, typer.Option(help="At most this many images.")] = 4,
) -> None:
    """Write a grid: each image, its plain gray, then aged versions."""
    from ..colorize import expand_inputs
    from ..data.ageing import parse_ageing, preview_grid
    from ..imageio import read_image, write_image

    files = expand_inputs(images)[:count]
    write_image(out, preview_grid([read_image(f) for f in files], parse_ageing(age), variants))
    typer.echo(str(out))
