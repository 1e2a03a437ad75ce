"""The pipeline's steps (stage, finalize, rasterize, parents, web tiles) over the run state.

Each function takes the run's context and its :class:`~grouputils.run.pipeline.StepReport`
and fills the report in; :data:`STEPS` lists them in order for
:func:`grouputils.run.pipeline.run_pipeline`. The tile steps are
:class:`~grouputils.run.steps.TileStep` values run by
:func:`~grouputils.run.steps.run_tile_step`: only dirty or damaged tiles are looked at.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from grouputils.core.atomic import remove_temporaries, write_text_atomic
from grouputils.core.config import Config
from grouputils.core.layout import Layout
from grouputils.core.rasterize import RasterTiler
from grouputils.core.staging import TileStager
from grouputils.core.tiles import Tile, key_tile, tile_key, tile_to_str
from grouputils.core.webtiles import (
    LEGEND_VERSION,
    ColourRanges,
    read_colour_ranges,
    write_colour_ranges,
)
from grouputils.run.failures import Failure
from grouputils.run.reports import raster_summary
from grouputils.run.state import Key, RunState, TileRow
from grouputils.run.steps import (
    TileStep,
    adopt_staged,
    finalize_task,
    parent_fingerprints,
    parent_task,
    rasterize_task,
    run_tile_step,
    webtile_task,
)
from grouputils.run.steps import fingerprint as _fingerprint

__all__ = ["Context", "STEPS", "collect", "fail"]

log = logging.getLogger("grouputils.run.pipeline")


@dataclasses.dataclass
class Context:
    config: Config
    stager: TileStager
    rasterizer: RasterTiler
    state: RunState
    runner: Any  # grouputils.run.pipeline._Runner
    inputs: list[Path]
    damaged_geotiff: set[Key] = dataclasses.field(default_factory=set)

    @property
    def root(self) -> Path:
        return self.config.dir_output


def STEPS(config: Config) -> list[tuple[str, Callable[[Context, Any], None]]]:
    """``(report name, step function)`` in order."""
    return [
        ("stage", _stage),
        ("finalize", _finalize),
        (f"rasterize z={config.z}", _rasterize),
        ("parents", _parents),
        ("web tiles", _web_tiles),
    ]


def _key(tile: Tile) -> Key:
    return tile_key(tile)


def _tile(key: Key) -> Tile:
    return key_tile(key)


def _stage(ctx: Context, rep: Any) -> None:
    """1. stage (one task per input file; unchanged inputs are skipped)."""
    stager, config = ctx.stager, ctx.config
    inputs = ctx.inputs
    stager.remove_orphans()  # left by a killed run
    layout = Layout.of(config)
    for root in (layout.geotiff, layout.web_tiles):  # temporary files of a killed writer
        remove_temporaries(root)
    known = {stager.source_key(p) for p in inputs}
    removed = 0
    for m in stager.manifests():
        if m["source"] not in known:
            removed += stager.unstage(config.dir_input / m["source"])
    todo = [p for p in inputs if not stager.is_staged(p)]
    rep.total, rep.skipped = len(inputs), len(inputs) - len(todo)
    for path, (ok, res) in zip(
        todo, ctx.runner.map("stage", stager.stage, todo, batch=False), strict=True
    ):
        if ok:
            rep.done += 1
        else:
            fail(rep, path, res)
    if (
        rep.done
        or removed
        or ctx.state.get_meta("inputs") is None
        or not config.filename_staging_summary.exists()
    ):
        manifests = stager.manifests()
        with ctx.state.transaction():
            for m in manifests:
                ctx.state.put_input(m["source"], str(m.get("token")), m["counts"])
            ctx.state.drop_inputs(m["source"] for m in manifests)
            ctx.state.set_meta("inputs", "recorded")
        stager.write_summary()


def _finalize(ctx: Context, rep: Any) -> None:
    """2. finalize (the per-tile reduce: duplicate flags); staged tiles recorded in the state."""
    state, z = ctx.state, ctx.config.z
    expected = {_key(t): fp for t, fp in ctx.stager.expected_fingerprints().items()}
    recorded = state.all_fingerprints("staged")
    damaged = set(state.damaged("staged", ctx.root))
    todo = {k for k, fp in expected.items() if recorded.get(k) != fp or k in damaged}
    todo |= set(recorded) - set(expected)
    if not recorded:  # staged tiles on disk that the state does not know (a run without state)
        todo |= (
            {_key(t) for t in ctx.stager.tiles.tiles_in("staged", z=z)}
            - set(expected)
            - set(recorded)
        )
    adopted = {}
    for k in todo - set(recorded) - damaged:
        if k in expected:
            rec = adopt_staged(ctx.stager, k, expected[k])
            if rec is not None:
                adopted[k] = rec
    if adopted:
        with state.transaction():
            for k, rec in adopted.items():
                state.put("staged", k, TileRow(rec["fingerprint"], rec["files"], rec["info"], 0.0))
            state.mark("geotiff", list(adopted))
    todo -= set(adopted)
    items = sorted(todo, key=lambda k: (k[1], k[2]))
    rep.total = len(expected)
    rep.skipped = max(0, rep.total - len(items))

    def record(batch: list[Key], results: list[tuple[bool, Any]]) -> None:
        with state.transaction():
            for key, (ok, rec) in zip(batch, results, strict=True):
                if not ok:
                    continue
                if rec.get("removed"):
                    state.delete("staged", key)
                else:
                    state.put(
                        "staged",
                        key,
                        TileRow(rec["fingerprint"], rec["files"], rec["info"], rec["seconds"]),
                    )
                state.mark("geotiff", [key])

    results = ctx.runner.map(
        "finalize", functools.partial(finalize_task, ctx.stager), items, batch=True, on_done=record
    )
    collect(rep, [tile_to_str(_tile(k)) for k in items], results)


def _mark_settings(
    state: RunState, meta: str, value: str, kind: str, sources: Sequence[str]
) -> None:
    """A settings change: every tile of ``kind`` (and of each source kind) is looked at again."""
    if state.get_meta(meta) != value:
        with state.transaction():
            for src in sources:
                state.mark_all(kind, src)
            state.set_meta(meta, value)


def _geotiff_step(
    ctx: Context, name: str, z: int, expected: Callable[[list[Key]], dict[Key, str]], task
) -> TileStep:
    tiles = ctx.rasterizer.tiles
    lowest = tiles.min_zoom

    def downstream(key: Key) -> list[tuple[str, Key]]:
        out = [("web", key)]
        if key[0] > lowest:
            out.append(("geotiff", _key(tiles.get_parent_tile(_tile(key)))))
        return out

    return TileStep(
        name=name,
        kind="geotiff",
        candidates=ctx.state.dirty("geotiff", z=z),
        expected=expected,
        task=functools.partial(task, ctx.rasterizer),
        remove=lambda key: tiles.path("geotiff", _tile(key)).unlink(missing_ok=True),
        downstream=downstream,
    )


def _run_geotiff_step(ctx: Context, rep: Any, step: TileStep, z: int) -> None:
    todo, results = run_tile_step(ctx.state, step, ctx.runner, ctx.damaged_geotiff)
    collect(rep, [tile_to_str(_tile(k)) for k in todo], results)
    total = ctx.state.count("geotiff", z=z)
    rep.total += total
    rep.skipped += total - sum(ok for ok, _ in results)


def _rasterize(ctx: Context, rep: Any) -> None:
    """3. rasterize the staging zoom level (tiles whose staged tile changed, or damaged)."""
    state, z = ctx.state, ctx.config.z
    settings = _raster_settings(ctx.config)
    _mark_settings(state, "raster_settings", settings, "geotiff", ("staged", "geotiff"))
    ctx.damaged_geotiff = set(state.damaged("geotiff", ctx.root))
    with state.transaction():
        state.mark("geotiff", ctx.damaged_geotiff)

    def expected(keys: list[Key]) -> dict[Key, str]:
        return {
            k: _fingerprint(fp, settings) for k, fp in state.fingerprints("staged", keys).items()
        }

    _run_geotiff_step(ctx, rep, _geotiff_step(ctx, "rasterize", z, expected, rasterize_task), z)


def _parents(ctx: Context, rep: Any) -> None:
    """4. parents, one zoom level at a time down to the lowest."""
    state, tiles = ctx.state, ctx.rasterizer.tiles
    settings = _raster_settings(ctx.config)

    def expected(keys: list[Key]) -> dict[Key, str]:
        return parent_fingerprints(state, tiles.get_child_tiles, keys, settings)

    for z in range(ctx.config.z - 1, tiles.min_zoom - 1, -1):
        _run_geotiff_step(
            ctx, rep, _geotiff_step(ctx, f"parents z={z}", z, expected, parent_task), z
        )


def _zoom_maxima(state: RunState, config: Config) -> dict[str, dict[int, float]]:
    """Each statistic's maximum per zoom over the recorded GeoTIFFs (``info['<name>_max']``).

    One pass over the GeoTIFF rows, skipped when no output row changed since
    the last web-tile step (the state's generation, :func:`_remember_maxima`):
    a no-op rerun reads them from the meta table instead.
    """
    names = list(config.statistic_names)
    cached = json.loads(state.get_meta("zoom_maxima") or "null")
    if (
        cached is not None
        and cached["generation"] == state.generation
        and list(cached["maxima"]) == names
    ):
        return {n: {int(z): m for z, m in by_z.items()} for n, by_z in cached["maxima"].items()}
    maxima = state.info_max_by_zoom("geotiff", [f"{n}_max" for n in names])
    return {n: maxima[f"{n}_max"] for n in names}


def _remember_maxima(state: RunState, maxima: dict[str, dict[int, float]]) -> None:
    """Keep the maxima for the next run, valid while the generation stays the same."""
    state.set_meta("zoom_maxima", json.dumps({"generation": state.generation, "maxima": maxima}))


def _mark_recoloured(state: RunState, ranges: ColourRanges, config: Config) -> dict[int, str]:
    """Mark the web tiles of each zoom whose colour ranges changed; each zoom's ranges' hash."""
    by_zoom = {
        z: _fingerprint([ranges[s.name][z] for s in config.statistics]) for z in range(config.z + 1)
    }
    recorded = json.loads(state.get_meta("colour_ranges") or "{}")
    changed = [z for z, fp in by_zoom.items() if recorded.get(str(z)) != fp]
    if changed:
        with state.transaction():
            for z in changed:
                state.mark("web", state.keys("geotiff", z=z))
            state.set_meta("colour_ranges", json.dumps({str(z): fp for z, fp in by_zoom.items()}))
    return by_zoom


def _web_tiles(ctx: Context, rep: Any) -> None:
    """5. web tiles (every statistic of every GeoTIFF), legends and the colour ranges used.

    Colours fit each zoom level (:func:`grouputils.core.webtiles.zoom_ranges`,
    from the band maxima the state recorded for the GeoTIFFs); a web tile's
    fingerprint holds its zoom's ranges, so when new data changes a level's
    maximum exactly that level's web tiles are redone.
    """
    state, config, tiles = ctx.state, ctx.config, ctx.rasterizer.tiles
    style = _fingerprint([dataclasses.asdict(s) for s in config.statistics])
    _mark_settings(state, "style", style, "web", ("geotiff", "web"))
    maxima = _zoom_maxima(state, config)
    ranges = ctx.rasterizer.colour_ranges(maxima)
    zoom_fp = _mark_recoloured(state, ranges, config)
    damaged = set(state.damaged("web", ctx.root))
    with state.transaction():
        state.mark("web", damaged)

    def expected(keys: list[Key]) -> dict[Key, str]:
        return {
            k: _fingerprint(fp, style, zoom_fp[k[0]])
            for k, fp in state.fingerprints("geotiff", keys).items()
        }

    def remove(key: Key) -> None:
        for s in config.statistic_names:
            tiles.path("web_tiles", _tile(key), s).unlink(missing_ok=True)

    step = TileStep(
        name="web tiles",
        kind="web",
        candidates=state.dirty("web"),
        expected=expected,
        task=functools.partial(webtile_task, ctx.rasterizer, ranges=ranges),
        remove=remove,
        downstream=lambda key: [],
    )
    todo, results = run_tile_step(state, step, ctx.runner, damaged)
    collect(rep, [tile_to_str(_tile(k)) for k in todo], results)
    rep.total = state.count("web")
    rep.skipped = rep.total - sum(ok for ok, _ in results)
    layout = Layout.of(config)
    if read_colour_ranges(layout.colour_ranges) != ranges:  # the map page's legend reads them
        write_colour_ranges(layout.colour_ranges, ranges, config.z)
    # legends: rewritten only when their look changed (or one is missing)
    legend_fp = _fingerprint(style, config.z, LEGEND_VERSION)
    legends = [layout.legend(s.name) for s in config.statistics]
    if state.get_meta("legends") != legend_fp or not all(p.exists() for p in legends):
        ctx.rasterizer.write_legends()
        state.set_meta("legends", legend_fp)
    _remember_maxima(state, maxima)  # only web tile rows changed since they were read
    _publish(ctx)


def _publish(ctx: Context) -> None:
    """Raster summary, STAC catalogue and map page, from the state, when an output changed since.

    The catalogue is written from the records in the state
    (:func:`grouputils.run.records.catalog_records`): no GeoTIFF or staged
    tile is opened, except those a state of an earlier version (or a failed
    tile) has no complete record of.
    """
    from grouputils.outputs.catalog import UndatedError, catalog_path, write_stac_catalog
    from grouputils.outputs.webmap import write_map_page
    from grouputils.run.records import catalog_records

    state, config = ctx.state, ctx.config
    generation = str(state.generation)
    layout = Layout.of(config)
    wanted = [layout.raster_summary, layout.map_page]
    has_tiles = state.count("geotiff") > 0
    if has_tiles:
        wanted.append(catalog_path(config))
    if state.get_meta("published") == generation and all(p.exists() for p in wanted):
        return
    write_text_atomic(
        config.filename_rasterization_summary, raster_summary(state, config).to_csv(index=False)
    )
    if has_tiles:
        try:
            write_stac_catalog(config, records=catalog_records(state, config))
        except UndatedError as e:  # no acquisition dates in the inputs: no catalogue
            log.warning("STAC catalogue not written: %s", e)
            shutil.rmtree(config.dir_output / "stac", ignore_errors=True)
    else:
        shutil.rmtree(layout.stac, ignore_errors=True)
    write_map_page(config)
    # records completed from disk (an older state) bump the generation: publish as of now
    state.set_meta("published", str(state.generation))


#: Fields of a Statistic that shape the GeoTIFFs (palette, value_range and
#: description only colour the web tiles and legends).
_RASTER_FIELDS = ("name", "weight_by", "aggregate", "resampling", "attribute", "unit")


def _raster_settings(config: Config) -> str:
    """Fingerprint of the settings a GeoTIFF depends on (besides its inputs)."""
    stats = [{f: getattr(s, f) for f in _RASTER_FIELDS} for s in config.statistics]
    return _fingerprint(config.fingerprint("tms", "z", "tile_size"), stats)


def collect(rep: Any, items: Sequence[Any], results: Sequence[tuple[bool, Any]]) -> None:
    for item, (ok, res) in zip(items, results, strict=True):
        if ok:
            rep.done += 1
        else:
            fail(rep, item, res)


#: Frames of a failed item's traceback kept in the summary (the log has all of them).
SUMMARY_FRAMES = 3


def fail(rep: Any, item: Any, error: Any) -> None:
    failure = error if isinstance(error, Failure) else Failure(str(error), "")
    rep.failed.append(
        {
            "item": str(item),
            "error": failure.error,
            "traceback": failure.first_frames(SUMMARY_FRAMES),
        }
    )
    log.error("%s failed on %s: %s\n%s", rep.name, item, failure.error, failure.traceback.rstrip())
