"""Where a mosaic comes from: a run's config, or the GeoTIFFs of an output folder."""

from __future__ import annotations

from pathlib import Path

import rasterio
from rasterio.errors import RasterioIOError

from grouputils.core.config import Config, Statistic
from grouputils.core.errors import InputError
from grouputils.core.raster.tags import RULE_TAGS, UNIT_TAG
from grouputils.core.tiles import Tiles, tile_from_path

__all__ = ["config_from_outputs", "resolve_source"]


def config_from_outputs(dir_output: str | Path, tms: str | None = None) -> Config:
    """Rebuild the config of a run from the GeoTIFFs it wrote.

    Parameters
    ----------
    dir_output : str or Path
        A pipeline output folder (the one holding ``geotiff/``).
    tms : str, optional
        The tile matrix set id; needed only when ``geotiff/`` holds several.

    Returns
    -------
    Config
        ``dir_output`` and ``dir_input`` set to ``dir_output`` (inputs are not
        read), ``tms``, the highest zoom level on disk as ``z``,
        ``tile_size``, and the statistics (name, ``weight_by``, ``aggregate``,
        ``resampling``, unit) from the bands' metadata. Palettes and value
        ranges are not stored in GeoTIFFs and take their defaults.

    Raises
    ------
    InputError
        No ``geotiff/<TMS>/<z>/`` folder with GeoTIFFs, several TMS folders and
        no ``tms``, or a GeoTIFF without the band metadata grouputils writes.
    """
    dir_output = Path(dir_output).expanduser()
    root = dir_output / "geotiff"
    if tms is None:
        found = sorted(d.name for d in root.iterdir() if d.is_dir()) if root.is_dir() else []
        if not found:
            raise InputError(
                root, "holds no GeoTIFF pyramid; run the pipeline (or rasterize) first"
            )
        if len(found) > 1:
            raise InputError(root, f"holds several tile matrix sets {found}; pass tms=")
        tms = found[0]
    zooms = (
        sorted(
            (int(d.name) for d in (root / tms).iterdir() if d.is_dir() and d.name.isdigit()),
            reverse=True,
        )
        if (root / tms).is_dir()
        else []
    )
    probe = Tiles(Config(dir_input=dir_output, dir_output=dir_output, tms=tms))
    first = next((p for z in zooms for p in probe.get_filenames_from_dir("geotiff", z=z)), None)
    if first is None:
        raise InputError(root / tms, "holds no GeoTIFFs; run the pipeline (or rasterize) first")
    z = tile_from_path(first).z
    try:
        with rasterio.open(first) as src:
            names = src.descriptions
            band_tags = [src.tags(b) for b in range(1, src.count + 1)]
            size = src.width
    except RasterioIOError as e:
        raise InputError(first, f"not a readable GeoTIFF ({e})") from None
    stats = []
    for name, tags in zip(names, band_tags, strict=True):
        if not name or RULE_TAGS["weight_by"] not in tags:
            raise InputError(
                first, "bands carry no statistic names and rules; was it written by grouputils?"
            )
        stats.append(
            Statistic(
                name=name,
                weight_by=tags[RULE_TAGS["weight_by"]],
                aggregate=tags.get(RULE_TAGS["aggregate"], "sum"),
                resampling=tags.get(RULE_TAGS["resampling"], "sum"),
                unit=tags.get(UNIT_TAG, ""),
            )
        )
    return Config(
        dir_input=dir_output,
        dir_output=dir_output,
        tms=tms,
        z=z,
        tile_size=size,
        statistics=tuple(stats),
    )


def resolve_source(source: Config | str | Path, z: int | None) -> tuple[Config, int]:
    """The config of ``source`` and the zoom level to use (default the config's ``z``)."""
    if isinstance(source, Config):
        config = source
        return config, config.z if z is None else int(z)
    config = config_from_outputs(source)
    return (config, config.z) if z is None else (config.replace(z=int(z)), int(z))
