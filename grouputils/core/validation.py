"""Turn pydantic validation errors of the settings into one :class:`ConfigError`.

The settings models (:mod:`grouputils.core.config`) are validated by pydantic;
pydantic's errors are precise but read like a traceback. This module words
them for a learner: one line per problem, naming the TOML key (and the
``[[statistics]]`` table or ``[slurm]`` table it sits in), the value found,
and, for a misspelt key, the key that was probably meant. The message starts
with the source: the config file's path, or the class name for settings made
in Python.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from grouputils.core.errors import ConfigError

__all__ = [
    "config_error",
    "document_fields",
    "friendly_errors",
    "join_problems",
    "problems",
    "unknown_keys_message",
]

_UNKNOWN = ("unexpected_keyword_argument", "extra_forbidden")
_MISSING = ("missing_argument", "missing", "missing_keyword_only_argument")
_NUMBER = (
    "float_type",
    "float_parsing",
    "int_type",
    "int_parsing",
    "int_from_float",
    "finite_number",
)


def unknown_keys_message(where: str, unknown: Iterable[str], known: Iterable[str]) -> str:
    """``"<where> has unknown settings [...]"`` with close matches and the known keys.

    Parameters
    ----------
    where : str
        The table, e.g. ``"[slurm]"``; empty for the top level.
    unknown, known : iterable of str
        The keys found that are not settings, and the settings.

    Returns
    -------
    str
    """
    unknown = sorted(unknown)
    known = sorted(known)
    hints = []
    for key in unknown:
        close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
        if close:
            hints.append(f"{close[0]!r}" if len(unknown) == 1 else f"{close[0]!r} for {key!r}")
    head = f"{where} has unknown settings {unknown}" if where else f"unknown settings {unknown}"
    hint = f" (did you mean {', '.join(hints)}?)" if hints else ""
    return f"{head}{hint}; known settings are {known}"


def _key(loc: Sequence[Any]) -> str:
    """``('value_range', 1)`` -> ``value_range[1]``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _statistic_label(raw: Mapping[str, Any], index: int) -> str:
    stats = raw.get("statistics")
    name = None
    if isinstance(stats, (list, tuple)) and index < len(stats):
        item = stats[index]
        name = item.get("name") if isinstance(item, Mapping) else getattr(item, "name", None)
    return f"[[statistics]] number {index + 1}" + (f" ({name!r})" if isinstance(name, str) else "")


def _split(loc: Sequence[Any], raw: Mapping[str, Any], table: str) -> tuple[str, tuple[Any, ...]]:
    """The table a location lies in (``''`` for the top level) and the key inside it."""
    loc = tuple(loc)
    if table:
        return table, loc
    if len(loc) >= 2 and loc[0] == "statistics" and isinstance(loc[1], int):
        return _statistic_label(raw, loc[1]), loc[2:]
    return "", loc


