"""`grouputils run` on the command line: bad input, exit codes, and the SLURM configuration.

A successful run, killed runs and a broken input file among good ones are in
tests/test_pipeline.py; here are the errors that stop a run before it starts,
and what ``--executor slurm`` builds from a ``--config`` file (there is no
SLURM here: Parsl's ``load`` is replaced to capture the configuration).
"""

from __future__ import annotations

import functools
import shutil
from pathlib import Path
from typing import Any

import parsl
import pytest

import grouputils.run.parsl_config
from grouputils import cli

#: The shipped samples in the repository (not samples.sample_dir(), which $GROUPUTILS_DATA redirects).
SAMPLES = Path(__file__).resolve().parents[1] / "data-samples"
SMALL = "scene03_WV03_20150814.gpkg"  # the smallest shipped sample


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = cli.main(["run", *map(str, args), "--executor", "serial", "--no-progress"])
    return code, capsys.readouterr().err


@pytest.fixture
def one_input(tmp_path: Path) -> Path:
    d = tmp_path / "in"
    d.mkdir()
    shutil.copy2(SAMPLES / SMALL, d / SMALL)
    return d


# ---------------------------------------------------------------- bad input
def test_an_empty_input_folder_is_refused_before_anything_is_written(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    code, err = run(capsys, empty, tmp_path / "out")
    assert code == 1
    assert f"{empty}: input folder is empty" in err
    assert not (tmp_path / "out").exists()


def test_a_folder_without_geopackages_is_refused(tmp_path, capsys):
    d = tmp_path / "shapefiles"
    d.mkdir()
    (d / "iwp.shp").write_bytes(b"\0" * 100)
    (d / "notes.txt").write_text("no GeoPackage here")
    code, err = run(capsys, d, tmp_path / "out")
    assert code == 1
    assert f"{d}: holds no GeoPackages (no file ending in .gpkg)" in err


def test_a_missing_input_folder_is_refused(tmp_path, capsys):
    code, err = run(capsys, tmp_path / "nowhere", tmp_path / "out")
    assert code == 1
    assert f"{tmp_path / 'nowhere'}: input folder does not exist" in err


def test_an_unwritable_output_folder_is_refused(one_input, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    out = blocker / "out"  # cannot be created, even by root
    code, err = run(capsys, one_input, out)
    assert code == 1
    assert f"{out}: output folder is not writable" in err


def test_an_output_folder_inside_the_input_folder_is_refused(one_input, capsys):
    code, err = run(capsys, one_input, one_input / "out")
    assert code == 1
    assert "must not be, hold or lie inside the input folder" in err
    assert not (one_input / "out").exists()


@pytest.mark.parametrize("workers", ["0", "-2", "two"])
def test_a_bad_worker_count_is_a_usage_error(one_input, tmp_path, capsys, workers):
    with pytest.raises(SystemExit) as e:
        cli.main(["run", str(one_input), str(tmp_path / "out"), "--workers", workers])
    assert e.value.code == 2
    assert "--workers: must be a positive integer" in capsys.readouterr().err


# -------------------------------------------------------------------- SLURM
class _Stop(Exception):
    """Raised by the fake Parsl loader: the configuration was captured; go no further."""


@pytest.fixture
def captured(monkeypatch) -> dict[str, Any]:
    """Record slurm_config's arguments and the Parsl config the run's executor loads."""
    seen: dict[str, Any] = {}
    real = grouputils.run.parsl_config.slurm_config

    @functools.wraps(real)
    def spy(*args: Any, **kwargs: Any):
        seen["kwargs"] = kwargs
        return real(*args, **kwargs)

    def fake_load(config):
        seen["parsl_config"] = config
        raise _Stop

    monkeypatch.setattr(grouputils.run.parsl_config, "slurm_config", spy)
    # the run's executor loads its configuration into a DataFlowKernel of its own
    monkeypatch.setattr(parsl.dataflow.dflow, "DataFlowKernel", fake_load)
    return seen


CLUSTER_TOML = """\
z = 13
dedup_overlap = 0.5

[slurm]
partition = "cpu"
account = "bbou-delta-cpu"
nodes_per_block = 2
cores_per_node = 64
walltime = "02:30:00"
max_blocks = 3
worker_init = "source /projects/iwp/.venv/bin/activate"
"""


def test_executor_slurm_builds_slurm_config_from_the_config_file(one_input, tmp_path, captured):
    toml = tmp_path / "cluster.toml"
    toml.write_text(CLUSTER_TOML)
    out = tmp_path / "out"
    with pytest.raises(_Stop):
        cli.main(["run", str(one_input), str(out), "--executor", "slurm", "--config", str(toml), "--no-progress"])
    kwargs = captured["kwargs"]
    assert {k: v for k, v in kwargs.items() if k not in ("run_dir", "config")} == {
        "partition": "cpu",
        "account": "bbou-delta-cpu",
        "nodes_per_block": 2,
        "cores_per_node": 64,
        "walltime": "02:30:00",
        "max_blocks": 3,
        "worker_init": "source /projects/iwp/.venv/bin/activate",
    }
    assert Path(kwargs["run_dir"]) == out / ".grouputils" / "parsl-runinfo"
    assert kwargs["config"].dir_output == out  # so the instructor's max_workers cap applies
    executor = captured["parsl_config"].executors[0]
    provider = executor.provider
    assert (provider.partition, provider.account, provider.walltime) == ("cpu", "bbou-delta-cpu", "02:30:00")
    assert (provider.nodes_per_block, provider.cores_per_node, provider.max_blocks) == (2, 64, 3)
    assert "source /projects/iwp/.venv/bin/activate" in provider.worker_init
    assert type(provider.launcher).__name__ == "SrunLauncher"
    assert executor.max_workers_per_node == 64


def test_workers_means_workers_per_node_with_slurm(one_input, tmp_path, captured):
    toml = tmp_path / "cluster.toml"
    toml.write_text('[slurm]\npartition = "cpu"\n')
    with pytest.raises(_Stop):
        cli.main(["run", str(one_input), str(tmp_path / "out"), "--executor", "slurm", "--config", str(toml),
                  "--workers", "16", "--no-progress"])
    assert captured["kwargs"]["workers_per_node"] == 16
    assert captured["parsl_config"].executors[0].max_workers_per_node == 16


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('[slurm]\naccount = "x"\n', "at least partition ="),
        ("z = 13\n", "at least partition ="),
        ('[slurm]\npartition = "cpu"\nnodes = 4\n', "[slurm] has unknown settings ['nodes']"),
    ],
)
def test_a_bad_slurm_table_is_a_clear_error_naming_the_file(one_input, tmp_path, captured, capsys, table, message):
    toml = tmp_path / "cluster.toml"
    toml.write_text(table)
    out = tmp_path / "out"
    code = cli.main(["run", str(one_input), str(out), "--executor", "slurm", "--config", str(toml)])
    err = capsys.readouterr().err
    assert code == 1
    assert f"error: {toml}: " in err and message in err
    assert "parsl_config" not in captured and not out.exists()


def test_executor_slurm_without_a_config_file_says_what_is_missing(one_input, tmp_path, captured, capsys):
    code = cli.main(["run", str(one_input), str(tmp_path / "out"), "--executor", "slurm"])
    assert code == 1
    assert "--executor slurm needs --config FILE with a [slurm] table" in capsys.readouterr().err


# ---------------------------------------------------------------- python -m grouputils
def test_python_m_grouputils_is_the_command_line_and_passes_on_its_exit_status(tmp_path):
    """``python -m grouputils`` works where the console script is not on PATH (e.g. a kernel)."""
    import subprocess
    import sys

    ok = subprocess.run([sys.executable, "-m", "grouputils", "--help"], capture_output=True, text=True)
    assert ok.returncode == 0
    assert "sample" in ok.stdout and "run" in ok.stdout
    missing = tmp_path / "nothing-here"
    bad = subprocess.run([sys.executable, "-m", "grouputils", "run", str(missing), str(tmp_path / "out")],
                         capture_output=True, text=True)
    assert bad.returncode != 0
    assert str(missing) in bad.stderr
    assert not (tmp_path / "out").exists()
