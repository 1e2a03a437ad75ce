"""The ``[slurm]`` table of a config file, as a typed model.

Its fields are the arguments of :func:`grouputils.run.parsl_config.slurm_config`
(except ``run_dir`` and ``config``, which the pipeline sets), with the same
defaults; a test keeps the two in step. :func:`slurm_settings` checks a table
and returns the keys it sets, ready to pass on as keyword arguments.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictStr,
    ValidationError,
    model_validator,
)

from grouputils.core.validation import join_problems, problems

__all__ = ["WALLTIME", "SlurmSettings", "slurm_problems", "slurm_settings"]

#: SLURM's time formats: minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS.
WALLTIME = r"^(\d+-\d{1,2}(:\d{1,2}){0,2}|\d+(:\d{1,2}){0,2})$"

PositiveInt = Annotated[int, Field(strict=True, ge=1)]


class SlurmSettings(BaseModel):
    """The ``[slurm]`` table: where and how Parsl submits worker blocks with ``sbatch``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    partition: Annotated[
        StrictStr, Field(min_length=1, description="SLURM partition (sbatch --partition).")
    ]
    account: Annotated[
        StrictStr | None, Field(description="Allocation charged (sbatch --account).")
    ] = None
    nodes_per_block: Annotated[
        PositiveInt, Field(description="Nodes per SLURM job (one block).")
    ] = 1
    cores_per_node: Annotated[
        PositiveInt | None,
        Field(
            description="Cores requested per node (--cpus-per-task); also the default workers per "
            "node."
        ),
    ] = None
    workers_per_node: Annotated[
        PositiveInt | None,
        Field(
            description="Worker processes per node (default cores_per_node, or 1); the "
            "instructor's cap applies."
        ),
    ] = None
    mem_per_node: Annotated[
        PositiveInt | None, Field(description="Memory per node in GB (--mem).")
    ] = None
    walltime: Annotated[
        StrictStr,
        Field(
            description="Time limit of each job, e.g. HH:MM:SS or D-HH:MM:SS.",
            json_schema_extra={"pattern": WALLTIME},
        ),
    ] = "01:00:00"
    worker_init: Annotated[
        StrictStr,
        Field(
            description="Shell commands run on each node before the workers start (e.g. activate "
            "the environment)."
        ),
    ] = ""
    exclusive: Annotated[StrictBool, Field(description="Request whole nodes (--exclusive).")] = True
    init_blocks: Annotated[
        int, Field(strict=True, ge=0, description="Jobs submitted when the run starts.")
    ] = 1
    max_blocks: Annotated[
        PositiveInt, Field(description="Jobs submitted at most (Parsl adds them as tasks wait).")
    ] = 1
    scheduler_options: Annotated[StrictStr, Field(description="Extra #SBATCH lines.")] = ""
    address: Annotated[
        StrictStr | None,
        Field(
            description="Address of this (login) node that compute nodes can reach; default: "
            "every interface."
        ),
    ] = None
    python: Annotated[
        StrictStr | None,
        Field(
            description="Interpreter the workers run; default this one (its path must exist on "
            "the nodes)."
        ),
    ] = None
    strategy_period: Annotated[
        float,
        Field(
            strict=True,
            gt=0,
            allow_inf_nan=False,
            description="Seconds between Parsl's scaling checks.",
        ),
    ] = 0.5
    label: Annotated[StrictStr, Field(min_length=1, description="Parsl executor label.")] = (
        "htex_slurm"
    )
    retries: Annotated[
        int,
        Field(
            strict=True,
            ge=0,
            description="Times a task lost with its block (walltime, node failure) is resubmitted.",
        ),
    ] = 2
    heartbeat_period: Annotated[
        PositiveInt, Field(description="Seconds between worker heartbeats.")
    ] = 30
    heartbeat_threshold: Annotated[
        PositiveInt,
        Field(description="Seconds without a heartbeat before a block's workers count as lost."),
    ] = 120

    @model_validator(mode="after")
    def _check(self) -> SlurmSettings:
        import re

        if not re.fullmatch(WALLTIME, self.walltime):
            raise ValueError(
                "walltime must be a SLURM time such as '02:00:00' or '1-12:00:00', "
                f"got {self.walltime!r}"
            )
        if self.init_blocks > self.max_blocks:
            raise ValueError(
                f"init_blocks ({self.init_blocks}) must not exceed max_blocks ({self.max_blocks})"
            )
        return self


def slurm_problems(table: Mapping[str, Any] | None) -> tuple[dict[str, Any], list[str]]:
    """Check a ``[slurm]`` table: the keys it sets (when valid) and its problems, one line each.

    Parameters
    ----------
    table : mapping or None
        The table as read from TOML (or given in Python).

    Returns
    -------
    tuple of (dict, list of str)
        The keys the table sets (empty when it has problems) and the problems.
    """
    if table is None or (isinstance(table, Mapping) and "partition" not in table):
        return {}, [
            (
                "executor 'slurm' needs a [slurm] table in the --config file with at least "
                'partition = "<name>" (and usually account, nodes_per_block, walltime, worker_init)'
            )
        ]
    if not isinstance(table, Mapping):
        return {}, [f"[slurm] must be a table (key = value lines under [slurm]), got {table!r}"]
    try:
        model = SlurmSettings(**table)
    except ValidationError as e:
        known = {"[slurm]": list(SlurmSettings.model_fields)}
        return {}, problems(e, raw=dict(table), known=known, table="[slurm]")
    return model.model_dump(exclude_unset=True), []


def slurm_settings(
    table: Mapping[str, Any] | None, *, source: str | Path | None = None
) -> dict[str, Any]:
    """Check a ``[slurm]`` table; return the keys it sets as arguments of ``slurm_config``.

    Parameters
    ----------
    table : mapping or None
        The table as read from TOML (or given in Python).
    source : str or Path, optional
        The config file, named in errors (``None``: the caller names it).

    Returns
    -------
    dict
        Only the keys the table sets (``slurm_config`` supplies the rest).

    Raises
    ------
    ConfigError
        No table, no ``partition``, an unknown key or a wrong value; the
        message names the file and the keys.
    """
    settings, lines = slurm_problems(table)
    if lines:
        raise join_problems(source, lines)
    return settings
