"""One way to run a function over many items: in this process, a process pool, or Parsl.

:class:`Executor` is what the pipeline (:func:`grouputils.run.pipeline.run_pipeline`),
:func:`parallel_map` / :func:`serial_map` and the worker sweeps
(:func:`grouputils.teaching.sweeps.sweep_workers`) run their tasks on. It

* loads a Parsl configuration (:func:`grouputils.run.parsl_config.local_config`
  or :func:`~grouputils.run.parsl_config.slurm_config`) into a DataFlowKernel of
  its own, never the one a learner loaded with ``parsl.load``, or starts a
  :class:`concurrent.futures.ProcessPoolExecutor`, or runs in this process;
* warms every worker up (imports the work's modules) when it starts, and times
  that start-up apart from the work (:attr:`Executor.startup_s`); it starts on
  the first task, so a run with nothing to do starts no worker;
* submits a function over items, one item or one batch per task, and yields
  each task's outcome as it finishes, a failure as a value (:meth:`Executor.completed`);
* collects results in input order with a tqdm bar that can be turned off
  (:meth:`Executor.map`);
* shuts down cleanly when closed (or its ``with`` block ends): Parsl stops the
  interchange and cancels the worker blocks, so no worker process is left.

Typical use in a notebook, on a configuration the learner loaded::

    import parsl
    from grouputils import local_config, parallel_map

    with parsl.load(local_config(workers=4)):
        tiles = parallel_map(stager.stage, input_paths)
"""

from __future__ import annotations

import concurrent.futures
import functools
import importlib
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from tqdm.auto import tqdm

from grouputils.core.errors import ConfigError, GroupUtilsError
from grouputils.run.batches import choose_batch_size, make_batch
from grouputils.run.failures import Failure

if TYPE_CHECKING:  # parsl is imported lazily: importing it costs ~0.5 s
    import parsl.config
    from parsl.dataflow.dflow import DataFlowKernel

__all__ = [
    "Executor",
    "ExecutorKind",
    "Outcome",
    "TaskError",
    "guarded_batch",
    "parallel_map",
    "serial_map",
    "warm_up",
]

T = TypeVar("T")
R = TypeVar("R")

#: ``'serial'``: this process; ``'process'``: a local process pool (no Parsl);
#: ``'local'`` / ``'slurm'``: a Parsl HighThroughputExecutor on this machine / on SLURM.
ExecutorKind = Literal["serial", "process", "local", "slurm"]
KINDS: tuple[str, ...] = ("serial", "process", "local", "slurm")

#: One item's result: ``(True, value)`` or ``(False, Failure)``.
Outcome = tuple[bool, Any]


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


# ----------------------------------------------------------------- worker side
def _call(func: Callable[[Any], Any], item: Any) -> Any:
    """``func(item)`` on a worker (module level, so Parsl and pickle send it by reference)."""
    return func(item)


def guarded_batch(func: Callable[[Any], Any], items: Sequence[Any]) -> list[Outcome]:
    """``func`` on each item; a raised error becomes a :class:`Failure` value, the rest go on.

    The traceback is formatted where the error happened (on the worker), so
    it survives the trip back.

    Parameters
    ----------
    func : callable
        Called with one item.
    items : sequence
        The batch.

    Returns
    -------
    list of Outcome
        ``(True, result)`` or ``(False, Failure)`` per item, in order.
    """
    out: list[Outcome] = []
    for item in items:
        try:
            out.append((True, func(item)))
        except Exception as e:  # reported per item; the batch goes on
            out.append((False, Failure.from_exception(e)))
    return out


def warm_up(modules: Sequence[str], hold_s: float) -> int:
    """Import ``modules`` on a worker and hold it ``hold_s`` seconds, so each worker takes one.

    Parameters
    ----------
    modules : sequence of str
        Modules the work needs; one that cannot be imported is skipped (the
        task itself then reports the error).
    hold_s : float
        Seconds to keep the worker busy.

    Returns
    -------
    int
        The worker's process id.
    """
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError:
            pass
    time.sleep(hold_s)
    return os.getpid()


