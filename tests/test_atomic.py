"""Atomic writes: a temporary sibling renamed into place; a killed writer's temporaries are removable."""

from __future__ import annotations

from pathlib import Path

from grouputils.core.atomic import remove_temporaries, temporary_name, write_text_atomic


def test_remove_temporaries_deletes_only_what_a_killed_writer_left(tmp_path: Path) -> None:
    tiles = tmp_path / "geotiff" / "WorldCRS84Quad" / "13" / "1420"
    tiles.mkdir(parents=True)
    finished = tiles / "909.tif"
    write_text_atomic(finished, "done")
    left = [temporary_name(tiles / "908.tif"), temporary_name(tiles / "907.tif")]
    for f in left:
        f.write_text("half")
    others = [tiles / ".hidden.tmp.notes", tiles / "910.tmp.tif"]  # not names temporary_name makes
    for f in others:
        f.write_text("keep")

    assert remove_temporaries(tmp_path / "geotiff") == 2
    assert not any(f.exists() for f in left)
    assert finished.read_text() == "done"
    assert all(f.exists() for f in others)
    assert remove_temporaries(tmp_path / "absent") == 0
