"""Run one function over many items: serially, on a Parsl pool on this machine, or on SLURM.

The pipeline's steps are pure functions of ``(config, input path) -> output
path``, so running them in parallel is "map a function over a list". This
module holds the pieces a learner needs for that:

* :func:`usable_cores` / :func:`clamp_workers` — how many workers this machine
  (and the instructor) allows, and a warning plus clamp when asked for more;
* :func:`make_batch` / :func:`choose_batch_size` — group items into tasks;
* :func:`local_config` / :func:`slurm_config` — fresh Parsl configurations
  (a loaded Parsl ``Config`` cannot be loaded a second time);
* :func:`parallel_map` / :func:`serial_map` — the same map with a progress bar,
  results in input order and an error that names the item that failed.

Typical use in a notebook::

    import parsl
    from grouputils import local_config, parallel_map, make_batch

    with parsl.load(local_config(workers=4)):
        tiles = parallel_map(stager.stage, input_paths)

When the ``with`` block ends, normally or because something raised, Parsl shuts
its interchange down and cancels the worker block, so no worker process is
left running.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import math
import numbers
import shlex
import sys
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from tqdm.auto import tqdm

from grouputils.core.config import Config
from grouputils.core.errors import ConfigError, GroupUtilsError, GroupUtilsWarning
from grouputils.core import cores as _cores

if TYPE_CHECKING:  # parsl is imported lazily: importing it costs ~0.5 s
    import parsl.config

__all__ = [
    "DEFAULT_WORKERS",
    "DEFAULT_TASK_OVERHEAD_S",
    "MIN_TASKS_PER_WORKER",
    "OVERHEAD_FACTOR",
    "TaskError",
    "WorkerCapWarning",
    "core_limits",
    "usable_cores",
    "clamp_workers",
    "make_batch",
    "choose_batch_size",
    "local_config",
    "slurm_config",
    "parallel_map",
    "serial_map",
]

T = TypeVar("T")
R = TypeVar("R")

#: Workers per group on the course's shared 88-core node (8 groups of 11).
DEFAULT_WORKERS = 11

#: Time one task costs on a warm local HighThroughputExecutor besides the work
#: itself (submitting, serialising, two ZeroMQ hops, bookkeeping), in seconds.
#: Measured with Parsl 2026.10 on a 2-core machine through :func:`parallel_map`:
#: 200-500 no-op tasks through one warm worker took 1.4-2.2 ms each (1.3 ms
#: with two workers), so 2.5 ms is a safe round figure. Rerun
#: ``benchmarks/bench_profiling.py`` to measure it on another machine.
DEFAULT_TASK_OVERHEAD_S = 0.0025

#: Tasks per worker needed to even out unequal task durations (see choose_batch_size).
MIN_TASKS_PER_WORKER = 4

#: Each task should do at least this many times its overhead in work (<= 10 % overhead).
OVERHEAD_FACTOR = 10

_ENV_CAP = _cores.ENV_CAP


class TaskError(GroupUtilsError):
    """One task of a map failed; the original exception is the ``__cause__``.

    Parameters
    ----------
    index : int
        Position of the failing item in the input.
    item : Any
        The item the task was given.
    error : BaseException
        The exception the task raised.
    """

    def __init__(self, index: int, item: Any, error: BaseException) -> None:
        self.index = index
        self.item = item
        self.error = error
        shown = repr(item)
        if len(shown) > 200:
            shown = shown[:197] + "..."
        super().__init__(f"task {index} failed on item {shown}: {type(error).__name__}: {error}")


class WorkerCapWarning(GroupUtilsWarning):
    """More workers were asked for than this machine or the instructor allows."""


# --------------------------------------------------------------------------- cores
# The limits live in grouputils.core.cores; these names stay for existing callers.
_cgroup_cpu_limit = _cores.cgroup_cpu_limit
_env_cap = _cores.env_cap


def core_limits(config: Config | None = None) -> dict[str, int | None]:
    """Each limit on the number of worker processes, by source (see :func:`grouputils.core.cores.core_limits`).

    Parameters
    ----------
    config : Config, optional
        Supplies the instructor's cap ``max_workers``.

    Returns
    -------
    dict
        ``{'affinity', 'cgroup', 'environment', 'config', 'fair_share'}`` -> int or None.
    """
    return _cores.core_limits(config)


def usable_cores(config: Config | None = None) -> int:
    """The number of worker processes this process should use at most.

    The minimum of the CPUs this process may run on, the cgroup CPU quota
    (a container's or a JupyterHub/systemd per-user ``cpu.max`` or
    ``cpu.cfs_quota_us``), the instructor's cap in the
    ``GROUPUTILS_MAX_WORKERS`` environment variable and
    ``config.max_workers``; on a machine with more than 16 CPUs and none of
    these, a fair share with a :class:`grouputils.core.cores.FairShareWarning`.
    See :mod:`grouputils.core.cores`.

    Parameters
    ----------
    config : Config, optional
        A pipeline configuration whose ``max_workers`` caps the result.

    Returns
    -------
    int
        At least 1.

    Raises
    ------
    ConfigError
        If ``GROUPUTILS_MAX_WORKERS`` is set to something other than a positive integer.
    """
    return _cores.usable_cores(config)


def _check_positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def clamp_workers(n: int, config: Config | None = None, *, limit: int | None = None) -> int:
    """Return ``n`` workers, or fewer with a :class:`WorkerCapWarning` if ``n`` is too many.

    Parameters
    ----------
    n : int
        Workers asked for (>= 1).
    config : Config, optional
        Supplies the instructor's cap (see :func:`usable_cores`).
    limit : int, optional
        The cap to use instead of :func:`usable_cores`.

    Returns
    -------
    int
        ``min(n, limit)``.

    Raises
    ------
    ValueError
        If ``n`` is not a positive integer.
    """
    n = _check_positive_int(n, "workers")
    cap = usable_cores(config) if limit is None else _check_positive_int(limit, "limit")
    if n > cap:
        warnings.warn(
            f"{n} workers asked for but only {cap} may be used here "
            f"(limits: {core_limits(config)}); using {cap}",
            WorkerCapWarning,
            stacklevel=2,
        )
        return cap
    return n


# --------------------------------------------------------------------------- batches
def make_batch(items: Iterable[T], batch_size: int) -> list[list[T]]:
    """Split items into consecutive batches of ``batch_size`` (the last may be shorter).

    Parameters
    ----------
    items : iterable
        Any sequence or iterable (a list of paths, a generator, a range...).
        It is read once. A single string is refused: pass a list of strings.
    batch_size : int
        Items per batch, >= 1.

    Returns
    -------
    list of list
        The batches in input order; ``[]`` for no items. A list rather than a
        generator so it can be counted, indexed and iterated more than once,
        which is what a notebook does with it.

    Raises
    ------
    ValueError
        If ``batch_size`` is not an integer >= 1 (``True`` and ``2.0`` are refused).
    TypeError
        If ``items`` is a string or bytes, or not iterable.

    Examples
    --------
    >>> make_batch(range(7), 3)
    [[0, 1, 2], [3, 4, 5], [6]]
    """
    size = _check_positive_int(batch_size, "batch_size")
    if isinstance(items, (str, bytes)):
        raise TypeError("make_batch needs a collection of items, not one string; wrap it in a list")
    it = iter(items)
    batches: list[list[T]] = []
    while batch := list(itertools.islice(it, size)):
        batches.append(batch)
    return batches


def choose_batch_size(
    n_items: int,
    workers: int,
    per_item_s: float | None = None,
    overhead_s: float = DEFAULT_TASK_OVERHEAD_S,
) -> int:
    """A batch size that keeps every worker busy and the executor's overhead small.

    Two rules, in this order of preference:

    1. **Balance**: at least ``MIN_TASKS_PER_WORKER`` (4) tasks per worker.
       Task durations vary (file sizes range 6-88 MB in the course), and with
       one task per worker the slowest task sets the finish time while the
       other workers idle. With >= 4 tasks each, a worker that drew a long task
       takes fewer others, and the idle tail is at most about a quarter of a
       worker's share. So the batch is at most the largest ``b`` with
       ``ceil(n_items / b) >= 4 * workers`` (about ``n_items / (4 * workers)``).
    2. **Overhead**: when the time per item is known, each batch does at least
       ``OVERHEAD_FACTOR`` (10) times the per-task overhead of the executor in
       work, so the overhead is at most ~10 %. So the batch is at least
       ``ceil(10 * overhead_s / per_item_s)``.

    When only rule 1 applies (time per item unknown) the largest batch that
    still gives 4 tasks per worker is returned: fewest tasks, least overhead.
    When both apply and agree, the smallest batch meeting rule 2 is returned:
    overhead is already small, so more, smaller tasks balance better and make
    the progress bar finer. When they conflict, the whole job is so short that
    one round of equal batches — one per worker, ``ceil(n_items / workers)``
    items each — finishes first, so the result is the smaller of that and the
    rule-2 size.

    Parameters
    ----------
    n_items : int
        Number of items to process (>= 0).
    workers : int
        Number of workers (>= 1).
    per_item_s : float, optional
        Measured time to process one item, in seconds (e.g. time one file serially).
    overhead_s : float
        Per-task overhead of the executor in seconds. Default
        ``DEFAULT_TASK_OVERHEAD_S`` (2.5 ms, measured for a local Parsl
        HighThroughputExecutor; on SLURM across nodes use a measured value).

    Returns
    -------
    int
        Items per batch, between 1 and ``max(n_items, 1)``.

    Examples
    --------
    >>> choose_batch_size(454, 11)          # 454 staged tiles, 11 workers
    10
    >>> choose_batch_size(454, 11, per_item_s=0.9)   # ~1 s per tile: no batching needed
    1
    """
    if isinstance(n_items, bool) or not isinstance(n_items, numbers.Integral) or n_items < 0:
        raise ValueError(f"n_items must be an integer >= 0, got {n_items!r}")
    workers = _check_positive_int(workers, "workers")
    if not overhead_s >= 0:
        raise ValueError(f"overhead_s must be >= 0 seconds, got {overhead_s!r}")
    n = int(n_items)
    if n == 0:
        return 1
    k = MIN_TASKS_PER_WORKER * workers  # tasks wanted; ceil(n / b) >= k  <=>  b < n / (k - 1)
    balance_max = max(1, math.ceil(n / (k - 1)) - 1) if n >= k else 1
    if per_item_s is None:
        return balance_max
    if not per_item_s > 0:
        raise ValueError(f"per_item_s must be > 0 seconds, got {per_item_s!r}")
    overhead_min = max(1, math.ceil(OVERHEAD_FACTOR * overhead_s / per_item_s - 1e-9))
    if overhead_min <= balance_max:
        return min(overhead_min, n)
    return min(overhead_min, math.ceil(n / workers))


# --------------------------------------------------------------------------- parsl configs
def _default_run_dir(config: Config | None) -> Path:
    default = Config.__dataclass_fields__["dir_output"].default
    base = config.dir_output if config is not None else default
    return Path(base) / ".grouputils" / "parsl-runinfo"


def _worker_launch_cmd(python: str) -> str:
    """HTEX's worker-pool command run as ``<python> -m <module>`` instead of by name on PATH."""
    from parsl.executors.high_throughput import executor as htex_module

    default = htex_module.DEFAULT_LAUNCH_CMD
    program, _, options = default.partition(" ")
    if program != "process_worker_pool.py":  # pragma: no cover - guards a Parsl change
        raise RuntimeError(f"unexpected Parsl launch command {default!r}; update grouputils")
    module = "parsl.executors.high_throughput.process_worker_pool"
    return f"{shlex.quote(python)} -m {module} {options}"


