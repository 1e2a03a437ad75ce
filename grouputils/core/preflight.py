"""Checks of the settings against the inputs, made before any work.

:class:`~grouputils.core.config.Config` checks every setting on its own; what it
cannot know is the inputs. A statistic with ``weight_by = 'attribute'`` reads
an input column, and a misspelt or non-numeric column would otherwise be
found only when rasterizing, after all the staging. :func:`check_statistic_columns`
reads the column list of every input (its header only, no features) and
refuses such a setting up front.

Inputs that cannot be opened are left to staging, which reports them as
failed items without stopping the run.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyogrio

from grouputils.core.config import Config
from grouputils.core.errors import ConfigError

__all__ = ["check_statistic_columns", "input_columns"]


def input_columns(path: Path, wanted_layer: str) -> dict[str, np.dtype] | None:
    """The attribute columns (name to dtype) of the layer staging reads, or ``None`` if unreadable.

    Parameters
    ----------
    path : Path
        An input file.
    wanted_layer : str
        ``config.input_layer``: the layer read when the file has several.

    Returns
    -------
    dict or None
        ``None`` when the file or its layer cannot be read (staging reports it).
    """
    try:
        layers = pyogrio.list_layers(path)
        names = [str(n) for n in layers[:, 0]] if len(layers) else []
        if len(names) == 1:
            layer = names[0]
        elif wanted_layer in names:
            layer = wanted_layer
        else:
            return None
        info = pyogrio.read_info(path, layer=layer)
    except Exception:  # noqa: BLE001 - pyogrio raises DataSourceError and others; staging words them
        return None
    return {str(n): np.dtype(t) for n, t in zip(info["fields"], info["dtypes"], strict=True)}


def _files(paths: Sequence[Path], root: Path) -> str:
    shown = [str(p.relative_to(root)) if p.is_relative_to(root) else str(p) for p in paths[:3]]
    more = f" and {len(paths) - 3} more" if len(paths) > 3 else ""
    return ", ".join(shown) + more


def check_statistic_columns(
    config: Config, inputs: Sequence[Path], *, source: str | Path | None = None
) -> None:
    """Refuse attribute statistics whose column some input lacks or holds as non-numbers.

    Parameters
    ----------
    config : Config
        The run's settings.
    inputs : sequence of Path
        The input files (``check_inputs(config)``).
    source : str or Path, optional
        The config file the statistics came from, named in the error.

    Raises
    ------
    ConfigError
        Naming the statistic, its ``attribute``, the inputs at fault and the
        numeric columns the inputs do have.
    """
    stats = [s for s in config.statistics if s.weight_by == "attribute"]
    if not stats or not inputs:
        return
    columns = {p: input_columns(p, config.input_layer) for p in inputs}
    readable = {p: c for p, c in columns.items() if c is not None}
    if not readable:
        return
    numeric = sorted(
        set.intersection(*({n for n, t in c.items() if t.kind in "iuf"} for c in readable.values()))
    )
    prefix = f"{source}: " if source else ""
    for s in stats:
        where = f"[[statistics]] {s.name!r}: attribute = {s.attribute!r}"
        lacking = [p for p, c in readable.items() if s.attribute not in c]
        if lacking:
            close = difflib.get_close_matches(str(s.attribute), numeric, n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(
                f"{prefix}{where} is not a column of {len(lacking)} of {len(readable)} input files "
                f"({_files(lacking, config.dir_input)}){hint}; "
                f"numeric columns of every input: {numeric}"
            )
        wrong = [p for p, c in readable.items() if c[str(s.attribute)].kind not in "iufb"]
        if wrong:
            kind = readable[wrong[0]][str(s.attribute)]
            raise ConfigError(
                f"{prefix}{where} is not numeric ({kind}) in {_files(wrong, config.dir_input)}; "
                f"numeric columns of every input: {numeric}"
            )
