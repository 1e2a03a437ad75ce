"""The settings reference of the README, made from the models' field descriptions.

The descriptions in :mod:`grouputils.core.config` and :mod:`grouputils.core.config_slurm`
are the one documentation of the settings; this module renders them as the
Markdown tables between the ``<!-- settings:begin -->`` and
``<!-- settings:end -->`` markers of README.md. A test fails when the README
and the models disagree; ``python -m grouputils.settings_doc README.md``
rewrites the tables.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter
from pydantic.fields import FieldInfo

from grouputils.core.atomic import write_text_atomic
from grouputils.core.config import Config, SlurmSettings, Statistic

__all__ = ["BEGIN", "END", "settings_reference", "update_readme"]

BEGIN = "<!-- settings:begin (made by python -m grouputils.settings_doc README.md) -->"
END = "<!-- settings:end -->"

#: Config fields a file does not set: the folders come from the command line, ``extra`` is Python's.
_NOT_IN_FILES = ("dir_input", "dir_output", "extra")


def _type(prop: dict[str, Any]) -> str:
    """A JSON-schema property in words."""
    if "enum" in prop:
        return " or ".join(f"`{v!r}`".replace("'", '"') for v in prop["enum"])
    if "const" in prop:
        return f'`"{prop["const"]}"`'
    if "anyOf" in prop:
        kinds = [_type(p) for p in prop["anyOf"] if p.get("type") != "null"]
        optional = any(p.get("type") == "null" for p in prop["anyOf"])
        return " or ".join(kinds) + (" (optional)" if optional else "")
    kind = prop.get("type")
    if kind == "array":
        items = prop.get("prefixItems")
        if items:
            return f"[{', '.join(_type(p) for p in items)}]"
        inner = prop.get("items", {})
        if "$ref" in inner:
            return "`[[statistics]]` tables"
        return f"list of {_type(inner)}s"
    return {
        "integer": "integer",
        "number": "number",
        "string": "string",
        "boolean": "true/false",
    }.get(str(kind), str(kind))


def _default(info: FieldInfo) -> str:
    value = info.default
    if value is None:
        return "not set"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, (str, Path)):
        return f'`"{value}"`' if str(value) else '`""`'
    if isinstance(value, tuple) and value and all(isinstance(v, Statistic) for v in value):
        return ", ".join(f"`{v.name}`" for v in value)
    if isinstance(value, tuple):
        return f"`[{', '.join(repr(v) for v in value)}]`"
    if value is dataclasses.MISSING or repr(value) == "PydanticUndefined":
        return "required"
    return f"`{value!r}`"


def _table(fields: dict[str, FieldInfo], schema: dict[str, Any], skip: tuple[str, ...] = ()) -> str:
    rows = ["| key | type | default | meaning |", "|---|---|---|---|"]
    for name, info in fields.items():
        if name in skip:
            continue
        prop = schema["properties"][name]
        text = (info.description or "").replace("|", "\\|")
        rows.append(f"| `{name}` | {_type(prop)} | {_default(info)} | {text} |")
    return "\n".join(rows)


def settings_reference() -> str:
    """The Markdown tables of every setting a config file may hold.

    Returns
    -------
    str
        Three tables: top-level keys, ``[[statistics]]`` tables, the ``[slurm]`` table.
    """
    config_fields = Config.__pydantic_fields__  # type: ignore[attr-defined]
    stat_fields = Statistic.__pydantic_fields__  # type: ignore[attr-defined]
    parts = [
        "Top-level keys (the folders are `INPUT_DIR` and `OUTPUT_DIR` of the command line):",
        "",
        _table(config_fields, TypeAdapter(Config).json_schema(), _NOT_IN_FILES),
        "",
        "Each `[[statistics]]` table (one raster band; the tables replace the default two):",
        "",
        _table(stat_fields, TypeAdapter(Statistic).json_schema()),
        "",
        (
            "The `[slurm]` table (the arguments of `grouputils.slurm_config`; used with "
            "`--executor slurm`):"
        ),
        "",
        _table(SlurmSettings.model_fields, SlurmSettings.model_json_schema()),
    ]
    return "\n".join(parts)


def update_readme(path: str | Path) -> bool:
    """Rewrite the settings reference between the markers of ``path``.

    Parameters
    ----------
    path : str or Path
        README.md, holding the two marker lines.

    Returns
    -------
    bool
        Whether the file changed.
    """
    path = Path(path)
    text = path.read_text()
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    new = text[:start] + "\n" + settings_reference() + "\n" + text[end:]
    if new == text:
        return False
    write_text_atomic(path, new)
    return True


if __name__ == "__main__":  # pragma: no cover - a maintainer's command
    update_readme(sys.argv[1] if len(sys.argv) > 1 else "README.md")
