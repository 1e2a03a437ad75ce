"""Settings from a TOML file: every mistake is found before any work, naming the file and the key.

A typo inside a ``[[statistics]]`` table, a number written as a string,
``nan``, an unknown palette, a statistic name that is not a folder name, a
wrong ``[slurm]`` value and an ``attribute`` that is not a column of the
inputs all stop ``grouputils run`` with one line naming the file and the key,
before the output folder is even made.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import shutil
from pathlib import Path

import pytest

from grouputils import cli
from grouputils.core.config import Config, SlurmSettings, Statistic, load_config_file
from grouputils.core.errors import ConfigError
from grouputils.run.pipeline import check_slurm_settings, run_pipeline

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "data-samples"
SMALL = "scene03_WV03_20150814.gpkg"  # 352 polygons; columns Class, Sensor, ..., Area, ...

MEAN_AREA = """
[[statistics]]
name = "number_IWP_per_pixel"
weight_by = "count"

[[statistics]]
name = "mean_area"
weight_by = "attribute"
attribute = "Area"
aggregate = "mean"
resampling = "mean"
value_range = [0, 300]
"""


@pytest.fixture
def one_input(tmp_path: Path) -> Path:
    d = tmp_path / "in"
    d.mkdir()
    shutil.copy2(SAMPLES / SMALL, d / SMALL)
    return d


def _toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "iwp.toml"
    path.write_text(text)
    return path


# (file text, what the one-line error must say after "<file>: ")
BAD_FILES = [
    (
        MEAN_AREA.replace("value_range", "value_rnage"),
        (
            "[[statistics]] number 2 ('mean_area') has unknown settings ['value_rnage'] "
            "(did you mean 'value_range'?)"
        ),
    ),
    (
        'simplify_tolerance = "0.1"\n',
        "simplify_tolerance must be a valid number, got '0.1' (a string: write the number",
    ),
    ("simplify_tolerance = nan\n", "simplify_tolerance must be a finite number, got nan"),
    ("dedup_overlap = inf\n", "dedup_overlap must be a finite number"),
    ("z = 13.0\n", "z must be an integer from 0 to 23 for 'WorldCRS84Quad', got 13.0"),
    ('tms = "WorldCRS84"\n', "tms 'WorldCRS84' is not a tile matrix set"),
    (
        "simplify_tolerence = 0.1\n",
        "unknown settings ['simplify_tolerence'] (did you mean 'simplify_tolerance'?)",
    ),
    (
        MEAN_AREA.replace('weight_by = "count"', 'weight_by = "count"\npalette = "viridiss"'),
        (
            "[[statistics]] number 1 ('number_IWP_per_pixel'): "
            "palette 'viridiss' is not a Matplotlib colormap"
        ),
    ),
    (
        MEAN_AREA.replace('name = "mean_area"', 'name = ".."'),
        "[[statistics]] number 2 ('..'): name must be 1 to 64 letters",
    ),
    (
        MEAN_AREA.replace('name = "mean_area"', 'name = "mean area"'),
        "name must be 1 to 64 letters, digits, '_' or '-'",
    ),
    (
        MEAN_AREA.replace('name = "mean_area"', 'name = "number_IWP_per_pixel"'),
        "statistics must have unique names; named twice: ['number_IWP_per_pixel']",
    ),
    (
        '[statistics]\nname = "a"\nweight_by = "count"\n',
        "statistics must be a list of [[statistics]] tables",
    ),
    (
        MEAN_AREA.replace('attribute = "Area"\n', ""),
        "[[statistics]] number 2 ('mean_area'): weight_by = 'attribute' needs",
    ),
    ('default_crs = "EPSG:3413x"\n', "default_crs is not a CRS pyproj knows"),
    ("extra = 1\n", "unknown settings ['extra']"),
    (
        '[slurm]\npartition = "cpu"\nnodes_per_block = "2"\n',
        "[slurm]: nodes_per_block must be a valid integer, got '2'",
    ),
    ('[slurm]\npartition = "cpu"\nwalltime = "2h"\n', "[slurm]: walltime must be a SLURM time"),
    (
        '[slurm]\npartition = "cpu"\nexclusive = "yes"\n',
        "[slurm]: exclusive must be a valid boolean",
    ),
    (
        '[slurm]\npartition = "cpu"\ninit_blocks = 3\nmax_blocks = 2\n',
        "init_blocks (3) must not exceed max_blocks (2)",
    ),
    (
        '[slurm]\npartition = "cpu"\nwaltime = "01:00:00"\n',
        "[slurm] has unknown settings ['waltime'] (did you mean 'walltime'?)",
    ),
    (
        '[slurm]\naccount = "x"\n',
        "needs a [slurm] table in the --config file with at least partition =",
    ),
]


@pytest.mark.parametrize(("text", "message"), BAD_FILES)
def test_a_bad_setting_in_a_file_is_one_config_error_naming_the_file_and_the_key(
    tmp_path, text, message
):
    path = _toml(tmp_path, text)
    with pytest.raises(ConfigError) as e:
        load_config_file(path)
    assert str(e.value).startswith(f"{path}: ")
    assert message in str(e.value)
    assert "Traceback" not in str(e.value) and "pydantic" not in str(e.value)


@pytest.mark.parametrize(("text", "message"), BAD_FILES[:8])
def test_grouputils_run_refuses_a_bad_file_before_making_the_output_folder(
    one_input, tmp_path, capsys, text, message
):
    path = _toml(tmp_path, text)
    out = tmp_path / "out"
    code = cli.main(
        [
            "run",
            str(one_input),
            str(out),
            "--executor",
            "serial",
            "--config",
            str(path),
            "--no-progress",
        ]
    )
    err = capsys.readouterr().err
    assert code == 1
    assert f"error: {path}: " in err and message in err
    assert "Traceback" not in err
    assert not out.exists()


def test_several_mistakes_are_reported_together(tmp_path):
    path = _toml(
        tmp_path,
        'simplify_tolerance = "0.1"\ntile_size = 0\n'
        + MEAN_AREA.replace("value_range", "value_rnage")
        + '[slurm]\npartition = "cpu"\nwalltime = "2h"\n',
    )
    with pytest.raises(ConfigError) as e:
        load_config_file(path)
    lines = str(e.value).splitlines()
    assert lines[0] == f"{path}: 4 settings are invalid:"
    assert any(line.strip().startswith("- [slurm]: walltime must be") for line in lines[1:])
    assert any("value_rnage" in line for line in lines[1:])
    assert any(line.strip().startswith("- simplify_tolerance must") for line in lines[1:])
    assert any(
        line.strip().startswith("- tile_size must be greater than or equal to 1")
        for line in lines[1:]
    )


def test_a_good_file_loads_as_config_arguments_with_statistics_and_slurm(tmp_path):
    path = _toml(
        tmp_path,
        'z = 12\nsimplify_tolerance = 0\n[slurm]\npartition = "cpu"\nmax_blocks = 2\n' + MEAN_AREA,
    )
    settings = load_config_file(path)
    assert settings["slurm"] == {"partition": "cpu", "max_blocks": 2}  # only the keys the file sets
    assert all(isinstance(s, Statistic) for s in settings["statistics"])
    config = Config(dir_input=tmp_path, **{k: v for k, v in settings.items() if k != "slurm"})
    assert (config.z, config.simplify_tolerance) == (12, 0.0)
    assert config.statistic("mean_area").value_range == (0.0, 300.0)


def test_every_toml_example_in_the_readme_is_a_valid_file(tmp_path):
    blocks = re.findall(r"```toml\n(.*?)```", (REPO / "README.md").read_text(), re.DOTALL)
    assert len(blocks) >= 2
    for i, block in enumerate(blocks):
        settings = load_config_file(_toml(tmp_path, block))
        Config(dir_input=tmp_path, **{k: v for k, v in settings.items() if k != "slurm"})


def test_the_slurm_table_takes_exactly_the_arguments_and_defaults_of_slurm_config():
    from grouputils.run.parsl_config import slurm_config

    params = {
        n: p.default
        for n, p in inspect.signature(slurm_config).parameters.items()
        if n not in ("run_dir", "config")
    }
    fields = {n: f.default for n, f in SlurmSettings.model_fields.items()}
    assert list(fields) == list(params)
    params["partition"] = fields["partition"]  # required in both
    assert fields == params


def test_check_slurm_settings_checks_values_given_in_python_too():
    assert check_slurm_settings({"partition": "cpu", "cores_per_node": 64}) == {
        "partition": "cpu",
        "cores_per_node": 64,
    }
    with pytest.raises(
        ConfigError, match=r"\[slurm\]: cores_per_node must be greater than or equal to 1"
    ):
        check_slurm_settings({"partition": "cpu", "cores_per_node": 0})
    with pytest.raises(ConfigError, match="at least partition ="):
        check_slurm_settings({})


# ------------------------------------------------------------ settings against the inputs
def _mean_of(attribute: str) -> Statistic:
    return Statistic(
        "mean_area", weight_by="attribute", attribute=attribute, aggregate="mean", resampling="mean"
    )


def test_an_attribute_that_is_not_an_input_column_is_refused_before_staging(
    one_input, tmp_path, capsys
):
    path = _toml(tmp_path, MEAN_AREA.replace('attribute = "Area"', 'attribute = "Areaa"'))
    out = tmp_path / "out"
    code = cli.main(
        [
            "run",
            str(one_input),
            str(out),
            "--executor",
            "serial",
            "--config",
            str(path),
            "--no-progress",
        ]
    )
    err = capsys.readouterr().err
    assert code == 1
    assert (
        f"error: {path}: [[statistics]] 'mean_area': attribute = 'Areaa' "
        "is not a column of 1 of 1 input files" in err
    )
    assert SMALL in err and "did you mean 'Area'" in err
    assert not out.exists()


def test_an_attribute_of_text_is_refused_before_staging(one_input, tmp_path):
    config = Config(
        dir_input=one_input, dir_output=tmp_path / "out", statistics=(_mean_of("Sensor"),)
    )
    with pytest.raises(
        ConfigError, match=r"\[\[statistics\]\] 'mean_area': attribute = 'Sensor' is not numeric"
    ):
        run_pipeline(config, executor="serial", progress=False)
    assert not config.dir_output.exists()


def test_an_attribute_missing_from_one_input_names_that_input(one_input, tmp_path):
    import geopandas as gpd

    frame = gpd.read_file(one_input / SMALL).drop(columns=["Area"])
    frame.to_file(one_input / "no_area.gpkg", layer="iwp")
    config = Config(
        dir_input=one_input, dir_output=tmp_path / "out", statistics=(_mean_of("Area"),)
    )
    with pytest.raises(
        ConfigError, match=r"'Area' is not a column of 1 of 2 input files \(no_area\.gpkg\)"
    ):
        run_pipeline(config, executor="serial", progress=False)
    assert not config.dir_output.exists()


def test_an_attribute_every_input_has_passes_the_check(one_input, tmp_path):
    from grouputils.core.preflight import check_statistic_columns

    config = Config(dir_input=one_input, statistics=(_mean_of("Area"),))
    check_statistic_columns(config, [one_input / SMALL])  # no error
    # an unreadable input is left to staging (which reports it without stopping the run)
    (one_input / "broken.gpkg").write_bytes(b"not a geopackage")
    check_statistic_columns(config, [one_input / SMALL, one_input / "broken.gpkg"])


def test_the_readme_settings_reference_is_the_models_field_descriptions():
    from grouputils.settings_doc import BEGIN, END, settings_reference

    text = (REPO / "README.md").read_text()
    assert BEGIN in text and END in text
    shown = text[text.index(BEGIN) + len(BEGIN) : text.index(END)].strip()
    assert shown == settings_reference(), "run: python -m grouputils.settings_doc README.md"
    for key in [*FILE_KEYS, *STATISTIC_KEYS, *SlurmSettings.model_fields]:
        assert f"| `{key}` |" in shown


FILE_KEYS = [
    f.name for f in dataclasses.fields(Config) if f.name not in ("dir_input", "dir_output", "extra")
]
STATISTIC_KEYS = [f.name for f in dataclasses.fields(Statistic)]
