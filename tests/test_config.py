"""The configuration: frozen, picklable, looked up by the names learners know, validated."""

from __future__ import annotations

import dataclasses
import pickle
from pathlib import Path

import pytest

from grouputils.core.config import Config
from grouputils.core.errors import ConfigError


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


# ------------------------------------------------------------ typed settings (pydantic models)
def test_every_setting_has_a_description_and_unknown_keys_are_forbidden_in_the_schema() -> None:
    from pydantic import TypeAdapter

    from grouputils.core.config import SlurmSettings, Statistic

    schemas = [
        TypeAdapter(Config).json_schema(),
        TypeAdapter(Statistic).json_schema(),
        SlurmSettings.model_json_schema(),
    ]
    for schema in schemas:
        assert schema["additionalProperties"] is False
        for name, prop in schema["properties"].items():
            assert prop.get("description"), f"{schema['title']}.{name} has no description"
    assert schemas[1]["properties"]["name"]["pattern"] == r"^[A-Za-z0-9_-]{1,64}$"


@pytest.mark.parametrize(
    ("setting", "key"),
    [
        ({"simplify_tolerance": "0.1"}, "simplify_tolerance"),
        ({"dedup_overlap": "0.5"}, "dedup_overlap"),
        ({"tile_size": "256"}, "tile_size"),
        ({"chunk_size": 1.5}, "chunk_size"),
        ({"max_workers": True}, "max_workers"),
        ({"default_crs": 3413}, "default_crs"),
        ({"input_layer": ["iwp"]}, "input_layer"),
    ],
)
def test_a_value_of_the_wrong_type_is_a_config_error_naming_the_key(
    tmp_path: Path, setting: dict, key: str
) -> None:
    with pytest.raises(ConfigError, match=f"^Config: {key} must be") as e:
        Config(dir_input=tmp_path, **setting)
    assert repr(next(iter(setting.values()))) in str(e.value)  # the value found is shown


def test_a_number_written_as_a_string_says_to_drop_the_quotes(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="without quotes"):
        Config(dir_input=tmp_path, simplify_tolerance="0.1")


@pytest.mark.parametrize(
    "setting",
    [
        {"simplify_tolerance": float("nan")},
        {"simplify_tolerance": float("inf")},
        {"dedup_overlap": float("nan")},
    ],
)
def test_nan_and_infinity_are_refused_not_silently_used(tmp_path: Path, setting: dict) -> None:
    with pytest.raises(ConfigError, match="finite number"):
        Config(dir_input=tmp_path, **setting)


def test_a_misspelt_setting_is_a_config_error_suggesting_the_right_one(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError,
        match=r"unknown settings \['simplify_tolerence'\] \(did you mean 'simplify_tolerance'\?\)",
    ):
        Config(dir_input=tmp_path, simplify_tolerence=0.5)


def test_every_problem_is_listed_in_one_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as e:
        Config(dir_input=tmp_path, simplify_tolerance=float("nan"), tile_size=0, dedup_overlap=2.0)
    message = str(e.value)
    assert message.startswith("Config: 3 settings are invalid:")
    for key in ("simplify_tolerance", "tile_size", "dedup_overlap"):
        assert f"- {key} must" in message


def test_replace_checks_the_new_values(config: Config) -> None:
    with pytest.raises(ConfigError, match="simplify_tolerance"):
        config.replace(simplify_tolerance=float("nan"))
    with pytest.raises(ConfigError, match="unknown settings"):
        config.replace(no_such_setting=1)


def test_an_unknown_default_crs_is_refused_before_any_input_needs_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="default_crs is not a CRS"):
        Config(dir_input=tmp_path, default_crs="EPSG:999999")
    assert Config(dir_input=tmp_path, default_crs="EPSG:32606").default_crs == "EPSG:32606"


def test_whole_numbers_are_accepted_where_decimals_belong(tmp_path: Path) -> None:
    c = Config(dir_input=tmp_path, simplify_tolerance=0, dedup_overlap=1)
    assert (c.simplify_tolerance, c.dedup_overlap) == (0.0, 1.0)
    assert isinstance(c.simplify_tolerance, float)


