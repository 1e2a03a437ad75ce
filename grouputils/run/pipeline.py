"""The whole run — stage, finalize, rasterize, pyramid, web tiles, STAC, map — resumable.

:func:`run_pipeline` maps each step over its items on the chosen executor:

* ``'serial'``: a plain loop in this process;
* ``'local'``: a Parsl HighThroughputExecutor on this machine
  (:func:`grouputils.run.parallel.local_config`);
* ``'slurm'``: Parsl on a SLURM cluster (:func:`grouputils.run.parallel.slurm_config`);
  workers on different nodes write their own tiles to the shared file system,
  so there is nothing to merge afterwards.

Resuming
--------
The run's state is ``<output>/.grouputils/state.sqlite``
(:class:`grouputils.run.state.RunState`): a row per input file and per output
tile with the fingerprint of what it was made from, the files written (size
and modification time), counts, covered area and band statistics.

* staging: the per-input manifest (input size and mtime, staging settings);
* staged tiles: the fingerprint of their parts, recorded in the state;
* GeoTIFFs and web tiles: a fingerprint of their inputs (staged tile
  fingerprint, or children's fingerprints for parents) and of the settings
  that shape them.

Each step (:mod:`grouputils.run.steps`) looks only at the tiles marked dirty
(their inputs changed, recorded in the same transaction as the change) and at
those whose files are missing or differ in size or modification time from
the record (edited or damaged by hand), redoes those whose fingerprint
changed, and removes those whose inputs disappeared. This process writes the
state, one transaction per finished batch, so a run killed at any moment
(even with SIGKILL) loses only unfinished batches: the next run redoes them,
keeps the rest, and its outputs equal an uninterrupted run's. The executor is
loaded when the first task has to run, so a rerun with nothing to do starts
no worker. ``force=True`` starts over.

A GeoTIFF depends on its staged tile and on the statistics' names and rules
(``weight_by``, ``aggregate``, ``resampling``, ``attribute``, ``unit``); a
web tile also on the palette and ``value_range``, so recolouring redoes only
the web tiles and legends.

At the end this process writes ``run-summary.json`` and
``raster_summary.csv`` from the state and, when an output changed since they
were last written, the STAC catalogue of the GeoTIFFs (``stac/catalog.json``,
:func:`grouputils.outputs.catalog.write_stac_catalog`) and the map page ``index.html``.

A task that fails (a broken input file, say) does not stop the run: the
other items finish, the failure is reported with the item and its error, and
:class:`RunReport` ``.ok`` is False (the command line then exits non-zero).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

from tqdm.auto import tqdm

from grouputils.core.atomic import write_json_atomic
from grouputils.core.config import Config
from grouputils.core.errors import ConfigError, InputError, OutputError
from grouputils.core.layout import Layout
from grouputils.core.preflight import check_statistic_columns
from grouputils.core.rasterize import RasterTiler
from grouputils.core.staging import TileStager
from grouputils.core.tiles import Tiles, pyramid_min_zoom
from grouputils.run.failures import Failure
from grouputils.run.parallel import choose_batch_size, make_batch, parallel_map
from grouputils.run.reports import run_totals
from grouputils.run.run_steps import STEPS, Context
from grouputils.run.runlock import RunLock
from grouputils.run.state import RunState
from grouputils.teaching.profiling import profile_resources

__all__ = [
    "run_pipeline",
    "RunReport",
    "StepReport",
    "Executor",
    "check_inputs",
    "check_slurm_settings",
]

log = logging.getLogger(__name__)

Executor = Literal["serial", "local", "slurm"]
MANIFEST = "run-manifest.json"  # the state file replaced it; removed when found


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


def _run_task(func: Callable[[Any], Any], item: Any) -> Any:
    """``func(item)`` on a worker (module level, so Parsl sends it by reference)."""
    return func(item)


class _Runner:
    """Maps functions over items on one executor, with progress and partial results."""

    def __init__(
        self,
        executor: Executor,
        workers: int,
        progress: bool,
        start: Callable[[], float] | None = None,
    ) -> None:
        self.executor = executor
        self.workers = workers
        self.progress = progress
        self._start = (
            start  # loads the executor on first use: a run with nothing to do starts no worker
        )
        self.startup_s = 0.0

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
        with tqdm(
            total=sum(map(len, batches)), desc=step, unit="item", disable=not self.progress
        ) as bar:
            for i, res in self._completed(task, batches):
                results[i] = res
                if on_done is not None:
                    on_done(batches[i], res)
                bar.update(len(batches[i]))
        return [r for chunk in results for r in chunk]

    def _completed(
        self, task: Callable[[Any], Any], batches: list[list[Any]]
    ) -> Iterator[tuple[int, Any]]:
        """``(batch index, batch results)`` as batches finish."""
        if self.executor == "serial":
            for i, b in enumerate(batches):
                yield i, task(b)
            return
        import concurrent.futures

        import parsl

        if self._start is not None:
            self.startup_s, self._start = self._start(), None

        app = parsl.python_app(_run_task, data_flow_kernel=parsl.dfk(), cache=False)
        futures = {app(task, b): i for i, b in enumerate(batches)}
        for fut in concurrent.futures.as_completed(futures):
            i = futures[fut]
            try:
                yield i, fut.result()
            except Exception as e:  # the task itself was lost, not one item
                yield i, [(False, Failure.from_exception(e))] * len(batches[i])


# -------------------------------------------------------------- pipeline
@contextlib.contextmanager
def _executor(
    executor: Executor, workers: int, config: Config, slurm: dict[str, Any] | None, blocks: int = 1
) -> Iterator[float]:
    """Load the executor; yield its start-up time (s), measured with a warm-up task."""
    if executor == "serial":
        yield 0.0
        return
    import parsl

    from grouputils.run import parallel

    run_dir = Layout.of(config).parsl_runinfo
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
        Keyword arguments of :func:`grouputils.run.parallel.slurm_config`.

    Returns
    -------
    dict
        The keys ``slurm`` sets, checked.

    Raises
    ------
    ConfigError
        No table, no ``partition``, a key ``slurm_config`` does not take, or a
        wrong value (checked by :class:`grouputils.core.config_slurm.SlurmSettings`).
    """
    from grouputils.core.config_slurm import slurm_settings

    return slurm_settings(slurm)


