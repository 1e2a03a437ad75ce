"""The whole run — stage, finalize, rasterize, pyramid, web tiles, STAC, map — resumable.

:func:`run_pipeline` maps each step over its items on the chosen executor:

* ``'serial'``: a plain loop in this process;
* ``'local'``: a Parsl HighThroughputExecutor on this machine
  (:func:`grouputils.parallel.local_config`);
* ``'slurm'``: Parsl on a SLURM cluster (:func:`grouputils.parallel.slurm_config`);
  workers on different nodes write their own tiles to the shared file system,
  so there is nothing to merge afterwards.

Resuming
--------
Every output records what it was made from:

* staging: the per-input manifest (input size and mtime, staging settings);
* staged tiles: the fingerprint of their parts;
* GeoTIFFs and web tiles: ``run-manifest.json`` maps each output to a
  fingerprint of its inputs (staged tile fingerprint, or children's
  fingerprints for parents) and of the settings that shape it.

A rerun redoes exactly the outputs whose fingerprint changed or whose file is
missing, and removes outputs whose inputs disappeared. The manifest is written
by this process only, after outputs are complete (as batches of tasks finish,
at most once a second, and at the end of each step), so a run killed at any
moment (even with SIGKILL) loses at most the last second of work: the next
run redoes it, keeps the rest, and its outputs equal an uninterrupted run's.
``force=True`` starts over.

A GeoTIFF depends on its staged tile and on the statistics' names and rules
(``weight_by``, ``aggregate``, ``resampling``, ``attribute``, ``unit``); a
web tile also on the palette and ``value_range``, so recolouring redoes only
the web tiles and legends.

At the end this process rewrites the STAC catalogue of the GeoTIFFs
(``stac/catalog.json``, :func:`grouputils.catalog.write_stac_catalog`; it
reads only the GeoTIFFs' headers) and the map page ``index.html``.

A task that fails (a broken input file, say) does not stop the run: the
other items finish, the failure is reported with the item and its error, and
:class:`RunReport` ``.ok`` is False (the command line then exits non-zero).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import logging
import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import pyogrio
from tqdm.auto import tqdm

from grouputils.atomic import write_json_atomic
from grouputils.config import Config
from grouputils.errors import ConfigError, InputError, OutputError
from grouputils.failures import Failure
from grouputils.parallel import choose_batch_size, make_batch, parallel_map
from grouputils.profiling import profile_resources
from grouputils.rasterize import RasterTiler
from grouputils.runlock import RunLock
from grouputils.staging import STAGED_LAYER, TileStager
from grouputils.tiles import Tile, Tiles, tile_from_path, tile_to_str

__all__ = ["run_pipeline", "RunReport", "StepReport", "Executor", "check_inputs", "check_slurm_settings"]

log = logging.getLogger(__name__)

Executor = Literal["serial", "local", "slurm"]
MANIFEST = "run-manifest.json"
SUMMARY = "run-summary.json"
#: The run's private folder inside the output folder: Parsl's run folder (with its
#: certificates), the log and the run lock. Never linked by the map; not to be published.
PRIVATE_DIR = ".grouputils"
#: Frames of a failed item's traceback kept in the summary (the log has all of them).
SUMMARY_FRAMES = 3


@dataclasses.dataclass
class StepReport:
    """What one step did.

    Attributes
    ----------
    name : str
        Step name.
    total : int
        Items the step covers (done now or earlier).
    done : int
        Items processed in this run.
    skipped : int
        Items already up to date.
    failed : list of dict
        ``{'item': ..., 'error': ...}`` per failed item.
    seconds : float
        Wall time of the step.
    peak_rss_mb : float
        Peak resident memory of this process and its workers during the step.
    """

    name: str
    total: int = 0
    done: int = 0
    skipped: int = 0
    failed: list[dict[str, str]] = dataclasses.field(default_factory=list)
    seconds: float = 0.0
    peak_rss_mb: float = 0.0


@dataclasses.dataclass
class RunReport:
    """The outcome of :func:`run_pipeline`.

    Attributes
    ----------
    steps : list of StepReport
        In order.
    summary : dict
        Totals (polygons, duplicates, covered area, tiles per zoom, timings).
    ok : bool
        False if any item failed.
    """

    steps: list[StepReport]
    summary: dict[str, Any]

    @property
    def ok(self) -> bool:
        return not any(s.failed for s in self.steps)

    @property
    def failures(self) -> list[dict[str, str]]:
        """Every failed item of every step."""
        return [dict(f, step=s.name) for s in self.steps for f in s.failed]


# ----------------------------------------------------------------- tasks
def _guarded(func: Callable[[Any], Any], item: Any) -> tuple[bool, Any]:
    """Run ``func(item)``; return ``(True, result)`` or ``(False, failure)``.

    A failure is a :class:`Failure`: the error text and its whole traceback
    (formatted on the worker, so it survives the trip back).
    """
    try:
        return True, func(item)
    except Exception as e:  # reported per item; the run goes on
        return False, Failure.from_exception(e)


def _guarded_batch(func: Callable[[Any], Any], items: Sequence[Any]) -> list[tuple[bool, Any]]:
    return [_guarded(func, it) for it in items]


def _fingerprint(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:20]


def _staged_fingerprint(path: Path) -> str | None:
    try:
        return (pyogrio.read_info(path, layer=STAGED_LAYER).get("layer_metadata") or {}).get("grouputils_parts")
    except Exception:
        return None


def _run_task(func: Callable[[Any], Any], item: Any) -> Any:
    """``func(item)`` on a worker (module level, so Parsl sends it by reference)."""
    return func(item)


class _Runner:
    """Maps functions over items on one executor, with progress and partial results."""

    def __init__(self, executor: Executor, workers: int, progress: bool) -> None:
        self.executor = executor
        self.workers = workers
        self.progress = progress

    def map(
        self,
        step: str,
        func: Callable[[Any], Any],
        items: Sequence[Any],
        *,
        batch: bool,
        on_done: Callable[[list[Any], list[tuple[bool, Any]]], None] | None = None,
    ) -> list[tuple[bool, Any]]:
        """``(ok, result or error text)`` per item, in input order.

        Items go to the executor in batches (one task each) when ``batch``.
        ``on_done(batch_items, batch_results)`` is called in this process as
        each batch finishes, in completion order, so a step can record its
        progress before the whole step ends. A task that fails as a whole
        (a worker lost to the out-of-memory killer, say) fails each of its
        items; the other tasks go on.
        """
        items = list(items)
        if not items:
            return []
        size = choose_batch_size(len(items), self.workers) if batch and len(items) > 1 else 1
        batches = make_batch(items, size)
        task = functools.partial(_guarded_batch, func)
        results: list[list[tuple[bool, Any]]] = [[] for _ in batches]
        with tqdm(total=sum(map(len, batches)), desc=step, unit="item", disable=not self.progress) as bar:
            for i, res in self._completed(task, batches):
                results[i] = res
                if on_done is not None:
                    on_done(batches[i], res)
                bar.update(len(batches[i]))
        return [r for chunk in results for r in chunk]

    def _completed(self, task: Callable[[Any], Any], batches: list[list[Any]]) -> Iterator[tuple[int, Any]]:
        """``(batch index, batch results)`` as batches finish."""
        if self.executor == "serial":
            for i, b in enumerate(batches):
                yield i, task(b)
            return
        import concurrent.futures

        import parsl

        app = parsl.python_app(_run_task, data_flow_kernel=parsl.dfk(), cache=False)
        futures = {app(task, b): i for i, b in enumerate(batches)}
        for fut in concurrent.futures.as_completed(futures):
            i = futures[fut]
            try:
                yield i, fut.result()
            except Exception as e:  # the task itself was lost, not one item
                yield i, [(False, Failure.from_exception(e))] * len(batches[i])


class _ManifestWriter:
    """Saves ``run-manifest.json`` as results come in, at most every ``every_s`` seconds."""

    def __init__(self, path: Path, manifest: dict[str, Any], every_s: float = 1.0) -> None:
        self.path, self.manifest, self.every_s = path, manifest, every_s
        self.last = -math.inf

    def maybe(self) -> None:
        if time.monotonic() - self.last >= self.every_s:
            self.now()

    def now(self) -> None:
        write_json_atomic(self.path, self.manifest)
        self.last = time.monotonic()

    def __enter__(self) -> _ManifestWriter:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        # also when interrupted: the manifest only names finished outputs
        if exc is None:
            self.now()
            return
        try:
            self.now()
        except OSError as e:  # keep the run's own error (a full disk, say)
            log.error("could not save %s: %s", self.path, e)


# -------------------------------------------------------------- pipeline
def _load_manifest(path: Path) -> dict[str, dict[str, str]]:
    try:
        data = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


@contextlib.contextmanager
def _executor(
    executor: Executor, workers: int, config: Config, slurm: dict[str, Any] | None, blocks: int = 1
) -> Iterator[float]:
    """Load the executor; yield its start-up time (s), measured with a warm-up task."""
    if executor == "serial":
        yield 0.0
        return
    import parsl

    from grouputils import parallel

    run_dir = config.dir_output / PRIVATE_DIR / "parsl-runinfo"
    if executor == "local":
        pconf = parallel.local_config(workers, run_dir=run_dir, config=config, blocks=blocks)
    elif executor == "slurm":
        pconf = parallel.slurm_config(run_dir=run_dir, config=config, **check_slurm_settings(slurm))
        blocks = 1  # ``workers`` already counts every node of every block
    else:
        raise ValueError(f"unknown executor {executor!r}; use serial, local or slurm")
    t0 = time.perf_counter()
    with parsl.load(pconf):
        # Start-up ends when every worker has imported the pipeline's modules.
        parallel_map(_warm_up, range(workers * blocks), progress=False)
        yield time.perf_counter() - t0


def check_slurm_settings(slurm: dict[str, Any] | None) -> dict[str, Any]:
    """Check the ``[slurm]`` table of a config file; return it as keyword arguments.

    Parameters
    ----------
    slurm : dict or None
        Keyword arguments of :func:`grouputils.parallel.slurm_config`.

    Returns
    -------
    dict
        A copy of ``slurm``.

    Raises
    ------
    ConfigError
        No table, no ``partition``, or a key ``slurm_config`` does not take.
    """
    import inspect

    from grouputils import parallel

    if not slurm or not slurm.get("partition"):
        raise ConfigError(
            "executor 'slurm' needs a [slurm] table in the --config file with at least "
            'partition = "<name>" (and usually account, nodes_per_block, walltime, worker_init)'
        )
    allowed = set(inspect.signature(parallel.slurm_config).parameters) - {"run_dir", "config"}
    unknown = sorted(set(slurm) - allowed)
    if unknown:
        raise ConfigError(f"[slurm] has unknown settings {unknown}; known settings are {sorted(allowed)}")
    return dict(slurm)


def _slurm_workers(slurm: dict[str, Any]) -> int:
    """Workers of every node of every block a SLURM run may get (for batch sizes)."""
    per_node = slurm.get("workers_per_node") or slurm.get("cores_per_node") or 1
    return int(per_node) * int(slurm.get("nodes_per_block", 1)) * int(slurm.get("max_blocks", 1))


def _warm_up(_: int) -> float:
    """Import the heavy modules on a worker (and hold it briefly so each worker gets one)."""
    import grouputils.rasterize  # noqa: F401
    import grouputils.staging  # noqa: F401

    time.sleep(0.2)
    return time.perf_counter()


def check_inputs(config: Config) -> list[Path]:
    """The input files of a run, after checking the input and output folders.

    Parameters
    ----------
    config : Config
        Folders and settings.

    Returns
    -------
    list of Path
        Every file below ``config.dir_input`` ending in ``config.input_ext``, sorted.

    Raises
    ------
    InputError
        The input folder is missing, is not a folder, or holds no input files.
    ConfigError
        The output folder is the input folder, lies inside it or holds it.
    """
    inp = config.dir_input
    if not inp.exists():
        raise InputError(inp, "input folder does not exist")
    if not inp.is_dir():
        raise InputError(inp, "is not a folder (give the folder that holds the GeoPackages)")
    a, b = inp.resolve(), config.dir_output.resolve()
    if a == b or a in b.parents or b in a.parents:
        raise ConfigError(f"{config.dir_output}: the output folder must not be, hold or lie inside the input folder {inp}")
    inputs = Tiles(config).get_filenames_from_dir("input")
    if not inputs:
        if not any(inp.iterdir()):
            raise InputError(inp, "input folder is empty")
        raise InputError(inp, f"holds no GeoPackages (no file ending in {config.input_ext})")
    return inputs


def _one_run_per_output_folder(func: Callable[..., RunReport]) -> Callable[..., RunReport]:
    """Hold the output folder's :class:`~grouputils.runlock.RunLock` while ``func`` runs."""

    @functools.wraps(func)
    def locked(config: Config, **kwargs: Any) -> RunReport:
        check_inputs(config)  # before anything is written
        with RunLock(config.dir_output / PRIVATE_DIR, what=config.dir_output):
            return func(config, **kwargs)

    return locked