def test_folders_may_be_given_as_strings_and_are_expanded(tmp_path: Path) -> None:
    c = Config(dir_input=str(tmp_path), dir_output="~/out")
    assert c.dir_input == tmp_path
    assert c.dir_output == Path("~/out").expanduser()


# ---------------------------------------------------------------------------- statistics
@pytest.mark.parametrize(
    "name",
    [
        "..",
        ".",
        "",
        "a/b",
        "a\\b",
        "web tiles",
        "<img src=x onerror=alert(1)>",
        "ü",
        "a" * 65,
        "x\n",
        "../../etc",
    ],
)
def test_a_statistic_name_that_is_not_a_plain_folder_name_is_refused(name: str) -> None:
    from grouputils.core.config import Statistic

    with pytest.raises(ConfigError, match="letters, digits, '_' or '-'"):
        Statistic(name=name, weight_by="count")


@pytest.mark.parametrize("name", ["number_IWP_per_pixel", "mean-area", "A1", "a" * 64])
def test_plain_statistic_names_are_accepted(name: str) -> None:
    from grouputils.core.config import Statistic

    assert Statistic(name=name, weight_by="count").name == name


def test_a_statistic_name_is_checked_inside_a_config_too(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"\[\[statistics\]\] number 1 \('\.\.'\): name must be"):
        Config(dir_input=tmp_path, statistics=[{"name": "..", "weight_by": "count"}])


def test_an_unknown_palette_or_colour_is_refused_when_the_statistic_is_declared() -> None:
    from grouputils.core.config import Statistic

    with pytest.raises(ConfigError, match="'viridiss' is not a Matplotlib colormap"):
        Statistic(name="s", weight_by="count", palette="viridiss")
    with pytest.raises(ConfigError, match="did you mean 'viridis'"):
        Statistic(name="s", weight_by="count", palette="Viridis")
    with pytest.raises(ConfigError, match="colours Matplotlib does not know: \\['#zz0000'\\]"):
        Statistic(name="s", weight_by="count", palette=["#000000", "#zz0000"])
    assert Statistic(name="s", weight_by="count", palette=["#000000", "red"]).palette == (
        "#000000",
        "red",
    )


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"weight_by": "cnt"}, "weight_by must be 'count', 'coverage' or 'attribute'"),
        ({"weight_by": "count", "resampling": "max"}, "resampling must be 'sum' or 'mean'"),
        ({"weight_by": "attribute"}, "needs attribute ="),
        ({"weight_by": "count", "value_range": (1, 1)}, "value_range must rise"),
        (
            {"weight_by": "count", "value_range": (0, float("nan"))},
            "value_range\\[1\\] must be a finite number",
        ),
        ({"weight_by": "count", "value_range": (0, 1, 2)}, "value_range"),
        ({"weight_by": "count", "value_rnage": (0, 2)}, "did you mean 'value_range'"),
    ],
)
def test_a_bad_statistic_is_a_config_error_naming_it_and_the_key(
    fields: dict, message: str
) -> None:
    from grouputils.core.config import Statistic

    with pytest.raises(ConfigError, match=message) as e:
        Statistic("mean_area", **fields)
    assert str(e.value).startswith("Statistic 'mean_area': ")


def test_statistics_from_toml_lists_are_frozen_hashable_and_equal_to_python_ones() -> None:
    from grouputils.core.config import Statistic

    a = Statistic.from_dict(
        {
            "name": "s",
            "weight_by": "count",
            "palette": ["#000000", "#ffffff"],
            "value_range": [0, 2],
        }
    )
    b = Statistic("s", weight_by="count", palette=("#000000", "#ffffff"), value_range=(0.0, 2.0))
    assert a == b and hash(a) == hash(b)
    assert a.value_range == (0.0, 2.0) and isinstance(a.value_range[0], float)
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.name = "t"  # type: ignore[misc]
    assert dataclasses.replace(a, value_range=(0.0, 5.0)).value_range == (0.0, 5.0)
