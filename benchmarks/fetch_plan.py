"""How long counting a fetch plan takes, and the memory it needs, for areas from a city to the
whole world on the Web Mercator grid: a bbox (counted from the tile ranges) and a polygon with a
hole (counted row by row). Nothing is fetched.

    python benchmarks/fetch_plan.py                 # zooms 10 15 20 24
    python benchmarks/fetch_plan.py --zooms 15 18
"""

from __future__ import annotations

import argparse
import time
import tracemalloc

import shapely

AREAS = {
    "world bbox": ("-180,-85,180,85", None),
    "Japan bbox": ("129,31,146,46", None),
    "Tokyo polygon with a hole": (None, shapely.Polygon(
        [(139.5, 35.5), (139.9, 35.5), (139.9, 35.8), (139.7, 35.65), (139.5, 35.8)],
        [[(139.6, 35.55), (139.8, 35.55), (139.8, 35.6), (139.6, 35.6)]])),
}


def main() -> None:
    from aerocolor.data.area import Area, bbox_area
    from aerocolor.data.harvest import plan_tiles
    from aerocolor.data.sources import open_xyz

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zooms", type=int, nargs="+", default=[10, 15, 20, 24])
    args = parser.parse_args()
    layer = open_xyz("http://127.0.0.1:9/{z}/{x}/{y}.png")
    print("| area | zoom | tiles | count time (ms) | peak memory (kB) |")
    print("|---|---|---|---|---|")
    for name, (bbox, polygon) in AREAS.items():
        area = bbox_area(bbox) if bbox else Area(polygon, "EPSG:4326", name)
        for zoom in args.zooms:
            tracemalloc.start()
            start = time.perf_counter()
            count = plan_tiles(layer, layer.matrix(str(zoom)), area).count
            took = time.perf_counter() - start
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            print(f"| {name} | {zoom} | {count:,} | {took * 1e3:.1f} | {peak / 1e3:.0f} |", flush=True)


if __name__ == "__main__":
    main()