@_one_run_per_output_folder
def run_pipeline(
    config: Config,
    *,
    executor: Executor = "local",
    workers: int | None = None,
    force: bool = False,
    progress: bool = True,
    slurm: dict[str, Any] | None = None,
    blocks: int = 1,
) -> RunReport:
    """Run every step on every input of ``config.dir_input``; resume what is done.

    Parameters
    ----------
    config : Config
        Folders and settings.
    executor : {'local', 'serial', 'slurm'}
        Where tasks run (see the module docstring).
    workers : int, optional
        Workers for ``'local'`` (default ``min(11, usable cores)``; more is clamped
        with a warning); for ``'slurm'``, workers per node unless the ``[slurm]``
        table sets ``workers_per_node``. Ignored by ``'serial'``.
    force : bool
        Delete earlier outputs and start over.
    progress : bool
        tqdm bars per step.
    slurm : dict, optional
        Keyword arguments of :func:`grouputils.parallel.slurm_config`.
    blocks : int
        For ``'local'``: independent worker pools, to simulate several nodes
        on one machine (``workers`` each).

    Returns
    -------
    RunReport
        Per-step reports and the run summary (also saved as ``run-summary.json``).

    Raises
    ------
    InputError
        The input folder is missing, empty or holds no GeoPackages.
    OutputError
        The output folder cannot be written.
    ConfigError
        The output folder is (inside) the input folder, or ``executor='slurm'``
        without a valid ``slurm`` table.
    grouputils.runlock.RunLockedError
        Another run is using the output folder (one run per output folder).
    """
    from grouputils.parallel import clamp_workers, usable_cores

    if executor not in ("serial", "local", "slurm"):
        raise ValueError(f"unknown executor {executor!r}; use serial, local or slurm")
    stager = TileStager(config)
    rasterizer = RasterTiler(config)
    inputs = check_inputs(config)
    if executor == "serial":
        n_workers = 1
    elif executor == "slurm":
        # --workers means workers per node there; the login node's cores do not matter
        slurm = check_slurm_settings(slurm)
        if workers and "workers_per_node" not in slurm:
            slurm["workers_per_node"] = workers
        n_workers = _slurm_workers(slurm)
    else:
        n_workers = clamp_workers(workers, config) if workers else min(11, usable_cores(config))
    try:
        config.dir_output.mkdir(parents=True, exist_ok=True)
        probe = config.dir_output / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise OutputError(config.dir_output, f"output folder is not writable ({e.strerror or e})") from e
    if force:
        stager.clear(everything=True)
        (config.dir_output / MANIFEST).unlink(missing_ok=True)

    mpath = config.dir_output / MANIFEST
    manifest = _load_manifest(mpath)
    saver = _ManifestWriter(mpath, manifest)
    steps: list[StepReport] = []
    timeline = []
    t_run = time.perf_counter()
    with saver, _executor(executor, n_workers, config, slurm, blocks) as startup_s:
        runner = _Runner(executor, n_workers * (blocks if executor == "local" else 1), progress)

        def step(name: str):
            rep = StepReport(name)
            steps.append(rep)
            return rep

        # 1. stage (one task per input file; unchanged inputs are skipped)
        rep = step("stage")
        with profile_resources() as prof:
            stager.remove_orphans()  # left by a killed run
            known = {stager.source_key(p) for p in inputs}
            for m in stager.manifests():
                if m["source"] not in known:
                    stager.unstage(config.dir_input / m["source"])
            todo = [p for p in inputs if not stager.is_staged(p)]
            rep.total, rep.skipped = len(inputs), len(inputs) - len(todo)
            for path, (ok, res) in zip(todo, runner.map("stage", stager.stage, todo, batch=False)):
                if ok:
                    rep.done += 1
                else:
                    _fail(rep, path, res)
        _finish(rep, prof, timeline)

        # 2. finalize (the per-tile reduce: duplicate flags)
        rep = step("finalize")
        with profile_resources() as prof:
            todo = stager.tiles_to_finalize()
            rep.total = len(stager.committed_tiles())
            rep.skipped = max(0, rep.total - len(todo))
            _collect(rep, todo, runner.map("finalize", stager.finalize_tile, todo, batch=True))
            stager.write_summary()
        _finish(rep, prof, timeline)

        # 3. rasterize the staging zoom level
        settings = _raster_settings(config)
        geo = manifest.setdefault("geotiff", {})
        staged = stager.tiles.get_filenames_from_dir("staged", z=config.z)
        staged_tiles = {tile_from_path(p): p for p in staged}
        rep = step(f"rasterize z={config.z}")
        with profile_resources() as prof:
            want: dict[str, str] = {}
            for tile, path in staged_tiles.items():
                fp = _staged_fingerprint(path)
                want[tile_to_str(tile)] = _fingerprint(fp, settings)
            todo = [
                staged_tiles[t]
                for t in staged_tiles
                if geo.get(tile_to_str(t)) != want[tile_to_str(t)] or not stager.tiles.path("geotiff", t).exists()
            ]
            _remove_stale(rasterizer, geo, {k for k in want}, config.z)
            rep.total, rep.skipped = len(staged_tiles), len(staged_tiles) - len(todo)
            results = runner.map(
                "rasterize", rasterizer.rasterize_vector, todo, batch=True,
                on_done=functools.partial(_record, geo, want, saver),
            )
            _collect(rep, todo, results)
            saver.now()
        _finish(rep, prof, timeline)

        # 4. parents, one zoom level at a time down to 0
        rep = step("parents")
        with profile_resources() as prof:
            for z in range(config.z - 1, -1, -1):
                children = [k for k in geo if f"z={z + 1})" in k]
                parents: dict[str, list[str]] = {}
                for k in children:
                    t = _parse(k)
                    parents.setdefault(tile_to_str(stager.tiles.get_parent_tile(t)), []).append(k)
                want = {p: _fingerprint(sorted(geo[c] for c in kids), settings) for p, kids in parents.items()}
                _remove_stale(rasterizer, geo, set(want), z)
                todo = [
                    _parse(p)
                    for p in sorted(want)
                    if geo.get(p) != want[p] or not stager.tiles.path("geotiff", _parse(p)).exists()
                ]
                rep.total += len(want)
                rep.skipped += len(want) - len(todo)
                results = runner.map(
                    f"parents z={z}", rasterizer.parent_geotiff, todo, batch=True,
                    on_done=functools.partial(_record, geo, want, saver),
                )
                _collect(rep, todo, results)
                saver.now()
        _finish(rep, prof, timeline)

        # 5. web tiles (every statistic of every GeoTIFF)
        rep = step("web tiles")
        web = manifest.setdefault("web_tiles", {})
        with profile_resources() as prof:
            style = _fingerprint([dataclasses.asdict(s) for s in config.statistics])
            want = {k: _fingerprint(v, style) for k, v in geo.items()}
            for k in list(web):
                if k not in want:
                    web.pop(k)
            todo = [
                stager.tiles.path("geotiff", _parse(k))
                for k in sorted(want, key=lambda s: _sort_key(_parse(s)))
                if web.get(k) != want[k]
                or not all(
                    stager.tiles.path("web_tiles", _parse(k), s).exists() for s in config.statistic_names
                )
            ]
            rep.total, rep.skipped = len(want), len(want) - len(todo)
            results = runner.map(
                "web tiles", rasterizer.webtile, todo, batch=True,
                on_done=functools.partial(_record, web, want, saver),
            )
            _collect(rep, todo, results)
            # legends: rewritten only when their look changed (or one is missing)
            legend_fp = _fingerprint(style, config.z)
            legends = [config.dir_web_tiles / s.name / "legend.png" for s in config.statistics]
            if manifest.get("legends") != legend_fp or not all(p.exists() for p in legends):
                rasterizer.write_legends()
                manifest["legends"] = legend_fp
            saver.now()
            rasterizer.write_summary()
        _finish(rep, prof, timeline)

    # 6. STAC catalogue, map page and summary (this process)
    from grouputils.catalog import write_stac_catalog
    from grouputils.webmap import write_map_page

    catalog = None
    if stager.tiles.get_filenames_from_dir("geotiff"):
        catalog = write_stac_catalog(config)
    write_map_page(config)
    summary = _summary(
        config, stager, steps, startup_s, time.perf_counter() - t_run, executor, n_workers,
        blocks if executor == "local" else 1,
    )
    summary["stac_catalog"] = None if catalog is None else catalog.relative_to(config.dir_output).as_posix()
    write_json_atomic(config.dir_output / SUMMARY, summary)
    _save_timeline(config, timeline)
    return RunReport(steps=steps, summary=summary)


