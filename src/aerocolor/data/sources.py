"""Map services as tile grids: OGC WMTS layers (capabilities read with OWSLib) and XYZ templates.

A layer is a URL template with ``{TileMatrix}``, ``{TileRow}`` and ``{TileCol}`` plus its tile
matrices (origin, resolution, tile size, limits), so WMTS KVP, WMTS REST and XYZ services are
harvested by one code path.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import requests

from .. import __version__
from ..errors import AerocolorError

USER_AGENT = f"aerocolor/{__version__} (historical aerial photo colorization; python-requests)"
OGC_PIXEL_SIZE = 0.00028  # metres per pixel behind every WMTS scale denominator
METRES_PER_DEGREE = 2 * math.pi * 6378137 / 360
XYZ_TOKENS = {"{z}": "{TileMatrix}", "{x}": "{TileCol}", "{y}": "{TileRow}"}
FORMAT_SUFFIXES = {"image/png": "png", "image/jpeg": "jpg", "image/jpg": "jpg",
                   "image/webp": "webp", "image/tiff": "tif"}


class SourceError(AerocolorError):
    pass


@dataclass(frozen=True)
class TileMatrix:
    """One zoom level of a tile grid; x grows east, y north, rows grow south from ``top``."""

    identifier: str
    crs: str
    left: float
    top: float
    resolution: float
    tile_width: int
    tile_height: int
    min_row: int
    max_row: int
    min_col: int
    max_col: int
    metres_per_unit: float = 1.0

    @property
    def ground_resolution(self) -> float:
        return self.resolution * self.metres_per_unit

    def tile_bounds(self, row: int, col: int) -> tuple[float, float, float, float]:
        w, h = self.tile_width * self.resolution, self.tile_height * self.resolution
        left, top = self.left + col * w, self.top - row * h
        return (left, top - h, left + w, top)

    def tile_range(self, bounds: tuple[float, float, float, float]) -> tuple[int, int, int, int]:
        """Inclusive (row0, row1, col0, col1) of the tiles touching ``bounds``, within limits."""
        w, h = self.tile_width * self.resolution, self.tile_height * self.resolution
        eps = 1e-9
        col0 = math.floor((bounds[0] - self.left) / w + eps)
        col1 = math.ceil((bounds[2] - self.left) / w - eps) - 1
        row0 = math.floor((self.top - bounds[3]) / h + eps)
        row1 = math.ceil((self.top - bounds[1]) / h - eps) - 1
        return (max(row0, self.min_row), min(row1, self.max_row),
                max(col0, self.min_col), min(col1, self.max_col))


@dataclass(frozen=True)
class Layer:
    name: str
    template: str
    suffix: str
    matrices: tuple[TileMatrix, ...]
    wgs84_bounds: tuple[float, float, float, float] | None = None

    def tile_url(self, matrix: TileMatrix, row: int, col: int) -> str:
        return (self.template.replace("{TileMatrix}", matrix.identifier)
                .replace("{TileRow}", str(row)).replace("{TileCol}", str(col)))

    def matrix(self, zoom: str | None = None, resolution: float | None = None) -> TileMatrix:
        """The matrix named ``zoom``, or the coarsest at least as fine as ``resolution`` metres."""
        if zoom is not None:
            for m in self.matrices:
                if m.identifier == str(zoom) or (m.identifier.isdigit() and str(zoom).isdigit()
                                                 and int(m.identifier) == int(zoom)):
                    return m
            names = ", ".join(m.identifier for m in self.matrices)
            raise SourceError(f"layer {self.name!r} has no zoom level {zoom!r}: choose one of "
                              f"{names}")
        if resolution is None:
            raise SourceError("no zoom level given: pass --zoom Z or --resolution METRES")
        fine = [m for m in self.matrices if m.ground_resolution <= resolution * 1.0001]
        if not fine:
            return min(self.matrices, key=lambda m: m.ground_resolution)
        return max(fine, key=lambda m: m.ground_resolution)


def http_session(pool: int = 8) -> requests.Session:
    """A session naming aerocolor in its User-Agent, with a connection pool of ``pool``."""
    s = requests.Session()
    s.headers["User-Agent"] = USER_AGENT
    adapter = requests.adapters.HTTPAdapter(pool_connections=pool, pool_maxsize=pool)
    s.mount("http://", adapter)
    s.mount("https://", adapter)
    return s


def get_or_explain(session: requests.Session, url: str, timeout: float = 30) -> requests.Response:
    """GET ``url``; an unreachable host or an HTTP error becomes a one-line SourceError."""
    host = urlsplit(url).netloc or url
    try:
        r = session.get(url, timeout=timeout)
    except requests.RequestException as e:
        raise SourceError(f"cannot reach {host} ({type(e).__name__}): check the URL and the "
                          "network") from None
    if r.status_code >= 400:
        raise SourceError(f"{url}: HTTP {r.status_code}; check the service URL")
    return r


def probe(url: str, timeout: float = 30) -> None:
    """Fail fast with a one-line error when the host of ``url`` takes no connection at all
    (a TCP connect only: no tile is requested twice)."""
    import socket

    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        socket.create_connection((parts.hostname or "", port), timeout=timeout).close()
    except OSError as e:
        raise SourceError(f"cannot reach {parts.netloc or url} ({e.strerror or type(e).__name__}): "
                          "check the URL and the network") from None


def crs_name(text: str) -> str:
    """'urn:ogc:def:crs:EPSG::3857' or 'EPSG:3857' -> 'EPSG:3857' (other CRS text unchanged)."""
    m = re.search(r"EPSG[:/]+(?:\d+(?:\.\d+)*[:/]+)?(\d+)$", text.strip())
    return f"EPSG:{m.group(1)}" if m else text


def _axis_facts(crs: str) -> tuple[bool, float]:
    """(northing first?, metres per CRS unit) for a CRS."""
    from pyproj import CRS

    c = CRS.from_user_input(crs)
    first = c.axis_info[0] if c.axis_info else None
    north_first = first is not None and first.direction.lower() in ("north", "south")
    degrees = first is not None and "degree" in first.unit_name.lower()
    factor = first.unit_conversion_factor if first else 1.0
    return north_first, (METRES_PER_DEGREE if degrees else factor)


def _wmts_matrices(wmts, layer, tms_id: str) -> tuple[TileMatrix, ...]:
    tms = wmts.tilematrixsets[tms_id]
    crs = crs_name(tms.crs)
    north_first, mpu = _axis_facts(crs)
    limits = getattr(layer.tilematrixsetlinks.get(tms_id), "tilematrixlimits", {}) or {}
    out = []
    for ident, tm in tms.tilematrix.items():
        a, b = tm.topleftcorner
        left, top = (b, a) if north_first else (a, b)
        lim = limits.get(ident)
        out.append(TileMatrix(
            identifier=ident, crs=crs, left=left, top=top,
            resolution=tm.scaledenominator * OGC_PIXEL_SIZE / mpu,
            tile_width=int(tm.tilewidth), tile_height=int(tm.tileheight),
            min_row=int(lim.mintilerow) if lim else 0,
            max_row=int(lim.maxtilerow) if lim else int(tm.matrixheight) - 1,
            min_col=int(lim.mintilecol) if lim else 0,
            max_col=int(lim.maxtilecol) if lim else int(tm.matrixwidth) - 1,
            metres_per_unit=mpu,
        ))
    return tuple(out)


def _kvp_template(wmts, base_url: str, layer: str, style: str, fmt: str, tms: str) -> str:
    try:
        url = next(m["url"] for m in wmts.getOperationByName("GetTile").methods
                   if m.get("type", "Get").lower() == "get")
    except (KeyError, StopIteration):
        url = base_url
    query = urlencode({"SERVICE": "WMTS", "REQUEST": "GetTile", "VERSION": "1.0.0", "LAYER": layer,
                       "STYLE": style, "FORMAT": fmt, "TILEMATRIXSET": tms})
    sep = "" if url.endswith(("?", "&")) else ("&" if "?" in url else "?")
    return f"{url}{sep}{query}&TILEMATRIX={{TileMatrix}}&TILEROW={{TileRow}}&TILECOL={{TileCol}}"


def open_wmts(url: str, layer: str, session: requests.Session, style: str | None = None,
              fmt: str | None = None, tile_matrix_set: str | None = None) -> Layer:
    """Read a WMTS GetCapabilities document and describe one of its layers as a tile grid."""
    from owslib.wmts import WebMapTileService

    is_caps = "request=getcapabilities" in url.lower() or url.lower().endswith(".xml")
    caps_url = url if is_caps else (
        f"{url}{'&' if '?' in url else '?'}SERVICE=WMTS&REQUEST=GetCapabilities&VERSION=1.0.0")
    xml = get_or_explain(session, caps_url).content
    try:
        wmts = WebMapTileService(caps_url, xml=xml)
    except Exception as e:  # OWSLib raises assorted parser errors
        raise SourceError(f"{caps_url}: not a WMTS capabilities document ({e}); check the "
                          "URL") from None
    if layer not in wmts.contents:
        names = ", ".join(sorted(wmts.contents)) or "none"
        raise SourceError(f"unknown layer {layer!r} at {url}: choose one of {names}")
    meta = wmts.contents[layer]
    tms = tile_matrix_set or next(iter(meta.tilematrixsetlinks), None)
    if tms not in meta.tilematrixsetlinks or tms not in wmts.tilematrixsets:
        raise SourceError(f"layer {layer!r} has no tile matrix set {tms!r}: choose one of "
                          f"{', '.join(meta.tilematrixsetlinks)}")
    styles = list(meta.styles or {})
    style = style or next((s for s, v in (meta.styles or {}).items() if v.get("isDefault")),
                          styles[0] if styles else "default")
    fmt = fmt or (meta.formats[0] if meta.formats else "image/png")
    rest = [r for r in (meta.resourceURLs or []) if r.get("resourceType") == "tile"
            and r.get("format") == fmt]
    if rest:
        template = (rest[0]["template"].replace("{Style}", style).replace("{style}", style)
                    .replace("{TileMatrixSet}", tms))
    else:
        template = _kvp_template(wmts, caps_url.split("?")[0] + "?", layer, style, fmt, tms)
    bbox = getattr(meta, "boundingBoxWGS84", None)
    return Layer(name=layer, template=template, suffix=FORMAT_SUFFIXES.get(fmt, "png"),
                 matrices=_wmts_matrices(wmts, meta, tms),
                 wgs84_bounds=tuple(bbox) if bbox else None)


def open_xyz(template: str, name: str = "xyz") -> Layer:
    """An XYZ URL template ({z}/{x}/{y}) on the Web Mercator grid, zoom 0-24."""
    import morecantile

    if not all(t in template for t in XYZ_TOKENS):
        raise SourceError(f"{template}: an XYZ template needs {{z}}, {{x}} and {{y}}")
    for token, wmts_token in XYZ_TOKENS.items():
        template = template.replace(token, wmts_token)
    tms = morecantile.tms.get("WebMercatorQuad")
    matrices = []
    for z in range(25):
        m = tms.matrix(z)
        matrices.append(TileMatrix(
            identifier=str(z), crs="EPSG:3857", left=m.pointOfOrigin[0], top=m.pointOfOrigin[1],
            resolution=m.cellSize, tile_width=m.tileWidth, tile_height=m.tileHeight,
            min_row=0, max_row=m.matrixHeight - 1, min_col=0, max_col=m.matrixWidth - 1))
    suffix = Path(urlsplit(template).path).suffix.lstrip(".").lower()
    return Layer(name=name, template=template, suffix={"jpeg": "jpg"}.get(suffix, suffix or "png"),
                 matrices=tuple(matrices))


def is_xyz(url: str) -> bool:
    return "{z}" in url