#: The interchange ignores SIGINT: Ctrl-C in a terminal reaches the whole foreground
#: process group, and an interchange killed by it leaves the main process waiting
#: forever for results. The main process gets the KeyboardInterrupt and shuts the
#: executor down (which stops the interchange with SIGTERM).
_INTERCHANGE_IGNORING_SIGINT = (
    "import runpy, signal; signal.signal(signal.SIGINT, signal.SIG_IGN); "
    "runpy.run_module('parsl.executors.high_throughput.interchange', run_name='__main__', alter_sys=True)"
)

#: Seconds between heartbeats of the interchange and a local worker pool, and
#: seconds of silence after which a pool exits (Parsl's defaults are 30 and 120):
#: a worker pool runs in its own session, so when the run is killed (SIGKILL of its
#: process group, with the interchange) only the missing heartbeats stop it.
LOCAL_HEARTBEAT_PERIOD = 2
LOCAL_HEARTBEAT_THRESHOLD = 8


def _interchange_cmd(python: str) -> list[str]:
    return [python, "-c", _INTERCHANGE_IGNORING_SIGINT]


def local_config(
    workers: int | None = None,
    run_dir: str | Path | None = None,
    worker_init: str | None = None,
    *,
    config: Config | None = None,
    strategy_period: float = 0.5,
    label: str = "htex_local",
    allow_more: bool = False,
    blocks: int = 1,
) -> parsl.config.Config:
    """A fresh Parsl configuration for a pool of worker processes on this machine.

    A HighThroughputExecutor with one block of ``workers`` worker processes
    started by a LocalProvider, talking over the loopback interface. Build a
    new one for every ``parsl.load``: Parsl refuses to load a Config twice.

    Parameters
    ----------
    workers : int, optional
        Worker processes. Default ``min(DEFAULT_WORKERS, usable_cores(config))``
        (11 on the course server). More than :func:`usable_cores` warns
        (:class:`WorkerCapWarning`) and is clamped.
    run_dir : str or Path, optional
        Parsl's log folder. Default ``<config.dir_output>/.grouputils/parsl-runinfo``
        (``group-project/.grouputils/parsl-runinfo`` without a config), so Parsl
        does not litter the working directory with ``runinfo/`` and its
        certificates and host names stay out of the published outputs. Made absolute.
    worker_init : str, optional
        Shell commands run before the worker pool starts (``module load ...``).
        Not needed to find this Python environment: see Notes.
    config : Config, optional
        The pipeline configuration: its ``dir_output`` places ``run_dir`` and
        its ``max_workers`` caps ``workers``.
    strategy_period : float
        Seconds between Parsl's scaling checks. Parsl's default of 5 s delays
        the first result by 7-8 s after ``load()``; 0.5 s gives ~3 s.
    label : str
        Executor label.
    allow_more : bool
        Keep ``workers`` even above :func:`usable_cores` (still warns). Only
        for deliberate oversubscription experiments on a machine you do not
        share.
    blocks : int
        Independent worker pools (Parsl blocks), each with ``workers``
        workers. More than one simulates several cluster nodes on one machine
        (each block is what one SLURM job would be); the total is clamped to
        the usable cores unless ``allow_more``.

    Returns
    -------
    parsl.config.Config
        Use as ``with parsl.load(local_config(4)):``.

    Notes
    -----
    Parsl starts the interchange and the worker pool by running the scripts
    ``interchange.py`` and ``process_worker_pool.py`` found on ``PATH``. A
    Jupyter kernel started from a launcher often lacks the environment's
    ``bin/`` on its ``PATH`` and then fails with ``FileNotFoundError``. This
    configuration starts both as ``<this Python> -m <parsl module>`` with the
    absolute path of the running interpreter (``sys.executable``), so it works
    whatever ``PATH`` is and without changing the caller's environment.

    Functions sent to the workers must be importable there: define them in an
    installed package (such as grouputils), not in the notebook.
    """
    from parsl.config import Config as ParslConfig
    from parsl.executors import HighThroughputExecutor
    from parsl.providers import LocalProvider

    cap = usable_cores(config)
    if workers is None:
        n = min(DEFAULT_WORKERS, cap)
    elif allow_more:
        n = _check_positive_int(workers, "workers")
        if n > cap:
            warnings.warn(
                f"{n} workers on {cap} usable cores: workers will share cores (allow_more=True)",
                WorkerCapWarning,
                stacklevel=2,
            )
    else:
        n = clamp_workers(workers, config)
    blocks = _check_positive_int(blocks, "blocks")
    if blocks > 1 and not allow_more:
        n = max(1, clamp_workers(n * blocks, config) // blocks)
    run_dir = Path(run_dir) if run_dir is not None else _default_run_dir(config)
    run_dir = run_dir.expanduser().resolve()
    python = sys.executable
    executor = HighThroughputExecutor(
        label=label,
        max_workers_per_node=n,
        address="127.0.0.1",
        loopback_address="127.0.0.1",
        launch_cmd=_worker_launch_cmd(python),
        interchange_launch_cmd=_interchange_cmd(python),
        heartbeat_period=LOCAL_HEARTBEAT_PERIOD,
        heartbeat_threshold=LOCAL_HEARTBEAT_THRESHOLD,
        provider=LocalProvider(
            init_blocks=blocks,
            min_blocks=blocks,
            max_blocks=blocks,
            nodes_per_block=1,
            worker_init=worker_init or "",
        ),
    )
    return ParslConfig(
        executors=[executor],
        run_dir=str(run_dir),
        strategy_period=strategy_period,
    )


def slurm_config(
    partition: str,
    account: str | None = None,
    *,
    nodes_per_block: int = 1,
    cores_per_node: int | None = None,
    workers_per_node: int | None = None,
    mem_per_node: int | None = None,
    walltime: str = "01:00:00",
    worker_init: str = "",
    exclusive: bool = True,
    init_blocks: int = 1,
    max_blocks: int = 1,
    scheduler_options: str = "",
    address: str | None = None,
    python: str | None = None,
    run_dir: str | Path | None = None,
    config: Config | None = None,
    strategy_period: float = 0.5,
    label: str = "htex_slurm",
    retries: int = 2,
    heartbeat_period: int = 30,
    heartbeat_threshold: int = 120,
) -> parsl.config.Config:
    """A fresh Parsl configuration that runs workers on SLURM compute nodes.

    Each block is one SLURM job of ``nodes_per_block`` nodes; ``srun`` starts
    one worker pool per node, each with ``workers_per_node`` workers. Parsl
    submits up to ``max_blocks`` jobs as tasks wait.

    Parameters
    ----------
    partition : str
        SLURM partition (``sbatch --partition``).
    account : str, optional
        Allocation charged (``sbatch --account``).
    nodes_per_block : int
        Nodes per SLURM job.
    cores_per_node : int, optional
        Cores requested per node (``--cpus-per-task``); also the default
        number of workers per node.
    workers_per_node : int, optional
        Worker processes per node. Default ``cores_per_node`` (or 1 if that is
        unknown). The instructor's cap (``GROUPUTILS_MAX_WORKERS`` or
        ``config.max_workers``) applies; the cores of the login node do not.
    mem_per_node : int, optional
        Memory per node in GB (``--mem``).
    walltime : str
        ``HH:MM:SS`` per job.
    worker_init : str
        Shell commands run on each node before the workers start, e.g.
        ``"module load python; source ~/envs/iwp/bin/activate"``.
    exclusive : bool
        Request whole nodes (``--exclusive``).
    init_blocks, max_blocks : int
        Jobs submitted at start and at most.
    scheduler_options : str
        Extra ``#SBATCH`` lines.
    address : str, optional
        Address of this (login) node that compute nodes can reach; default:
        Parsl tries every interface.
    python : str, optional
        Interpreter the workers run, default ``sys.executable`` (the path must
        exist on the compute nodes: true when the environment is on a shared
        file system). Pass ``"python3"`` to use whatever ``worker_init`` puts
        on ``PATH``.
    run_dir : str or Path, optional
        Parsl's log folder; default ``<config.dir_output>/.grouputils/parsl-runinfo``.
    config : Config, optional
        The pipeline configuration (``dir_output``, ``max_workers``).
    strategy_period : float
        Seconds between Parsl's scaling checks.
    label : str
        Executor label.
    retries : int
        Times Parsl resubmits a task whose worker was lost (a block ended by
        its walltime, ``scancel`` or a node failure). Pipeline tasks catch
        their own errors and write through temporary names, so a rerun task
        can only redo lost work; it runs on another block (Parsl submits a new
        one while tasks wait and ``max_blocks`` allows).
    heartbeat_period, heartbeat_threshold : int
        Seconds between worker heartbeats, and without one before a block's
        workers count as lost and their tasks are retried (Parsl's defaults).

    Returns
    -------
    parsl.config.Config

    Examples
    --------
    Four single-node jobs of 128 cores on an NCSA Delta-like cluster (CPU
    partition ``cpu``, accounts named ``<project>-delta-cpu``)::

        cfg = slurm_config(
            "cpu",
            account="abcd-delta-cpu",
            nodes_per_block=1,
            cores_per_node=128,
            mem_per_node=240,
            walltime="00:30:00",
            worker_init="module load anaconda3_cpu; conda activate iwp",
            max_blocks=4,
        )
        with parsl.load(cfg):
            tiles = parallel_map(stage_file, inputs)
    """
    from parsl.config import Config as ParslConfig
    from parsl.executors import HighThroughputExecutor
    from parsl.launchers import SrunLauncher
    from parsl.providers import SlurmProvider

    if not partition:
        raise ConfigError("slurm_config needs a partition name")
    nodes_per_block = _check_positive_int(nodes_per_block, "nodes_per_block")
    if cores_per_node is not None:
        cores_per_node = _check_positive_int(cores_per_node, "cores_per_node")
    n = workers_per_node if workers_per_node is not None else (cores_per_node or 1)
    n = _check_positive_int(n, "workers_per_node")
    config_cap = None if config is None else config.max_workers
    caps = [c for c in (_env_cap(), config_cap) if c is not None]
    if caps:
        n = clamp_workers(n, limit=min(caps))
    python = python or sys.executable
    run_dir = Path(run_dir) if run_dir is not None else _default_run_dir(config)
    executor = HighThroughputExecutor(
        label=label,
        max_workers_per_node=n,
        address=address,
        heartbeat_period=_check_positive_int(heartbeat_period, "heartbeat_period"),
        heartbeat_threshold=_check_positive_int(heartbeat_threshold, "heartbeat_threshold"),
        launch_cmd=_worker_launch_cmd(python),
        interchange_launch_cmd=_interchange_cmd(sys.executable),
        provider=SlurmProvider(
            partition=partition,
            account=account,
            nodes_per_block=nodes_per_block,
            cores_per_node=cores_per_node,
            mem_per_node=mem_per_node,
            walltime=walltime,
            worker_init=worker_init,
            exclusive=exclusive,
            init_blocks=init_blocks,
            min_blocks=0,
            max_blocks=max_blocks,
            scheduler_options=scheduler_options,
            launcher=SrunLauncher(),
        ),
    )
    return ParslConfig(
        executors=[executor],
        run_dir=str(run_dir.expanduser().resolve()),
        strategy_period=strategy_period,
        retries=max(0, int(retries)),
    )


# --------------------------------------------------------------------------- maps
def _apply(func: Callable[[Any], Any], item: Any) -> Any:
    """Run ``func(item)`` on a worker (module level, so Parsl sends it by reference)."""
    return func(item)


def _progress(total: int, desc: str | None, progress: bool) -> tqdm:
    return tqdm(total=total, desc=desc, disable=not progress, unit="task")


def serial_map(
    func: Callable[[T], R],
    items: Iterable[T],
    *,
    progress: bool = True,
    desc: str | None = None,
) -> list[R]:
    """``[func(item) for item in items]`` with a progress bar and a named error.

    The serial twin of :func:`parallel_map` (same arguments, same results,
    same error), for ``--executor serial`` and for debugging a task.

    Parameters
    ----------
    func : callable
        Called with one item.
    items : iterable
        The items, read once.
    progress : bool
        Show a tqdm progress bar.
    desc : str, optional
        Label of the progress bar.

    Returns
    -------
    list
        ``func(item)`` for each item, in input order.

    Raises
    ------
    TaskError
        At the first item whose call raises; the original exception is its
        ``__cause__``.
    """
    items = list(items)
    out: list[R] = []
    with _progress(len(items), desc, progress) as bar:
        for i, item in enumerate(items):
            try:
                out.append(func(item))
            except Exception as e:
                raise TaskError(i, item, e) from e
            bar.update(1)
    return out


def parallel_map(
    func: Callable[[T], R],
    items: Iterable[T],
    *,
    progress: bool = True,
    desc: str | None = None,
) -> list[R]:
    """Run ``func(item)`` for every item on the loaded Parsl executor.

    Submits one Parsl ``python_app`` task per item to the DataFlowKernel that
    ``parsl.load(...)`` made current, advances a progress bar as tasks
    finish (in any order) and returns the results in input order.

    Parameters
    ----------
    func : callable
        Called with one item on a worker. It must be importable there: a
        function or bound method from an installed package (e.g.
        ``stager.stage``), not one defined in a notebook, whose module
        globals do not reach the worker. The item and the object a bound
        method belongs to are pickled, so keep them small (paths, configs).
    items : iterable
        The items, read once. Use :func:`make_batch` and a function that takes
        a list to send several items per task.
    progress : bool
        Show a tqdm progress bar that advances as tasks complete.
    desc : str, optional
        Label of the progress bar.

    Returns
    -------
    list
        ``func(item)`` for each item, in input order.

    Raises
    ------
    TaskError
        As soon as a task fails (the first failure in completion order); it
        names the item, and the task's exception is its ``__cause__``. Tasks
        already submitted keep running until the Parsl ``with`` block ends.
    ConfigError
        If no Parsl configuration is loaded.
    """
    import parsl
    from parsl.errors import NoDataFlowKernelError

    try:
        dfk = parsl.dfk()
    except NoDataFlowKernelError:
        raise ConfigError(
            "no Parsl configuration is loaded: run inside `with parsl.load(local_config()):` "
            "or use serial_map"
        ) from None
    app = parsl.python_app(_apply, data_flow_kernel=dfk, cache=False)
    items = list(items)
    futures = {app(func, item): i for i, item in enumerate(items)}
    results: list[Any] = [None] * len(items)
    with _progress(len(items), desc, progress) as bar:
        for fut in concurrent.futures.as_completed(futures):
            i = futures[fut]
            error = fut.exception()
            if error is not None:
                raise TaskError(i, items[i], error) from error
            results[i] = fut.result()
            bar.update(1)
    return results