#: Fields of a Statistic that shape the GeoTIFFs (palette, value_range and
#: description only colour the web tiles and legends).
_RASTER_FIELDS = ("name", "weight_by", "aggregate", "resampling", "attribute", "unit")


def _raster_settings(config: Config) -> str:
    """Fingerprint of the settings a GeoTIFF depends on (besides its inputs)."""
    stats = [{f: getattr(s, f) for f in _RASTER_FIELDS} for s in config.statistics]
    return _fingerprint(config.fingerprint("tms", "z", "tile_size"), stats)


def _parse(text: str) -> Tile:
    from grouputils.tiles import str_to_tile

    return str_to_tile(text)


def _sort_key(t: Tile) -> tuple[int, int, int]:
    return (-t.z, t.x, t.y)


def _record(
    done: dict[str, str], want: dict[str, str], saver: _ManifestWriter, items: list[Any], results: list[tuple[bool, Any]]
) -> None:
    """Note the outputs of a finished batch as up to date (items are tiles or tile paths)."""
    for item, (ok, _) in zip(items, results):
        if ok:
            key = tile_to_str(item if isinstance(item, Tile) else tile_from_path(item))
            done[key] = want[key]
    saver.maybe()


def _collect(rep: StepReport, items: Sequence[Any], results: Sequence[tuple[bool, Any]]) -> None:
    for item, (ok, res) in zip(items, results):
        if ok:
            rep.done += 1
        else:
            _fail(rep, item, res)


