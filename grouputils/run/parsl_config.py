"""Fresh Parsl configurations: a worker pool on this machine, or workers on SLURM nodes.

A loaded Parsl ``Config`` cannot be loaded a second time, so each function
builds a new one. Both start Parsl's interchange and worker pools as
``<this Python> -m <parsl module>``, so they work whatever ``PATH`` is (a
Jupyter kernel started from a launcher often lacks the environment's
``bin/``). Load one with ``parsl.load`` in a notebook, or hand it to
:class:`grouputils.run.executors.Executor`.
"""

from __future__ import annotations

import shlex
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from grouputils.core.config import Config
from grouputils.core.cores import (
    WorkerCapWarning,
    check_positive_int,
    clamp_workers,
    env_cap,
    usable_cores,
)
from grouputils.core.errors import ConfigError
from grouputils.core.layout import Layout

if TYPE_CHECKING:  # parsl is imported lazily: importing it costs ~0.5 s
    import parsl.config

__all__ = [
    "DEFAULT_WORKERS",
    "LOCAL_HEARTBEAT_PERIOD",
    "LOCAL_HEARTBEAT_THRESHOLD",
    "default_run_dir",
    "local_config",
    "slurm_config",
]

#: Workers per group on the course's shared 88-core node (8 groups of 11).
DEFAULT_WORKERS = 11


def default_run_dir(config: Config | None) -> Path:
    """Parsl's log folder: ``<config.dir_output>/.grouputils/parsl-runinfo``.

    Parameters
    ----------
    config : Config or None
        Without one, the default output folder (``group-project``) is used.

    Returns
    -------
    Path
        Relative when ``dir_output`` is.
    """
    default = Config.__dataclass_fields__["dir_output"].default
    base = config.dir_output if config is not None else default
    return Layout(Path(base)).parsl_runinfo


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
    "runpy.run_module('parsl.executors.high_throughput.interchange', "
    "run_name='__main__', alter_sys=True)"
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
        n = check_positive_int(workers, "workers")
        if n > cap:
            warnings.warn(
                f"{n} workers on {cap} usable cores: workers will share cores (allow_more=True)",
                WorkerCapWarning,
                stacklevel=2,
            )
    else:
        n = clamp_workers(workers, config)
    blocks = check_positive_int(blocks, "blocks")
    if blocks > 1 and not allow_more:
        n = max(1, clamp_workers(n * blocks, config) // blocks)
    run_dir = Path(run_dir) if run_dir is not None else default_run_dir(config)
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
    nodes_per_block = check_positive_int(nodes_per_block, "nodes_per_block")
    if cores_per_node is not None:
        cores_per_node = check_positive_int(cores_per_node, "cores_per_node")
    n = workers_per_node if workers_per_node is not None else (cores_per_node or 1)
    n = check_positive_int(n, "workers_per_node")
    config_cap = None if config is None else config.max_workers
    caps = [c for c in (env_cap(), config_cap) if c is not None]
    if caps:
        n = clamp_workers(n, limit=min(caps))
    python = python or sys.executable
    run_dir = Path(run_dir) if run_dir is not None else default_run_dir(config)
    executor = HighThroughputExecutor(
        label=label,
        max_workers_per_node=n,
        address=address,
        heartbeat_period=check_positive_int(heartbeat_period, "heartbeat_period"),
        heartbeat_threshold=check_positive_int(heartbeat_threshold, "heartbeat_threshold"),
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
