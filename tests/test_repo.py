"""The repository keeps its promises: README commands, CI and dependency pins agree."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml  # PyYAML is installed with the course extras (jupyter)

REPO = Path(__file__).resolve().parents[1]


def _commands(text: str) -> list[str]:
    """Shell lines inside ```bash blocks, without comments."""
    out = []
    for block in re.findall(r"```(?:bash|sh|console)\n(.*?)```", text, flags=re.S):
        for line in block.splitlines():
            line = line.split("  #")[0].strip()
            if line and not line.startswith("#"):
                out.append(line)
    return out


def _ci_commands() -> list[str]:
    lines = (REPO / ".ci" / "run").read_text().splitlines()
    return [
        ln.strip()
        for ln in lines
        if ln.strip() and not ln.strip().startswith("#") and not ln.startswith(("set ", "cd "))
    ]


def test_ci_runs_exactly_the_readme_test_command():
    """`.ci/run` runs the README's test command and nothing else."""
    quick = (REPO / "README.md").read_text().split("## Quick start", 1)[1].split("\n## ", 1)[0]
    cmds = _commands(quick)
    test_cmds = [c for c in cmds if "test" in c]
    assert len(test_cmds) == 1, f"README quick start should have one test command: {test_cmds}"
    assert _ci_commands() == test_cmds


def test_readme_main_command_runs_the_pipeline_on_the_samples():
    """The README's main command is the whole pipeline on data-samples/."""
    quick = (REPO / "README.md").read_text().split("## Quick start", 1)[1].split("\n## ", 1)[0]
    main = [c for c in _commands(quick) if "test" not in c]
    assert main == ["bash scripts/run.sh"]
    script = (REPO / "scripts" / "run.sh").read_text()
    assert "grouputils run data-samples" in script


def _pins_pyproject() -> dict[str, str]:
    data = tomllib.loads((REPO / "pyproject.toml").read_text())
    reqs = list(data["project"]["dependencies"])
    for extra in data["project"]["optional-dependencies"].values():
        reqs += [r for r in extra if not r.startswith("grouputils")]
    out = {}
    for r in reqs:
        # "pystac[validation]>=1.12" pins pystac; conda has no extras.
        m = re.match(r"([A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?\s*(.*)", r)
        out[m.group(1).lower()] = m.group(2).replace(" ", "")
    return out


def test_environment_yml_mirrors_pyproject_ranges():
    """Every pinned range in pyproject.toml is the same in environment.yml."""
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    conda = {}
    deps = [d for d in env["dependencies"] if isinstance(d, str)]
    for d in env["dependencies"]:
        if isinstance(d, dict):
            deps += [p for p in d.get("pip", []) if not p.startswith("-e")]
    for dep in deps:
        if True:
            m = re.match(r"([A-Za-z0-9_.\-]+)\s*(.*)", dep)
            conda[m.group(1).lower()] = m.group(2).replace(" ", "")
    rename = {"build": "python-build"}
    for name, spec in _pins_pyproject().items():
        cname = rename.get(name, name)
        assert cname in conda, f"{name} is in pyproject.toml but not in environment.yml"
        assert conda[cname] == spec, f"{name}: pyproject {spec!r} != environment.yml {conda[cname]!r}"


def test_sqlalchemy_is_pinned_below_2_1_for_parsl_monitoring():
    """nbgrader would pull SQLAlchemy 2.1, which Parsl's monitoring refuses."""
    assert _pins_pyproject()["sqlalchemy"] == ">=2,<2.1"


def test_readme_config_examples_build_a_config_and_a_slurm_config(tmp_path):
    """The TOML settings shown in the README are valid for `grouputils run --config`."""
    from grouputils.core.config import Config, load_config_file
    from grouputils.run.parsl_config import slurm_config

    text = (REPO / "README.md").read_text()
    blocks = re.findall(r"```toml\n(.*?)```", text, flags=re.S)
    assert len(blocks) >= 2
    toml_file = tmp_path / "settings.toml"
    toml_file.write_text("\n".join(blocks))
    settings = load_config_file(toml_file)
    slurm = settings.pop("slurm")
    config = Config(dir_input=tmp_path, **settings)
    assert "mean_area" in config.statistic_names
    parsl_config = slurm_config(run_dir=tmp_path / "runinfo", **slurm)
    provider = parsl_config.executors[0].provider
    assert provider.partition == slurm["partition"]
    assert provider.account == slurm["account"]


def _script_commands(path: Path) -> list[str]:
    """Command lines of a shell script (no comments, no blank lines)."""
    lines = [ln.split(" #")[0].strip() for ln in path.read_text().splitlines()]
    return [ln for ln in lines if ln and not ln.startswith("#")]


def test_test_command_runs_ruff_and_mypy_before_pytest():
    """`scripts/test.sh` (what CI runs) fails on a ruff or mypy error before any test runs."""
    cmds = _script_commands(REPO / "scripts" / "test.sh")
    assert "set -euo pipefail" in cmds  # a failing linter stops the script
    ruff = [i for i, c in enumerate(cmds) if c.startswith(".venv/bin/ruff check")]
    mypy = [i for i, c in enumerate(cmds) if c == ".venv/bin/mypy"]
    tests = [i for i, c in enumerate(cmds) if "-m pytest" in c]
    setup = [i for i, c in enumerate(cmds) if c == "bash scripts/setup.sh"]
    assert ruff and mypy and tests and setup, cmds
    assert setup[0] < ruff[0] < tests[0] and setup[0] < mypy[0] < tests[0]
    assert "grouputils" in cmds[ruff[0]].split()[2:], "ruff must check the package"
    # neither linter is allowed to fail quietly
    for i in ruff + mypy:
        assert "||" not in cmds[i] and "--exit-zero" not in cmds[i], cmds[i]
    # mypy without arguments checks what pyproject.toml names: the package
    data = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert "grouputils" in data["tool"]["mypy"]["files"]
    assert "C90" in data["tool"]["ruff"]["lint"]["select"]