def _fail(rep: StepReport, item: Any, error: Any) -> None:
    failure = error if isinstance(error, Failure) else Failure(str(error), "")
    rep.failed.append({"item": str(item), "error": failure.error, "traceback": failure.first_frames(SUMMARY_FRAMES)})
    log.error("%s failed on %s: %s\n%s", rep.name, item, failure.error, failure.traceback.rstrip())


def _finish(rep: StepReport, prof, timeline: list) -> None:
    rep.seconds = prof.wall_s
    rep.peak_rss_mb = prof.peak_rss_bytes / 1e6
    timeline.append((rep.name, prof))
    log.info("%s: %d done, %d up to date, %d failed in %.1f s", rep.name, rep.done, rep.skipped, len(rep.failed), rep.seconds)


def _remove_stale(rasterizer: RasterTiler, geo: dict[str, str], keep: set[str], z: int) -> None:
    """Delete GeoTIFFs (and their web tiles) of zoom ``z`` whose inputs are gone."""
    tiles = rasterizer.tiles
    on_disk = {tile_to_str(tile_from_path(p)) for p in tiles.get_filenames_from_dir("geotiff", z=z)}
    for k in (on_disk | {k for k in geo if f"z={z})" in k}) - keep:
        t = _parse(k)
        tiles.path("geotiff", t).unlink(missing_ok=True)
        for s in rasterizer.config.statistic_names:
            tiles.path("web_tiles", t, s).unlink(missing_ok=True)
        geo.pop(k, None)


