"""Time the pipeline on a few input files and project the whole run (``grouputils plan``).

Each sampled file runs through the whole pipeline on its own, serially, in a
child process (so its peak memory is its own, as on a worker) with its input
linked into and its outputs written to a temporary folder that is removed
after: nothing is written anywhere else. The fits and the projection are the
pure functions of :mod:`grouputils.run.plan`.

Per-file runs build each file's pyramid to z=0 on its own, while a whole run
shares parent tiles between files, so the projected time and output are on
the high side for parents (a few per cent of the run on the samples).
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from grouputils.core.errors import InputError
from grouputils.core.layout import Layout
from grouputils.run.plan import LinearFit, Projection, choose_sample, fit_linear, project

__all__ = ["FileTiming", "PlanResult", "time_file", "plan_run"]


@dataclasses.dataclass(frozen=True)
class FileTiming:
    """One file through the whole pipeline: size, seconds, peak memory, outputs."""

    path: Path
    input_bytes: int
    seconds: float
    peak_mb: float
    output_bytes: int
    output_files: int


@dataclasses.dataclass(frozen=True)
class PlanResult:
    """The timed files, the fits (x = input bytes) and the projection."""

    timings: list[FileTiming]
    fits: dict[str, LinearFit]
    projection: Projection


def time_file(path: Path, workdir: Path, config_file: Path | None = None) -> FileTiming:
    """Run the pipeline serially on ``path`` alone in a child process under ``workdir``.

    Raises
    ------
    InputError
        The run failed on the file (its log tail is in the message).
    """
    inp, out = workdir / "in", workdir / "out"
    inp.mkdir(parents=True)
    (inp / path.name).symlink_to(path.resolve())
    cmd = [
        sys.executable,
        "-m",
        "grouputils",
        "run",
        str(inp),
        str(out),
        "--executor",
        "serial",
        "--no-progress",
    ]
    if config_file is not None:
        cmd += ["--config", str(config_file)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise InputError(path, f"the timing run failed:\n{(res.stdout + res.stderr)[-1500:]}")
    layout = Layout(out)
    summary = json.loads(layout.run_summary.read_text())
    dirs = (layout.staged, layout.geotiff, layout.web_tiles)
    files = [p for d in dirs for p in d.rglob("*") if p.is_file()]
    return FileTiming(
        path=path,
        input_bytes=path.stat().st_size,
        seconds=sum(s["seconds"] for s in summary["steps"]),
        peak_mb=max(s["peak_rss_mb"] for s in summary["steps"]),
        output_bytes=sum(p.stat().st_size for p in files),
        output_files=len(files),
    )


def _slurm_defaults(config_file: Path | None) -> dict[str, Any]:
    if config_file is None:
        return {}
    from grouputils.core.config import load_config_file

    return load_config_file(config_file).get("slurm") or {}


def plan_run(
    input_dir: str | Path,
    *,
    sample: int = 4,
    nodes: int | None = None,
    cores_per_node: int | None = None,
    config_file: str | Path | None = None,
    n_files: int | None = None,
    mean_size_mb: float | None = None,
    node_memory_mb: float | None = None,
) -> PlanResult:
    """Time ``sample`` files of ``input_dir`` spanning its size range and project the whole run.

    Parameters
    ----------
    input_dir : str or Path
        Folder of input GeoPackages (read only).
    sample : int
        Files to time (at least two for a fit; three or more for its uncertainty).
    nodes, cores_per_node : int, optional
        The cluster to project onto; default the config file's ``[slurm]``
        table (``nodes_per_block * max_blocks``, ``cores_per_node``), else one
        node with this machine's usable cores.
    config_file : str or Path, optional
        TOML settings for the timing runs (and ``[slurm]``).
    n_files, mean_size_mb : optional
        Project a data set of this many files of this mean size instead of
        the folder (e.g. 26,530 files of 400 MB).
    node_memory_mb : float, optional
        Memory per node; default ``[slurm] mem_per_node`` (GB), else this machine's.

    Returns
    -------
    PlanResult
    """
    import psutil

    from grouputils.core.config import Config
    from grouputils.run.parallel import usable_cores
    from grouputils.run.pipeline import check_inputs

    input_dir = Path(input_dir)
    config_file = Path(config_file) if config_file is not None else None
    inputs = check_inputs(
        Config(dir_input=input_dir, dir_output=Path(tempfile.gettempdir()) / "grouputils-plan-none")
    )
    sizes = [p.stat().st_size for p in inputs]
    chosen = [inputs[i] for i in choose_sample(sizes, max(2, sample))]
    if len(chosen) < 2:
        raise InputError(input_dir, "needs at least two input files to fit time against size")
    with tempfile.TemporaryDirectory(prefix="grouputils-plan-") as tmp:
        timings = [time_file(p, Path(tmp) / f"{i:03d}", config_file) for i, p in enumerate(chosen)]
    x = [t.input_bytes for t in timings]
    fits = {
        "seconds": fit_linear(x, [t.seconds for t in timings]),
        "peak_mb": fit_linear(x, [t.peak_mb for t in timings]),
        "output_bytes": fit_linear(x, [t.output_bytes for t in timings]),
        "output_files": fit_linear(x, [t.output_files for t in timings]),
    }
    slurm = _slurm_defaults(config_file)
    if nodes is None:
        nodes = (
            int(slurm.get("nodes_per_block", 1)) * int(slurm.get("max_blocks", 1)) if slurm else 1
        )
    if cores_per_node is None:
        cores_per_node = int(slurm.get("cores_per_node") or 0) or usable_cores()
    if node_memory_mb is None:
        node_memory_mb = (
            float(slurm["mem_per_node"]) * 1e3
            if slurm.get("mem_per_node")
            else psutil.virtual_memory().total / 1e6
        )
    if n_files is not None or mean_size_mb is not None:
        count = n_files if n_files is not None else len(inputs)
        mean = mean_size_mb * 1e6 if mean_size_mb is not None else sum(sizes) / len(sizes)
        total, largest = count * mean, max(mean, max(sizes))
    else:
        count, total, largest = len(inputs), float(sum(sizes)), float(max(sizes))
    proj = project(
        fits["seconds"],
        fits["peak_mb"],
        fits["output_bytes"],
        fits["output_files"],
        n_files=count,
        input_bytes=total,
        largest_file_bytes=largest,
        nodes=nodes,
        cores_per_node=cores_per_node,
        node_memory_mb=node_memory_mb,
    )
    return PlanResult(timings=timings, fits=fits, projection=proj)
