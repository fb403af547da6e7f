"""What a job made, catalogued: a VRT mosaic of the georeferenced outputs and a STAC Item each.

The VRT is written from rasterio metadata (GDAL's own gdalbuildvrt lives in the ``osgeo``
bindings, which rasterio does not ship): every output becomes a source placed on one grid at the
finest resolution among them; where frames overlap, the later one is drawn on top, and masked
pixels (no-data) let the ones below show through.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from xml.sax.saxutils import escape

import rasterio
from rasterio.enums import MaskFlags
from rasterio.warp import transform_geom

from .. import __version__
from ..errors import AerocolorError
from ..imageio import atomic_write

MOSAIC_NAME = "mosaic.vrt"
STAC_FOLDER = "stac"
GDAL_TYPES = {"uint8": "Byte", "uint16": "UInt16", "int16": "Int16", "float32": "Float32"}
COLOURS = ("Red", "Green", "Blue")
PROCESSING_EXT = "https://stac-extensions.github.io/processing/v1.2.0/schema.json"
PROJECTION_EXT = "https://stac-extensions.github.io/projection/v2.0.0/schema.json"


@dataclass(frozen=True)
class Footprint:
    """An output raster's grid, as the mosaic needs it."""

    path: Path
    crs: object
    transform: object
    width: int
    height: int
    dtype: str
    nodata: float | None
    masked: bool


def footprint(path: Path) -> Footprint | None:
    """The grid of a georeferenced, north-up output; None for plain images and rotated grids."""
    with rasterio.open(path) as src:
        t = src.transform
        if src.crs is None or t.b or t.d or t.is_identity:
            return None
        return Footprint(path, src.crs, t, src.width, src.height, src.dtypes[0], src.nodata,
                         MaskFlags.per_dataset in src.mask_flag_enums[0])


def write_mosaic(out: Path, tifs: list[Path], warn=print) -> Path | None:
    """``out`` (a .vrt) over the georeferenced outputs among ``tifs``; those in another CRS than
    the most common one are left out (with a warning). None when there are none."""
    prints = [f for f in (footprint(p) for p in tifs) if f is not None]
    if not prints:
        return None
    crs = Counter(f.crs.to_string() for f in prints).most_common(1)[0][0]
    other = [str(f.path) for f in prints if f.crs.to_string() != crs]
    if other:
        warn(f"{out.name}: {len(other)} outputs in another CRS than {crs} left out "
             f"(e.g. {other[0]}); reproject them for one mosaic")
    prints = [f for f in prints if f.crs.to_string() == crs]
    dtype = Counter(f.dtype for f in prints).most_common(1)[0][0]
    prints = [f for f in prints if f.dtype == dtype]
    res_x = min(abs(f.transform.a) for f in prints)
    res_y = min(abs(f.transform.e) for f in prints)
    bounds = [rasterio.transform.array_bounds(f.height, f.width, f.transform) for f in prints]
    west, east = min(b[0] for b in bounds), max(b[2] for b in bounds)
    south, north = min(b[1] for b in bounds), max(b[3] for b in bounds)
    width, height = math.ceil(round((east - west) / res_x, 6)), math.ceil(round((north - south) / res_y, 6))
    nodata = prints[0].nodata if all(f.nodata == prints[0].nodata for f in prints) else None
    lines = [f'<VRTDataset rasterXSize="{width}" rasterYSize="{height}">',
             f"  <SRS>{escape(prints[0].crs.to_wkt())}</SRS>",
             f"  <GeoTransform>{west!r}, {res_x!r}, 0.0, {north!r}, 0.0, {-res_y!r}</GeoTransform>"]
    for band, colour in enumerate(COLOURS, 1):
        lines.append(f'  <VRTRasterBand dataType="{GDAL_TYPES.get(dtype, "Byte")}" band="{band}">')
        lines.append(f"    <ColorInterp>{colour}</ColorInterp>")
        if nodata is not None:
            lines.append(f"    <NoDataValue>{nodata!r}</NoDataValue>")
        for f, (w, s, e, n) in zip(prints, bounds, strict=True):
            lines += source_xml(f, band, out.parent, (w - west) / res_x, (north - n) / res_y,
                                (e - w) / res_x, (n - s) / res_y)
        lines.append("  </VRTRasterBand>")
    lines.append("</VRTDataset>")
    text = "\n".join(lines) + "\n"
    return atomic_write(out, lambda tmp: Path(tmp).write_text(text))


