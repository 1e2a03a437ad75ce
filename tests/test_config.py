"""The configuration: frozen, picklable, looked up by the names learners know, validated."""

from __future__ import annotations

import dataclasses
import pickle
from pathlib import Path

import pytest

from grouputils.config import Config
from grouputils.errors import ConfigError


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return Config(dir_input=tmp_path / "in", dir_output=tmp_path / "out")


def test_config_is_frozen(config: Config) -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.z = 12  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.dir_output = Path("elsewhere")  # type: ignore[misc]
    assert config.z == 13


def test_config_survives_pickling_unchanged(config: Config) -> None:
    back = pickle.loads(pickle.dumps(config))
    assert back == config
    assert back.fingerprint() == config.fingerprint()
    assert back.get("dir_staged") == config.get("dir_staged")


def test_get_dir_staged_is_the_staged_folder_under_the_output_folder(
    config: Config, tmp_path: Path
) -> None:
    assert config.get("dir_staged") == tmp_path / "out" / "staged"


def test_get_filename_staging_summary_is_a_csv_in_the_output_folder(
    config: Config, tmp_path: Path
) -> None:
    path = config.get("filename_staging_summary")
    assert isinstance(path, Path)
    assert path.parent == tmp_path / "out"
    assert path.suffix == ".csv"


def test_get_knows_the_other_course_names(config: Config, tmp_path: Path) -> None:
    assert config.get("dir_input") == tmp_path / "in"
    assert config.get("dir_output") == tmp_path / "out"
    assert config.get("dir_geotiff") == tmp_path / "out" / "geotiff"
    assert config.get("dir_web_tiles") == tmp_path / "out" / "web_tiles"
    assert config.get("tms") == "WorldCRS84Quad"
    assert config.get("z") == 13
    assert config.get("z_range") == (0, 13)
    assert config.get("statistics") == ["number_IWP_per_pixel", "prop_pixel_covered_by_IWP"]


@pytest.mark.parametrize(
    "key", ["no_such_setting", "dir_stagedd", "", "_ALIASES", "__doc__", "replace", "get"]
)
def test_get_unknown_key_raises_key_error(config: Config, key: str) -> None:
    with pytest.raises(KeyError):
        config.get(key)


def test_unknown_tile_matrix_set_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="NoSuchQuad"):
        Config(dir_input=tmp_path, tms="NoSuchQuad")


@pytest.mark.parametrize("z", [-1, 24, 13.0, True, "13", None])
def test_bad_zoom_is_a_config_error(tmp_path: Path, z: object) -> None:
    with pytest.raises(ConfigError, match="z must be"):
        Config(dir_input=tmp_path, z=z)  # type: ignore[arg-type]


def test_zoom_below_the_tile_matrix_sets_first_level_is_a_config_error(tmp_path: Path) -> None:
    # UTM31WGS84Quad starts at zoom 1: zoom 0 has no tile matrix
    with pytest.raises(ConfigError, match="z must be"):
        Config(dir_input=tmp_path, tms="UTM31WGS84Quad", z=0)
    assert Config(dir_input=tmp_path, tms="UTM31WGS84Quad", z=1).z == 1


def test_any_fixed_width_morecantile_tms_is_accepted(tmp_path: Path) -> None:
    c = Config(dir_input=tmp_path, tms="WebMercatorQuad", z=15)
    assert (c.tms, c.z) == ("WebMercatorQuad", 15)


@pytest.mark.parametrize(
    "setting",
    [
        {"chunk_size": 0},
        {"chunk_size": 2.5},
        {"dedup_overlap": 0},
        {"dedup_overlap": 1.5},
        {"simplify_tolerance": -0.1},
        {"input_ext": "gpkg"},
        {"tile_size": 0},
        {"max_workers": 0},
    ],
)
def test_out_of_range_settings_are_config_errors(tmp_path: Path, setting: dict) -> None:
    with pytest.raises(ConfigError):
        Config(dir_input=tmp_path, **setting)


def test_replace_returns_a_changed_copy_and_leaves_the_original(config: Config) -> None:
    other = config.replace(z=12)
    assert other.z == 12 and config.z == 13
    assert other.fingerprint() != config.fingerprint()
    with pytest.raises(ConfigError):
        config.replace(z=-3)


def test_fingerprint_ignores_folders_but_not_settings(tmp_path: Path) -> None:
    a = Config(dir_input=tmp_path / "a", dir_output=tmp_path / "x")
    b = Config(dir_input=tmp_path / "b", dir_output=tmp_path / "y")
    assert a.fingerprint() == b.fingerprint()
    assert a.fingerprint() != a.replace(dedup_overlap=0.7).fingerprint()
    assert a.fingerprint("tms", "z") == a.replace(dedup_overlap=0.7).fingerprint("tms", "z")
