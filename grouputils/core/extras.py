"""Optional dependency stacks (pip extras) and the error naming the one to install.

The core of grouputils stages, rasterizes and publishes tiles with the
packages in ``[project] dependencies``. Heavier stacks are extras:

``mosaic``
    xarray, rioxarray and dask for :mod:`grouputils.outputs.mosaic`.
``notebook``
    contextily (basemaps under plots) and ipyleaflet (maps in notebooks).
``course``
    both of the above plus JupyterLab and nbgrader.
"""

from __future__ import annotations

__all__ = ["EXTRAS", "MissingExtraError", "missing_extra"]

#: Extra -> the modules it provides.
EXTRAS: dict[str, tuple[str, ...]] = {
    "mosaic": ("xarray", "rioxarray", "dask"),
    "notebook": ("contextily", "ipyleaflet"),
}


class MissingExtraError(ImportError):
    """A module of an optional extra is not installed."""


def missing_extra(extra: str, error: ImportError) -> MissingExtraError:
    """The error to raise when an import of an optional extra failed.

    Use it as ``except ImportError as e: raise missing_extra("mosaic", e) from e``.

    Parameters
    ----------
    extra : str
        Name of the pip extra that provides the module (a key of :data:`EXTRAS`).
    error : ImportError
        The failed import.

    Returns
    -------
    MissingExtraError
        Its message names the missing module and says
        ``pip install 'grouputils[<extra>]'``.
    """
    if extra not in EXTRAS:
        raise ValueError(f"unknown extra {extra!r}; known: {sorted(EXTRAS)}")
    missing = error.name or "a module"
    return MissingExtraError(
        f"{missing} is not installed; it comes with the {extra!r} extra of grouputils: "
        f"pip install 'grouputils[{extra}]' (or conda env create -f environment.yml)",
        name=missing,
    )