# ----------------------------------------------------------------- executor
class Executor:
    """Tasks on one executor: started on first use, warmed up, closed cleanly.

    Parameters
    ----------
    kind : {'serial', 'process', 'local', 'slurm'}
        Where tasks run (see :data:`ExecutorKind`).
    workers : int
        Worker processes in all (every node of every block): the number of
        warm-up tasks, the size of a process pool and what batch sizes are
        chosen for.
    parsl_config : callable, optional
        For ``'local'`` and ``'slurm'``: returns a fresh ``parsl.config.Config``
        (called when the executor starts, so a run with nothing to do does
        not even import Parsl).
    warm_modules : sequence of str
        Modules every worker imports before the work starts.
    warm_hold_s : float
        Seconds each warm-up task holds its worker (so each worker gets one);
        0 skips the warm-up.
    progress : bool
        Show tqdm bars in :meth:`map`.
    """

    def __init__(
        self,
        kind: ExecutorKind = "serial",
        *,
        workers: int = 1,
        parsl_config: Callable[[], parsl.config.Config] | None = None,
        warm_modules: Sequence[str] = (),
        warm_hold_s: float = 0.2,
        progress: bool = True,
    ) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown executor {kind!r}; use one of {', '.join(KINDS)}")
        if kind in ("local", "slurm") and parsl_config is None:
            raise ValueError(f"a {kind!r} executor needs a parsl_config")
        self.kind = kind
        self.workers = max(1, int(workers))
        self.progress = progress
        self.startup_s = 0.0
        self._make_config = parsl_config
        self._warm = (tuple(warm_modules), float(warm_hold_s))
        self._dfk: DataFlowKernel | None = None
        self._owned = True
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None
        self._submit: Callable[..., concurrent.futures.Future[Any]] | None = None

    @classmethod
    def loaded(cls, *, progress: bool = True) -> Executor:
        """The Parsl configuration loaded with ``parsl.load``, as an executor (never closed by it).

        Parameters
        ----------
        progress : bool
            Show tqdm bars in :meth:`map`.

        Returns
        -------
        Executor

        Raises
        ------
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
        ex = cls("local", parsl_config=lambda: dfk.config, warm_hold_s=0, progress=progress)
        ex._dfk, ex._owned = dfk, False
        ex._submit = parsl.python_app(_call, data_flow_kernel=dfk, cache=False)
        return ex

    @property
    def run_dir(self) -> str | None:
        """Parsl's run folder once started (its worker pools name it), else None."""
        return None if self._dfk is None else str(self._dfk.run_dir)

    # -------------------------------------------------------------- life cycle
    def start(self) -> float:
        """Start the workers and warm them up, once; return the start-up time in seconds."""
        if self._submit is not None or self.kind == "serial":
            return self.startup_s
        t0 = time.perf_counter()
        try:
            if self.kind == "process":
                import multiprocessing

                ctx = multiprocessing.get_context("spawn")  # fork is unsafe with threads running
                self._pool = concurrent.futures.ProcessPoolExecutor(self.workers, mp_context=ctx)
                pool = self._pool

                def submit(func: Callable[[Any], Any], item: Any) -> concurrent.futures.Future[Any]:
                    return pool.submit(_call, func, item)

                self._submit = submit
            else:
                import parsl
                from parsl.dataflow.dflow import DataFlowKernel

                assert self._make_config is not None
                self._dfk = DataFlowKernel(self._make_config())  # not global: a learner's DFK stays
                self._submit = parsl.python_app(_call, data_flow_kernel=self._dfk, cache=False)
            modules, hold = self._warm
            if hold > 0:
                warm = functools.partial(warm_up, modules)
                for fut in [self._submit(warm, hold) for _ in range(self.workers)]:
                    fut.result()
        except BaseException:
            self.close()
            raise
        self.startup_s = time.perf_counter() - t0
        return self.startup_s

    def close(self) -> None:
        """Shut the workers down (Parsl: interchange and blocks); a no-op if never started."""
        dfk, pool = self._dfk, self._pool
        self._dfk, self._pool, self._submit = None, None, None
        if dfk is not None and self._owned:
            dfk.cleanup()
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -------------------------------------------------------------- tasks
    def completed(
        self, func: Callable[[Any], Any], items: Sequence[Any]
    ) -> Iterator[tuple[int, bool, Any]]:
        """Run ``func(item)`` as one task per item; yield ``(index, ok, result or exception)``.

        In completion order for a pool, in input order in this process
        (``'serial'``, where nothing runs before it is asked for). A raised
        exception, or a task lost with its worker, is yielded as a value.

        Parameters
        ----------
        func : callable
            Called with one item; importable on the workers.
        items : sequence
            One task each.

        Yields
        ------
        tuple
            ``(index in items, True, result)`` or ``(index, False, exception)``.
        """
        if self.kind == "serial":
            for i, item in enumerate(items):
                try:
                    yield i, True, func(item)
                except Exception as e:
                    yield i, False, e
            return
        self.start()
        assert self._submit is not None
        futures = {self._submit(func, item): i for i, item in enumerate(items)}
        for fut in concurrent.futures.as_completed(futures):
            error = fut.exception()
            i = futures[fut]
            yield (i, False, error) if error is not None else (i, True, fut.result())

    def map(
        self,
        desc: str,
        func: Callable[[Any], Any],
        items: Iterable[Any],
        *,
        batch: bool = False,
        on_done: Callable[[list[Any], list[Outcome]], None] | None = None,
    ) -> list[Outcome]:
        """``(ok, result or Failure)`` per item, in input order; one failure never stops the rest.

        Parameters
        ----------
        desc : str
            Label of the progress bar.
        func : callable
            Called with one item on a worker.
        items : iterable
            The items, read once.
        batch : bool
            Send items in batches (one task each) of :func:`choose_batch_size`.
        on_done : callable, optional
            ``on_done(batch_items, batch_outcomes)``, called in this process as
            each task finishes (in completion order), so a caller can record
            progress before the whole map ends.

        Returns
        -------
        list of Outcome
            A task lost as a whole (its worker killed, say) fails each of its items.
        """
        items = list(items)
        if not items:
            return []
        size = choose_batch_size(len(items), self.workers) if batch and len(items) > 1 else 1
        batches = make_batch(items, size)
        results: list[list[Outcome]] = [[] for _ in batches]
        task = functools.partial(guarded_batch, func)
        with tqdm(total=len(items), desc=desc, unit="item", disable=not self.progress) as bar:
            for i, ok, res in self.completed(task, batches):
                results[i] = res if ok else [(False, Failure.from_exception(res))] * len(batches[i])
                if on_done is not None:
                    on_done(batches[i], results[i])
                bar.update(len(batches[i]))
        return [r for chunk in results for r in chunk]

    def map_or_raise(
        self, func: Callable[[T], R], items: Iterable[T], *, desc: str | None = None
    ) -> list[R]:
        """``func(item)`` per item in input order; raise :class:`TaskError` at the first failure.

        Parameters
        ----------
        func : callable
            Called with one item.
        items : iterable
            The items, read once; one task each.
        desc : str, optional
            Label of the progress bar.

        Returns
        -------
        list
            The results in input order.

        Raises
        ------
        TaskError
            At the first failure in completion order, naming the item; the
            task's exception is its ``__cause__``. Tasks already submitted keep
            running until the executor is closed.
        """
        items = list(items)
        results: list[Any] = [None] * len(items)
        with tqdm(total=len(items), desc=desc, unit="task", disable=not self.progress) as bar:
            for i, ok, res in self.completed(func, items):
                if not ok:
                    raise TaskError(i, items[i], res) from res
                results[i] = res
                bar.update(1)
        return results


# ----------------------------------------------------------------- maps for notebooks
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
    return Executor("serial", progress=progress).map_or_raise(func, items, desc=desc)


def parallel_map(
    func: Callable[[T], R],
    items: Iterable[T],
    *,
    progress: bool = True,
    desc: str | None = None,
) -> list[R]:
    """Run ``func(item)`` for every item on the loaded Parsl executor.

    Submits one Parsl task per item to the DataFlowKernel that
    ``parsl.load(...)`` made current, advances a progress bar as tasks
    finish (in any order) and returns the results in input order.

    Parameters
    ----------
    func : callable
        Called with one item on a worker. A function or bound method from an
        installed package (e.g. ``stager.stage``) is sent by reference. A
        function defined in a notebook is sent by value and works too, as long
        as it gets everything through its arguments or imports inside its body:
        the notebook's other globals do not reach the worker. The item and the
        object a bound method belongs to are pickled, so keep them small.
    items : iterable
        The items, read once. Use :func:`~grouputils.run.batches.make_batch`
        and a function that takes a list to send several items per task.
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
    return Executor.loaded(progress=progress).map_or_raise(func, items, desc=desc)
