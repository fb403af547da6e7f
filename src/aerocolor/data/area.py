"""Areas of interest: a bounding box in any CRS, a polygon from a vector file (GeoJSON,
GeoPackage, shapefile), or the footprint of a georeferenced raster; reprojected to a tile grid."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import shapely
from shapely.geometry.base import BaseGeometry
from shapely.ops import transform

from ..errors import AerocolorError

RASTER_SUFFIXES = (".tif", ".tiff", ".vrt", ".jp2", ".img")


class AreaError(AerocolorError):
    pass


@dataclass(frozen=True)
class Area:
    geometry: BaseGeometry
    crs: str
    label: str

    def to_crs(self, crs: str) -> BaseGeometry:
        """The area in ``crs``, edges densified so that curved reprojections stay faithful."""
        from pyproj import CRS, Transformer

        if CRS.from_user_input(crs) == CRS.from_user_input(self.crs):
            return self.geometry
        t = Transformer.from_crs(self.crs, crs, always_xy=True)
        dense = shapely.segmentize(self.geometry, max(_extent(self.geometry) / 64, 1e-9))
        return transform(t.transform, dense)


def _extent(geom: BaseGeometry) -> float:
    x0, y0, x1, y1 = geom.bounds
    return max(x1 - x0, y1 - y0)


def bbox_area(text: str, crs: str = "EPSG:4326") -> Area:
    """'minx,miny,maxx,maxy' in ``crs`` (lon/lat by default)."""
    try:
        x0, y0, x1, y1 = (float(v) for v in text.replace(" ", "").split(","))
    except ValueError:
        raise AreaError(f"--bbox {text!r}: write it as minx,miny,maxx,maxy (lon/lat unless "
                        "--bbox-crs is given)") from None
    if x0 >= x1 or y0 >= y1:
        raise AreaError(f"--bbox {text!r}: min must be below max (minx,miny,maxx,maxy)")
    return Area(shapely.box(x0, y0, x1, y1), crs, f"bbox {text}")


def _raster_area(path: Path) -> Area:
    import rasterio

    from ..imageio import georeference_optional

    with georeference_optional(), rasterio.open(path) as src:  # a missing georeference is refused below
        if src.crs is None or src.transform.is_identity:
            raise AreaError(f"{path}: not georeferenced (no CRS or transform); give a "
                            "georeferenced GeoTIFF or a vector file as the area")
        return Area(shapely.box(*src.bounds), src.crs.to_string(), str(path))


def file_area(path: str | Path) -> Area:
    """The union of the polygons in a vector file, or a raster's footprint."""
    path = Path(path)
    if not path.exists():
        raise AreaError(f"{path}: no such file; give a GeoJSON, GeoPackage, shapefile or GeoTIFF")
    if path.suffix.lower() in RASTER_SUFFIXES:
        return _raster_area(path)
    import pyogrio.raw
    from pyogrio.errors import DataSourceError

    try:
        meta, _, wkb, _ = pyogrio.raw.read(path, columns=[])
    except DataSourceError as e:
        raise AreaError(f"{path}: not a readable vector file ({e}); give GeoJSON, GeoPackage or "
                        "a shapefile") from None
    geoms = [g for g in shapely.from_wkb(wkb) if g is not None and not g.is_empty]
    polys = [g for g in geoms if g.geom_type in ("Polygon", "MultiPolygon")]
    if not polys:
        raise AreaError(f"{path}: holds no polygon; draw the area of interest as a polygon")
    return Area(shapely.union_all(polys), meta.get("crs") or "EPSG:4326", str(path))
