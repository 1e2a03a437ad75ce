"""The eleven satellite scenes: footprints in a west-east chain, sensors, dates and image ids."""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from grouputils.core.errors import ConfigError
from grouputils.teaching.synthetic.parameters import SCENE_WEIGHTS, SHAPE, Scale

__all__ = ["OUR_NAME", "Scene", "layout_scenes", "scene_targets"]


@dataclass(frozen=True)
class Scene:
    index: int  # 0-based, file order
    sensor: str
    date: str  # YYYYMMDD
    time: str  # hhmmss
    image: str
    rect: tuple[float, float, float, float]  # west, south, east, north in the local frame (m)
    shift: tuple[float, float]  # misregistration (m)
    target: int

    @property
    def filename(self) -> str:
        return f"scene{self.index + 1:02d}_{self.sensor}_{self.date}.gpkg"  # matches OUR_NAME


OUR_NAME = re.compile(r"scene\d{2}_WV0[23]_\d{8}\.gpkg")
_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")


def _image_id(rng: np.random.Generator, sensor: str, date: str, time: str) -> str:
    """A scene id in the style of the Maxar/PGC names in the real files."""
    prefix = {"WV02": "103001", "WV03": "104001"}[sensor]
    catid = prefix + "".join(rng.choice(list("0123456789ABCDEF"), size=10))
    yy, mon, dd = date[2:4], _MONTHS[int(date[4:6]) - 1], date[6:8]
    order = "5" + "".join(rng.choice(list("0123456789"), size=11))
    part = int(rng.integers(1, 10))
    return (
        f"{sensor}_{date}{time}_{catid}_{yy}{mon}{dd}{time}-M1BS-{order}_01_P{part:03d}_u16rf3413_p"
    )


def scene_targets(scale: Scale, total_features: int | None) -> np.ndarray:
    total = scale.total_features if total_features is None else int(total_features)
    if total < 11 * 20:
        raise ConfigError(f"total_features must be at least {11 * 20}, got {total}")
    w = np.asarray(SCENE_WEIGHTS, dtype="f8")
    return np.maximum(np.round(total * w / w.sum()).astype("i8"), 20)


def layout_scenes(seed: int, scale: Scale, targets: np.ndarray) -> list[Scene]:
    """Eleven footprints in a west-east chain; each overlaps its neighbours only."""
    rng = np.random.default_rng([seed, 1])
    n = len(targets)
    # Footprints grow with the scene's number of polygons (its density varies too).
    rel = targets / targets.mean()
    widths = scale.scene_width_m * rel**0.45 * rng.uniform(0.9, 1.1, n)
    heights = scale.scene_height_m * rel**0.3 * rng.uniform(0.9, 1.1, n)
    overlaps = rng.uniform(0.18, 0.28, n - 1) * np.minimum(widths[:-1], widths[1:])
    west = np.zeros(n)
    for k in range(1, n):
        west[k] = west[k - 1] + widths[k - 1] - overlaps[k - 1]
    west -= (west[-1] + widths[-1]) / 2  # centre the chain on the region's centre
    south = -heights / 2 + rng.uniform(-0.15, 0.15, n) * heights
    # Misregistration: each scene is off from the one before by 1-2 m in some direction.
    step = rng.uniform(*SHAPE.scene_shift_m, n)
    angle = rng.uniform(0, 2 * np.pi, n)
    shifts = np.cumsum(np.column_stack([step * np.cos(angle), step * np.sin(angle)]), axis=0)
    shifts -= shifts.mean(axis=0)
    scenes = []
    for k in range(n):
        sensor = "WV02" if rng.random() < 0.5 else "WV03"
        year = int(rng.integers(2015 if sensor == "WV03" else 2011, 2021))
        day = pd.Timestamp(f"{year}-07-01") + pd.Timedelta(days=int(rng.integers(0, 75)))
        date = day.strftime("%Y%m%d")
        seconds = int(rng.integers(21 * 3600, 23 * 3600 + 1800))
        time = f"{seconds // 3600:02d}{seconds % 3600 // 60:02d}{seconds % 60:02d}"
        scenes.append(
            Scene(
                index=k,
                sensor=sensor,
                date=date,
                time=time,
                image=_image_id(rng, sensor, date, time),
                rect=(
                    float(west[k]),
                    float(south[k]),
                    float(west[k] + widths[k]),
                    float(south[k] + heights[k]),
                ),
                shift=(float(shifts[k, 0]), float(shifts[k, 1])),
                target=int(targets[k]),
            )
        )
    return scenes
