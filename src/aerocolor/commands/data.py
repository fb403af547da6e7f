"""Dataset commands: fetch tiles from map services, cut rasters into tiles, prepare training
folders, preview synthetic ageing."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ..cli import app
from ..errors import AerocolorError

MAX_LISTED_FAILURES = 10


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
    url: Annotated[str, typer.Argument(help="WMTS service/capabilities URL, or an XYZ template with {z}/{x}/{y}.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder (one sub-folder per layer).")] = Path("tiles"),
    layer: Annotated[Optional[list[str]], typer.Option("--layer", "-l", help="WMTS layer (repeatable: two layers give aligned pairs).")] = None,
    bbox: Annotated[Optional[str], typer.Option("--bbox", help="minx,miny,maxx,maxy (lon/lat unless --bbox-crs).")] = None,
    bbox_crs: Annotated[str, typer.Option("--bbox-crs", help="CRS of --bbox, e.g. EPSG:32618.")] = "EPSG:4326",
    aoi: Annotated[Optional[Path], typer.Option("--aoi", help="Area polygon: GeoJSON, GeoPackage, shapefile, or a GeoTIFF's footprint.")] = None,
    zoom: Annotated[Optional[str], typer.Option("--zoom", "-z", help="Zoom level / tile matrix identifier.")] = None,
    resolution: Annotated[Optional[float], typer.Option("--resolution", help="Ground resolution in metres per pixel (picks the matrix).")] = None,
    workers: Annotated[int, typer.Option(help="Concurrent downloads.")] = 4,
    rate: Annotated[Optional[float], typer.Option(help="At most this many requests per second.")] = 10.0,
    retries: Annotated[int, typer.Option(help="Retries per tile on timeouts, 5xx and broken bodies.")] = 4,
    backoff: Annotated[float, typer.Option(help="First retry delay in seconds (doubles each try).")] = 0.5,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for a tile.")] = 30.0,
    style: Annotated[Optional[str], typer.Option(help="WMTS style (default: the layer's default).")] = None,
    fmt: Annotated[Optional[str], typer.Option("--format", help="WMTS format, e.g. image/jpeg.")] = None,
    tile_matrix_set: Annotated[Optional[str], typer.Option("--tile-matrix-set", help="WMTS TileMatrixSet (default: the layer's first).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the tile count and estimated size, fetch nothing.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Harvest tiles from a WMTS or XYZ service over a bbox or an area polygon (resumable)."""
    from ..data.area import bbox_area, file_area
    from ..data.harvest import Fetcher, RateLimit, estimate_tile_bytes, harvest, plan_tiles, write_pairs
    from ..data.sources import http_session, probe

    if (bbox is None) == (aoi is None):
        raise AerocolorError("give the area as exactly one of --bbox minx,miny,maxx,maxy or --aoi FILE")
    area = bbox_area(bbox, bbox_crs) if bbox else file_area(aoi)
    session = http_session(workers)
    layers = _open_layers(url, list(layer or []), session, style, fmt, tile_matrix_set)
    jobs = []
    for lyr in layers:
        matrix = lyr.matrix(zoom, resolution)
        jobs += plan_tiles(lyr, matrix, area)
        typer.echo(f"{lyr.name}: zoom {matrix.identifier} ({matrix.ground_resolution:.3g} m/pixel, "
                   f"{matrix.crs}), {sum(j.layer is lyr for j in jobs)} tiles")
    probe(session, jobs[0].url, timeout)
    fetcher = Fetcher(session, RateLimit(rate), timeout=timeout, retries=retries, backoff=backoff)
    if dry_run:
        each = estimate_tile_bytes(jobs, Fetcher(session, RateLimit(rate), timeout=timeout, retries=0))
        typer.echo(f"dry run: {len(jobs)} tiles, about {len(jobs) * each / 1e6:.1f} MB "
                   f"({each / 1e3:.0f} kB a tile) into {out}")
        return
    result = harvest(jobs, out, fetcher, workers=workers, progress=not quiet)
    typer.echo(result.summary())
    if len(layers) >= 2:
        path, n = write_pairs(out, layers[0].name, layers[1].name)
        typer.echo(f"{n} aligned pairs in {path}")
    if result.failed:
        for tile, reason in list(result.failed.items())[:MAX_LISTED_FAILURES]:
            typer.echo(f"failed: {tile}: {reason}", err=True)
        typer.echo(f"{len(result.failed)} tiles failed; rerun the same command to fetch them", err=True)
        raise typer.Exit(1)