def _summary(
    config: Config, stager: TileStager, steps: list[StepReport], startup_s: float, wall_s: float,
    executor: str, workers: int, blocks: int,
) -> dict[str, Any]:
    manifests = stager.manifests()
    read = sum(m["counts"]["read"] for m in manifests)
    repaired = sum(m["counts"]["repaired"] for m in manifests)
    dropped = sum(m["counts"]["dropped"] for m in manifests)
    unique = dup = 0
    for p in stager.tiles.get_filenames_from_dir("staged", z=config.z):
        df = pyogrio.read_dataframe(
            p, layer=STAGED_LAYER, columns=["staging_centroid_within_tile", "staging_duplicated"], read_geometry=False
        )
        within = df["staging_centroid_within_tile"].to_numpy(bool)
        d = df["staging_duplicated"].to_numpy(bool)
        unique += int((within & ~d).sum())
        dup += int((within & d).sum())
    from grouputils.rasterize import covered_area_m2

    tiles_per_zoom = {
        z: len(stager.tiles.get_filenames_from_dir("geotiff", z=z)) for z in range(config.z, -1, -1)
    }
    return {
        "input_files": len(manifests),
        "polygons_read": read,
        "unique_polygons": unique,
        "duplicates_flagged": dup,
        "polygons_repaired": repaired,
        "polygons_dropped": dropped,
        "covered_area_km2": covered_area_m2(config) / 1e6,
        "staged_tiles": len(stager.tiles.get_filenames_from_dir("staged", z=config.z)),
        "geotiff_tiles_per_zoom": tiles_per_zoom,
        "executor": executor,
        "workers": workers,
        "blocks": blocks,
        "executor_startup_s": round(startup_s, 3),
        "wall_s": round(wall_s, 3),
        "steps": [dataclasses.asdict(s) for s in steps],
        "failures": [dict(f, step=s.name) for s in steps for f in s.failed],
    }


def _save_timeline(config: Config, timeline: list) -> None:
    """Save the resource timeline of the run (CPU, memory per step) as a PNG."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 2.2 * max(1, len(timeline))), layout="constrained")
    axes = fig.subplots(len(timeline), 1, squeeze=False)[:, 0]
    for ax, (name, prof) in zip(axes, timeline):
        prof.plot(ax=ax)
        ax.set_title(name, loc="left", fontsize=9)
    fig.savefig(config.dir_output / "run-resources.png", dpi=90)