def source_xml(f: Footprint, band: int, vrt_dir: Path, x: float, y: float, w: float, h: float
               ) -> list[str]:
    """One output's band placed at (x, y) size (w, h) in mosaic pixels; a masked output brings
    its mask so that no-data does not cover the frames below."""
    try:
        name, relative = f.path.resolve().relative_to(vrt_dir.resolve()).as_posix(), 1
    except ValueError:
        name, relative = str(f.path.resolve()), 0
    return ["    <ComplexSource>",
            f'      <SourceFilename relativeToVRT="{relative}">{escape(name)}</SourceFilename>',
            f"      <SourceBand>{band}</SourceBand>",
            f'      <SrcRect xOff="0" yOff="0" xSize="{f.width}" ySize="{f.height}" />',
            f'      <DstRect xOff="{x:.6f}" yOff="{y:.6f}" xSize="{w:.6f}" ySize="{h:.6f}" />',
            *(["      <UseMaskBand>true</UseMaskBand>"] if f.masked else []),
            *([f"      <NODATA>{f.nodata!r}</NODATA>"] if f.nodata is not None and not f.masked else []),
            "    </ComplexSource>"]


def stac_item(output: Path, source: Path, model: dict, options: dict, created: datetime):
    """A STAC Item for one output: its footprint (WGS 84) and projection where georeferenced,
    the output as the data asset, the source as a derived_from link, and how it was made (model
    name, version, checksum and config; seed; colour reference; software)."""
    import pystac

    props: dict = {"created": created.isoformat(), "processing:software": {"aerocolor": __version__},
                   "processing:lineage": f"colorized from {source.name} by aerocolor",
                   "aerocolor:model": model, "aerocolor:seed": options.get("seed"),
                   "aerocolor:reference": options.get("style"), "aerocolor:options": options}
    geometry = bbox = None
    extensions = [PROCESSING_EXT]
    with rasterio.open(output) as src:
        if src.crs is not None and not src.transform.is_identity:
            w, s, e, n = src.bounds
            ring = [[w, s], [e, s], [e, n], [w, n], [w, s]]
            geometry = transform_geom(src.crs, "EPSG:4326", {"type": "Polygon", "coordinates": [ring]})
            xs = [p[0] for p in geometry["coordinates"][0]]
            ys = [p[1] for p in geometry["coordinates"][0]]
            bbox = [min(xs), min(ys), max(xs), max(ys)]
            geometry = json.loads(json.dumps(geometry))  # tuples -> lists, as GeoJSON readers expect
            epsg = src.crs.to_epsg()
            props.update({"proj:code": f"EPSG:{epsg}" if epsg else None, "proj:shape": [src.height, src.width],
                          "proj:transform": list(src.transform)[:6]})
            if epsg is None:
                props["proj:wkt2"] = src.crs.to_wkt()
            extensions.append(PROJECTION_EXT)
        acquired = src.tags().get("TIFFTAG_DATETIME")
    when = parse_tiff_datetime(acquired) or created
    item = pystac.Item(id=output.stem, geometry=geometry, bbox=bbox, datetime=when, properties=props,
                       stac_extensions=extensions)
    media = pystac.MediaType.GEOTIFF if output.suffix.lower() in (".tif", ".tiff") else pystac.MediaType.PNG
    item.add_asset("data", pystac.Asset(href=f"../{output.name}", media_type=media, roles=["data"],
                                        title="colorized image"))
    item.add_link(pystac.Link(rel="derived_from", target=str(source.resolve()), title="gray source"))
    return item


def parse_tiff_datetime(value: str | None) -> datetime | None:
    """A TIFF DateTime tag ("YYYY:MM:DD HH:MM:SS") as UTC, or None."""
    try:
        return datetime.strptime(value or "", "%Y:%m:%d %H:%M:%S").replace(tzinfo=timezone.utc)
    except ValueError:
        return None


def write_stac(out_dir: Path, entries: list[tuple[Path, Path, dict, dict]]) -> list[Path]:
    """``out/stac/ITEM.json`` for each (output, source, model, options) and a ``catalog.json``
    linking them."""
    import pystac

    folder = out_dir / STAC_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    created = datetime.now(timezone.utc).replace(microsecond=0)
    catalog = pystac.Catalog(id="aerocolor-archive", description="Colorized aerial photographs (aerocolor)")
    written = []
    for output, source, model, options in entries:
        try:
            item = stac_item(output, source, model, options, created)
        except rasterio.errors.RasterioIOError as e:
            raise AerocolorError(f"{output}: cannot read the output back for its STAC item ({e})") from None
        item.add_link(pystac.Link(rel="root", target="./catalog.json", media_type=pystac.MediaType.JSON))
        item.add_link(pystac.Link(rel="parent", target="./catalog.json", media_type=pystac.MediaType.JSON))
        written.append(save_json(folder / f"{item.id}.json", item.to_dict(include_self_link=False,
                                                                          transform_hrefs=False)))
    cat = catalog.to_dict(include_self_link=False, transform_hrefs=False)
    cat["links"] = [{"rel": "root", "href": "./catalog.json", "type": "application/json"}] + [
        {"rel": "item", "href": f"./{p.name}", "type": "application/json"} for p in written]
    save_json(folder / "catalog.json", cat)
    return written


def save_json(path: Path, data: dict) -> Path:
    text = json.dumps(data, indent=2)
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text))