def _slurm_workers(slurm: dict[str, Any]) -> int:
    """Workers of every node of every block a SLURM run may get (for batch sizes)."""
    per_node = slurm.get("workers_per_node") or slurm.get("cores_per_node") or 1
    return int(per_node) * int(slurm.get("nodes_per_block", 1)) * int(slurm.get("max_blocks", 1))


def _warm_up(_: int) -> float:
    """Import the heavy modules on a worker (and hold it briefly so each worker gets one)."""
    import grouputils.core.rasterize  # noqa: F401
    import grouputils.core.staging  # noqa: F401

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
        raise ConfigError(
            f"{config.dir_output}: the output folder must not be, hold or lie inside the input folder {inp}"
        )
    inputs = Tiles(config).get_filenames_from_dir("input")
    if not inputs:
        if not any(inp.iterdir()):
            raise InputError(inp, "input folder is empty")
        raise InputError(inp, f"holds no GeoPackages (no file ending in {config.input_ext})")
    return inputs


def _one_run_per_output_folder(func: Callable[..., RunReport]) -> Callable[..., RunReport]:
    """Hold the output folder's :class:`~grouputils.run.runlock.RunLock` while ``func`` runs."""

    @functools.wraps(func)
    def locked(config: Config, **kwargs: Any) -> RunReport:
        inputs = check_inputs(config)  # before anything is written
        check_statistic_columns(config, inputs)  # a misspelt attribute fails now, not after staging
        pyramid_min_zoom(config.tms, config.z)  # refuse a TMS whose levels do not double
        with RunLock(Layout.of(config).private, what=config.dir_output):
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
        Keyword arguments of :func:`grouputils.run.parallel.slurm_config`.
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
    grouputils.run.runlock.RunLockedError
        Another run is using the output folder (one run per output folder).
    """
    from grouputils.run.parallel import clamp_workers, usable_cores

    if executor not in ("serial", "local", "slurm"):
        raise ValueError(f"unknown executor {executor!r}; use serial, local or slurm")
    stager = TileStager(config)
    rasterizer = RasterTiler(config)
    inputs = check_inputs(config)
    check_statistic_columns(
        config, inputs
    )  # before any work: a misspelt attribute fails now, not after staging
    pyramid_min_zoom(
        config.tms, config.z
    )  # refuse a TMS whose levels do not double, before any work
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
        raise OutputError(
            config.dir_output, f"output folder is not writable ({e.strerror or e})"
        ) from e
    layout = Layout.of(config)
    state_path = layout.state_file
    if force:
        stager.clear(everything=True)
    if force or not state_path.exists():
        # no state (first run, or one made before the state existed): every
        # GeoTIFF and web tile is rebuilt, so leftovers are dropped now
        for d in (config.dir_geotiff, config.dir_web_tiles):
            shutil.rmtree(d, ignore_errors=True)
        for p in layout.state_files():
            p.unlink(missing_ok=True)
        (config.dir_output / MANIFEST).unlink(missing_ok=True)

    steps: list[StepReport] = []
    timeline: list[Any] = []
    t_run = time.perf_counter()
    with RunState(state_path) as state, contextlib.ExitStack() as stack:

        def start() -> float:
            return stack.enter_context(_executor(executor, n_workers, config, slurm, blocks))

        runner = _Runner(
            executor, n_workers * (blocks if executor == "local" else 1), progress, start
        )
        ctx = Context(config, stager, rasterizer, state, runner, inputs)
        for name, func in STEPS(config):
            rep = StepReport(name)
            steps.append(rep)
            before = runner.startup_s
            with profile_resources() as prof:
                func(ctx, rep)
            _finish(rep, prof, timeline, startup_s=runner.startup_s - before)
        startup_s = runner.startup_s

    # 6. STAC catalogue, map page and summaries (this process), only when an output changed
    summary = _summary(
        config,
        state_path,
        steps,
        startup_s,
        time.perf_counter() - t_run,
        executor,
        n_workers,
        blocks if executor == "local" else 1,
    )
    write_json_atomic(Layout.of(config).run_summary, summary)
    _save_timeline(config, timeline)
    return RunReport(steps=steps, summary=summary)


def _finish(rep: StepReport, prof: Any, timeline: list[Any], startup_s: float = 0.0) -> None:
    rep.seconds = max(0.0, prof.wall_s - startup_s)  # the executor's start-up is reported apart
    rep.peak_rss_mb = prof.peak_rss_bytes / 1e6
    timeline.append((rep.name, prof))
    log.info(
        "%s: %d done, %d up to date, %d failed in %.1f s",
        rep.name,
        rep.done,
        rep.skipped,
        len(rep.failed),
        rep.seconds,
    )


def _summary(
    config: Config,
    state_path: Path,
    steps: list[StepReport],
    startup_s: float,
    wall_s: float,
    executor: str,
    workers: int,
    blocks: int,
) -> dict[str, Any]:
    """The run summary, from the state alone (no output is re-opened)."""
    from grouputils.outputs.catalog import catalog_path

    with RunState(state_path) as state:
        totals = run_totals(state, config)
    catalog = catalog_path(config)
    return {
        **totals,
        "executor": executor,
        "workers": workers,
        "blocks": blocks,
        "executor_startup_s": round(startup_s, 3),
        "wall_s": round(wall_s, 3),
        "steps": [dataclasses.asdict(s) for s in steps],
        "failures": [dict(f, step=s.name) for s in steps for f in s.failed],
        "stac_catalog": (
            catalog.relative_to(config.dir_output).as_posix()
            if sum(totals["geotiff_tiles_per_zoom"].values()) and catalog.exists()
            else None
        ),
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