def _value(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _phrase(err: Mapping[str, Any], key: str) -> str:
    """One problem in words, with the key first."""
    kind = err["type"]
    msg = str(err["msg"])
    value = err.get("input")
    if kind == "value_error":  # our own validators: "must be ...", phrased to follow the key
        text = msg.removeprefix("Value error, ")
        return f"{key} {text}" if key else text
    if kind in _MISSING:
        return f"{key} is required"
    if kind == "tuple_type" and key == "statistics":
        return f"statistics must be a list of [[statistics]] tables, got {_value(value)}"
    text = msg.replace("Input should be", "must be", 1).replace("String should", "must", 1)
    text = text.replace("Value should", "must", 1).replace("Tuple should", "must", 1)
    if not text.startswith(("must", "is ")):
        text = f"is invalid: {text}"
    line = f"{key} {text}, got {_value(value)}" if key else f"{text}, got {_value(value)}"
    if kind in _NUMBER and isinstance(value, str):
        line += " (a string: write the number without quotes)"
    return line


def problems(
    exc: ValidationError,
    *,
    raw: Mapping[str, Any] | None = None,
    known: Mapping[str, Iterable[str]] | None = None,
    table: str = "",
) -> list[str]:
    """Every problem pydantic found, one line each, unknown keys first.

    Parameters
    ----------
    exc : pydantic.ValidationError
        The errors.
    raw : mapping, optional
        The settings as given (to name ``[[statistics]]`` tables by their name).
    known : mapping, optional
        The settings each table takes (``''`` for the top level,
        ``'[[statistics]]'`` for statistics), for unknown-key messages.
    table : str
        The table all of ``exc`` lies in (``'[slurm]'``), or ``''``.

    Returns
    -------
    list of str
    """
    raw = raw or {}
    known = known or {}
    unknown: dict[str, list[str]] = {}
    lines: list[str] = []
    for err in exc.errors(include_url=False):
        where, loc = _split(err["loc"], raw, table)
        if err["type"] in _UNKNOWN and len(loc) == 1:
            unknown.setdefault(where, []).append(str(loc[0]))
            continue
        line = _phrase(err, _key(loc))
        lines.append(f"{where}: {line}" if where else line)
    for where, keys in reversed(unknown.items()):
        family = "[[statistics]]" if where.startswith("[[statistics]]") else where
        lines.insert(0, unknown_keys_message(where, keys, known.get(family, ())))
    return lines


def join_problems(source: str | Path | None, lines: Sequence[str]) -> ConfigError:
    """One :class:`ConfigError`: ``"<source>: <problem>"``, or a list when there are several.

    Parameters
    ----------
    source : str or Path or None
        The config file or class; ``None`` leaves the message without a source.
    lines : sequence of str
        The problems.

    Returns
    -------
    ConfigError
    """
    prefix = f"{source}: " if source else ""
    if len(lines) == 1:
        return ConfigError(f"{prefix}{lines[0]}")
    listed = "".join(f"\n  - {p}" for p in lines)
    return ConfigError(f"{prefix}{len(lines)} settings are invalid:{listed}")


def config_error(
    exc: ValidationError,
    *,
    source: str | Path | None,
    raw: Mapping[str, Any] | None = None,
    known: Mapping[str, Iterable[str]] | None = None,
    table: str = "",
) -> ConfigError:
    """One :class:`ConfigError` listing every problem pydantic found (see :func:`problems`).

    Parameters
    ----------
    exc : pydantic.ValidationError
        The errors.
    source : str or Path or None
        The config file, or the name of the class built in Python; ``None``
        leaves the message without a source (the caller adds one).
    raw, known, table
        As for :func:`problems`.

    Returns
    -------
    ConfigError
        To be raised ``from None``: the message says everything.
    """
    return join_problems(source, problems(exc, raw=raw, known=known, table=table))


def friendly_errors(cls: type, nested: Mapping[str, type] | None = None) -> type:
    """Make ``cls(...)`` raise :class:`ConfigError` (naming each key), not pydantic's error.

    Parameters
    ----------
    cls : type
        A pydantic dataclass; its ``__init__`` is wrapped in place.
    nested : mapping, optional
        Tables inside it (``{'[[statistics]]': Statistic}``), for unknown-key messages.

    Returns
    -------
    type
        ``cls``.
    """
    init: Callable[..., None] = vars(cls)["__init__"]  # the dataclass's own generated one
    names = [f.name for f in dataclasses.fields(cls)]
    known = {
        "": names,
        **{k: [f.name for f in dataclasses.fields(t)] for k, t in (nested or {}).items()},
    }

    @functools.wraps(init)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        try:
            init(self, *args, **kwargs)
        except ValidationError as e:
            # positional arguments may be fewer than the fields (the rest have defaults)
            raw = dict(zip(names, args, strict=False)) | kwargs
            source = cls.__name__
            if "name" in names and isinstance(raw.get("name"), str):
                source = f"{cls.__name__} {raw['name']!r}"
            raise config_error(e, source=source, raw=raw, known=known) from None

    cls.__init__ = __init__  # type: ignore[misc]
    return cls


def document_fields(cls: type) -> type:
    """Append a numpydoc ``Parameters`` section made from a model's field descriptions."""
    lines = ["", "    Parameters", "    ----------"]
    for name, info in cls.__pydantic_fields__.items():  # type: ignore[attr-defined]
        if info.repr is False:
            continue
        lines.append(f"    {name}")
        lines.append(f"        {info.description}")
    cls.__doc__ = (cls.__doc__ or "").rstrip() + "\n" + "\n".join(lines) + "\n"
    return cls
