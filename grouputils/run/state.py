"""The run's state: one SQLite file holding a row per input file and per output tile.

:class:`RunState` is what :func:`grouputils.run.pipeline.run_pipeline` resumes
from. It is written by the main process only, in one transaction per batch of
results, in WAL mode, so a run killed at any moment leaves the state as of the
last finished batch, and readers never see half a batch.

Tables
------
``inputs``
    One row per staged input file: fingerprint, polygons read, repaired and
    dropped, seconds.
``tiles``
    One row per output tile and kind (``'staged'``, ``'geotiff'``, ``'web'``):
    the fingerprint of what it was made from, the files written (path relative
    to the output folder, size, modification time in ns), a JSON ``info``
    (counts, covered area, band statistics) and the task's seconds.
``dirty``
    Tiles that must be looked at on the next pass of their step: a row is
    added in the same transaction that records (or removes) what the tile is
    made from, and removed when the tile is up to date again. A rerun
    therefore looks only at what changed (plus tiles whose files were edited
    or damaged, found by comparing sizes and modification times).
``meta``
    Key/value pairs: settings fingerprints, the generation counter (bumped
    whenever an output row changes) and the generation the catalogue and map
    were last written at.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from grouputils.core.layout import PRIVATE_DIR, STATE_FILE

__all__ = ["RunState", "TileRow", "Key", "file_entry", "STATE_DIR", "STATE_FILE"]

#: Folder of the run's private files inside the output folder (never published),
#: and the state's file name there (both named by :mod:`grouputils.core.layout`).
STATE_DIR = PRIVATE_DIR

#: ``(z, x, y)`` of a tile.
Key = tuple[int, int, int]

#: SQLite page cache of the main process, in KiB.
_CACHE_KB = 64 * 1024

#: Most values bound in one ``IN (...)`` list (well under SQLite's variable limit).
_IN_CHUNK = 500

_SCHEMA = """
CREATE TABLE IF NOT EXISTS inputs (
    source TEXT PRIMARY KEY, fingerprint TEXT NOT NULL,
    read INTEGER NOT NULL, repaired INTEGER NOT NULL, dropped INTEGER NOT NULL, seconds REAL
);
CREATE TABLE IF NOT EXISTS tiles (
    kind TEXT NOT NULL, z INTEGER NOT NULL, x INTEGER NOT NULL, y INTEGER NOT NULL,
    fingerprint TEXT NOT NULL, files TEXT NOT NULL, info TEXT NOT NULL, seconds REAL,
    PRIMARY KEY (kind, z, x, y)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS dirty (
    kind TEXT NOT NULL, z INTEGER NOT NULL, x INTEGER NOT NULL, y INTEGER NOT NULL,
    PRIMARY KEY (kind, z, x, y)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


@dataclasses.dataclass(frozen=True)
class TileRow:
    """One output tile as recorded.

    Attributes
    ----------
    fingerprint : str
        Of what the tile was made from (inputs and settings).
    files : list of [str, int, int]
        ``[path relative to the output folder, size, mtime_ns]`` per file written.
    info : dict
        Counts, covered area and band statistics (step-specific).
    seconds : float
        Time of the task that made it.
    """

    fingerprint: str
    files: list[list[Any]]
    info: dict[str, Any] = dataclasses.field(default_factory=dict)
    seconds: float = 0.0


def file_entry(root: Path, path: Path) -> list[Any]:
    """``[path relative to root, size, mtime_ns]`` of a file just written."""
    st = os.stat(path)
    return [Path(path).relative_to(root).as_posix(), st.st_size, st.st_mtime_ns]


class RunState:
    """The SQLite state of one output folder (see the module docstring).

    Parameters
    ----------
    path : Path
        The database file; its folder is created.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.new = not self.path.exists()
        self.db = sqlite3.connect(self.path, isolation_level=None)  # explicit transactions only
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        # a page cache that holds the hot part of a million-tile state (default: 2 MB)
        self.db.execute(f"PRAGMA cache_size=-{_CACHE_KB}")
        self.db.executescript(_SCHEMA)
        self._in_transaction = False
        self._changed = False

    def close(self) -> None:
        """Checkpoint and close (the WAL file is folded back into the database)."""
        self.db.close()

    def __enter__(self) -> RunState:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------ transactions
    def transaction(self) -> _Transaction:
        """A context manager: ``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` on error)."""
        return _Transaction(self)

    # -------------------------------------------------------------------- meta
    def get_meta(self, key: str, default: str | None = None) -> str | None:
        """The value stored under ``key``, or ``default``."""
        row = self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return default if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        """Store ``value`` under ``key`` (inside or outside a transaction)."""
        self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    @property
    def generation(self) -> int:
        """Counter bumped by every change of an output row."""
        return int(self.get_meta("generation", "0") or 0)

    @staticmethod
    def _where(kind: str, z: int | None) -> tuple[str, tuple[str | int, ...]]:
        """``WHERE`` clause and arguments selecting the tiles of ``kind`` (of zoom ``z``)."""
        if z is None:
            return "WHERE kind=?", (kind,)
        return "WHERE kind=? AND z=?", (kind, z)

    def _bump(self) -> None:
        if self._in_transaction:  # once per transaction, at its commit
            self._changed = True
            return
        self.db.execute(
            "INSERT INTO meta VALUES ('generation', '1') "
            "ON CONFLICT(key) DO UPDATE SET value = CAST(value AS INTEGER) + 1"
        )

    # ------------------------------------------------------------------ inputs
    def put_input(
        self, source: str, fingerprint: str, counts: dict[str, int], seconds: float = 0.0
    ) -> None:
        """Record one staged input file."""
        self.db.execute(
            "INSERT OR REPLACE INTO inputs VALUES (?, ?, ?, ?, ?, ?)",
            (
                source,
                fingerprint,
                counts.get("read", 0),
                counts.get("repaired", 0),
                counts.get("dropped", 0),
                seconds,
            ),
        )

    def drop_inputs(self, keep: Iterable[str]) -> None:
        """Forget every input not in ``keep``."""
        keep = set(keep)
        gone = [s for (s,) in self.db.execute("SELECT source FROM inputs") if s not in keep]
        self.db.executemany("DELETE FROM inputs WHERE source=?", [(s,) for s in gone])

    def input_totals(self) -> dict[str, int]:
        """``files``, ``read``, ``repaired``, ``dropped`` summed over the inputs."""
        n, r, rep, d = self.db.execute(
            "SELECT COUNT(*), TOTAL(read), TOTAL(repaired), TOTAL(dropped) FROM inputs"
        ).fetchone()
        return {"files": int(n), "read": int(r), "repaired": int(rep), "dropped": int(d)}

    # ------------------------------------------------------------------- tiles
    def rows(self, kind: str, z: int | None = None) -> dict[Key, TileRow]:
        """Every recorded tile of ``kind`` (of zoom ``z``)."""
        where, args = self._where(kind, z)
        sql = f"SELECT z, x, y, fingerprint, files, info, seconds FROM tiles {where}"
        return {
            (z_, x, y): TileRow(fp, json.loads(files), json.loads(info), seconds or 0.0)
            for z_, x, y, fp, files, info, seconds in self.db.execute(sql, args)
        }

    def info_columns(
        self, kind: str, fields: Sequence[str], chunk: int = 100_000
    ) -> Iterator[list[tuple[Any, ...]]]:
        """``(z, x, y, first file's path, info[field] for each field)`` of every tile of ``kind``.

        Sorted by z (highest first), x, y, in lists of up to ``chunk`` rows;
        a field the tile's ``info`` lacks (or holds as null) is ``None``. The
        JSON is read by SQLite: no row is turned into Python objects whole.
        """
        cols = ", ".join(["json_extract(info, ?)"] * len(fields))
        cur = self.db.execute(
            f"SELECT z, x, y, json_extract(files, '$[0][0]'){', ' if cols else ''}{cols} "
            "FROM tiles WHERE kind=? ORDER BY z DESC, x, y",
            (*(_json_key(f) for f in fields), kind),
        )
        while rows := cur.fetchmany(chunk):
            yield rows

    def all_fingerprints(self, kind: str) -> dict[Key, str]:
        """Recorded fingerprint of every tile of ``kind``."""
        return {
            (z, x, y): fp
            for z, x, y, fp in self.db.execute(
                "SELECT z, x, y, fingerprint FROM tiles WHERE kind=?", (kind,)
            )
        }

    def fingerprints(self, kind: str, keys: Iterable[Key]) -> dict[Key, str]:
        """Recorded fingerprints of the given tiles (absent ones left out).

        One query per column of tiles (same ``z`` and ``x``) and up to
        ``_IN_CHUNK`` rows, each a set of primary-key look-ups: a rerun pays
        for the tiles it asks about, not for the whole table.
        """
        columns: dict[tuple[int, int], list[int]] = {}
        for z, x, y in keys:
            columns.setdefault((z, x), []).append(y)
        out: dict[Key, str] = {}
        for (z, x), ys in columns.items():
            for chunk in iter_chunks(ys, _IN_CHUNK):
                marks = ",".join("?" * len(chunk))
                for y, fp in self.db.execute(
                    "SELECT y, fingerprint FROM tiles WHERE kind=? AND z=? AND x=? "
                    f"AND y IN ({marks})",
                    (kind, z, x, *chunk),
                ):
                    out[(z, x, y)] = fp
        return out

    def keys(self, kind: str, z: int | None = None) -> list[Key]:
        """Recorded tiles of ``kind`` (of zoom ``z``), sorted by z, x, y."""
        where, args = self._where(kind, z)
        rows = self.db.execute(f"SELECT z, x, y FROM tiles {where} ORDER BY z, x, y", args)
        return [(int(z), int(x), int(y)) for z, x, y in rows]

    def count(self, kind: str, z: int | None = None) -> int:
        """Number of recorded tiles of ``kind`` (of zoom ``z``)."""
        where, args = self._where(kind, z)
        return int(self.db.execute(f"SELECT COUNT(*) FROM tiles {where}", args).fetchone()[0])

    def zooms(self, kind: str) -> dict[int, int]:
        """Tiles of ``kind`` per zoom level."""
        return {
            z: n
            for z, n in self.db.execute(
                "SELECT z, COUNT(*) FROM tiles WHERE kind=? GROUP BY z", (kind,)
            )
        }

    def put(self, kind: str, key: Key, row: TileRow) -> None:
        """Record (or replace) one tile."""
        self.put_many(kind, [(key, row)])

    def put_many(self, kind: str, rows: Iterable[tuple[Key, TileRow]]) -> None:
        """Record (or replace) many tiles."""
        self.db.executemany(
            "INSERT OR REPLACE INTO tiles VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                (kind, *k, r.fingerprint, json.dumps(r.files), json.dumps(r.info), r.seconds)
                for k, r in rows
            ),
        )
        self._bump()

    def delete(self, kind: str, key: Key) -> None:
        """Forget one tile."""
        self.db.execute("DELETE FROM tiles WHERE kind=? AND z=? AND x=? AND y=?", (kind, *key))
        self._bump()

    def info_total(self, kind: str, field: str, z: int | None = None) -> float:
        """Sum of ``info[field]`` over the tiles of ``kind`` (of zoom ``z``)."""
        where, args = self._where(kind, z)
        sql = f"SELECT TOTAL(json_extract(info, ?)) FROM tiles {where}"
        return float(self.db.execute(sql, (_json_key(field), *args)).fetchone()[0])

    def info_max_by_zoom(self, kind: str, fields: Sequence[str]) -> dict[str, dict[int, float]]:
        """Largest ``info[field]`` of the tiles of ``kind`` per zoom, for each field.

        One query over the rows of ``kind``; a zoom where no tile holds the
        field (or all hold null) is left out of that field's dict.
        """
        if not fields:
            return {}
        cols = ", ".join(["MAX(json_extract(info, ?))"] * len(fields))
        sql = f"SELECT z, {cols} FROM tiles WHERE kind=? GROUP BY z"
        out: dict[str, dict[int, float]] = {f: {} for f in fields}
        for z, *maxima in self.db.execute(sql, (*(_json_key(f) for f in fields), kind)):
            for field, m in zip(fields, maxima, strict=True):
                if m is not None:
                    out[field][int(z)] = float(m)
        return out

    # ------------------------------------------------------------------- dirty
    def mark(self, kind: str, keys: Iterable[Key]) -> None:
        """Add tiles to look at on the next pass of the ``kind`` step."""
        self.db.executemany(
            "INSERT OR IGNORE INTO dirty VALUES (?, ?, ?, ?)", ((kind, *k) for k in keys)
        )

    def mark_all(self, kind: str, source_kind: str) -> None:
        """Mark every recorded tile of ``source_kind`` as dirty for ``kind`` (a settings change)."""
        self.db.execute(
            "INSERT OR IGNORE INTO dirty SELECT ?, z, x, y FROM tiles WHERE kind=?",
            (kind, source_kind),
        )

    def clean(self, kind: str, key: Key) -> None:
        """The tile is up to date for the ``kind`` step."""
        self.clean_many(kind, [key])

    def clean_many(self, kind: str, keys: Iterable[Key]) -> None:
        """The tiles are up to date for the ``kind`` step."""
        self.db.executemany(
            "DELETE FROM dirty WHERE kind=? AND z=? AND x=? AND y=?", ((kind, *k) for k in keys)
        )

    def dirty(self, kind: str, z: int | None = None) -> list[Key]:
        """Tiles marked for the ``kind`` step (of zoom ``z``), sorted by z, x, y."""
        where, args = self._where(kind, z)
        rows = self.db.execute(f"SELECT z, x, y FROM dirty {where} ORDER BY z, x, y", args)
        return [(int(z), int(x), int(y)) for z, x, y in rows]

    # ---------------------------------------------------------------- checking
    def damaged(self, kind: str, root: Path) -> list[Key]:
        """Tiles of ``kind`` whose recorded files are missing or were changed since.

        A file counts as changed when its size or modification time differs
        from the recorded one (edited, truncated or replaced by hand).
        """
        out = []
        for z, x, y, files in self.db.execute(
            "SELECT z, x, y, files FROM tiles WHERE kind=?", (kind,)
        ):
            if not _intact(root, json.loads(files)):
                out.append((z, x, y))
        return out


def _json_key(field: str) -> str:
    """SQLite JSON path of a top-level key (quoted: names may hold ``-``)."""
    return '$."' + field.replace('"', '\\"') + '"'


def _intact(root: Path, files: list[list[Any]]) -> bool:
    for rel, size, mtime_ns in files:
        try:
            st = os.stat(root / rel)
        except OSError:
            return False
        if st.st_size != size or st.st_mtime_ns != mtime_ns:
            return False
    return True


class _Transaction:
    def __init__(self, state: RunState) -> None:
        self.state = state

    def __enter__(self) -> sqlite3.Connection:
        self.state.db.execute("BEGIN IMMEDIATE")
        self.state._in_transaction, self.state._changed = True, False
        return self.state.db

    def __exit__(self, exc_type: object, *exc: object) -> None:
        st = self.state
        st._in_transaction = False
        if exc_type is None:
            if st._changed:
                st._bump()
            st.db.execute("COMMIT")
        else:
            st.db.execute("ROLLBACK")


def iter_chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    """``items`` in consecutive slices of ``size``."""
    for i in range(0, len(items), size):
        yield items[i : i + size]
