"""The repository keeps its promises: README commands, CI and dependency pins agree."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import subprocess
import sys
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
        assert conda[cname] == spec, (
            f"{name}: pyproject {spec!r} != environment.yml {conda[cname]!r}"
        )


def _run_blocking(blocked: list[str], code: str) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter where importing ``blocked`` fails, as if uninstalled."""
    prelude = (
        "import sys\n"
        f"BLOCKED = {blocked!r}\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in BLOCKED:\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
        "sys.meta_path.insert(0, Block())\n"
    )
    return subprocess.run(
        [sys.executable, "-c", prelude + code],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )


def _core_requirements() -> dict[str, str]:
    data = tomllib.loads((REPO / "pyproject.toml").read_text())
    out = {}
    for r in data["project"]["dependencies"]:
        m = re.match(r"([A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?\s*(.*)", r)
        out[m.group(1).lower()] = m.group(2).replace(" ", "")
    return out


def test_sqlalchemy_is_not_a_core_dependency_and_parsl_runs_without_it(tmp_path):
    """Parsl's monitoring (which wants SQLAlchemy < 2.1) is not used: no pin, and a Parsl run
    on grouputils' local executor works with SQLAlchemy unimportable."""
    assert "sqlalchemy" not in _core_requirements()
    code = (
        "import parsl\n"
        "from grouputils import local_config, parallel_map\n"
        f"parsl.load(local_config(workers=1, run_dir={str(tmp_path / 'runinfo')!r}))\n"
        "try:\n"
        "    assert parallel_map(abs, [-1, -2], progress=False) == [1, 2]\n"
        "finally:\n"
        "    parsl.dfk().cleanup()\n"
        "assert not [m for m in sys.modules if m.startswith('sqlalchemy')]\n"
        "print('ran')\n"
    )
    result = _run_blocking(["sqlalchemy"], code)
    assert result.returncode == 0 and "ran" in result.stdout, result.stderr[-3000:]


def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", text)[:3])


def test_every_range_has_a_lower_bound_and_a_cap_at_a_major_version():
    """'>=low,<major': the cap is a whole major version (calendar versions: a year) above the
    lower bound, and the installed version is inside the range."""
    for name, spec in _pins_pyproject().items():
        m = re.fullmatch(r">=([\d.]+),<(\d+)", spec)
        assert m, f"{name}: {spec!r} is not '>=lower,<next-major'"
        low, cap = _version_tuple(m.group(1)), int(m.group(2))
        assert low[0] < cap, f"{name}: {spec}"
        try:
            installed = _version_tuple(importlib.metadata.version(name))
        except importlib.metadata.PackageNotFoundError:
            continue  # e.g. a course package in a core-only environment
        assert low <= installed and installed[0] < cap, f"{name} {installed} is outside {spec}"


def _imported_modules(folder: Path) -> dict[str, set[str]]:
    """Top-level third-party module -> the files under ``folder`` that import it."""
    out: dict[str, set[str]] = {}
    for path in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for top in {n.split(".")[0] for n in names}:
                if top not in sys.stdlib_module_names and top != "grouputils":
                    out.setdefault(top, set()).add(path.name)
    return out


def test_every_package_grouputils_imports_is_declared():
    """affine, xyzservices, pyarrow, ...: the distribution of every module imported in
    grouputils/ is a dependency or in an extra (not there only because another pulls it in)."""
    declared = {n.replace("_", "-") for n in _pins_pyproject()}
    dists = importlib.metadata.packages_distributions()
    imported = _imported_modules(REPO / "grouputils")
    assert {"affine", "xyzservices", "xstatic", "pystac", "pyarrow"} <= set(imported)
    missing = {}
    for module, files in imported.items():
        candidates = {d.lower().replace("_", "-") for d in dists.get(module, [])}
        assert candidates, f"{module} (imported in {sorted(files)}) is not installed"
        if not candidates & declared:
            missing[module] = (sorted(candidates), sorted(files))
    assert not missing, f"imported but not declared in pyproject.toml: {missing}"


def test_the_core_imports_without_the_optional_stacks_and_the_error_names_the_extra():
    """Without xarray/dask/rioxarray/contextily/ipyleaflet the pipeline, catalogue and map
    import; the mosaic and the notebook map say which extra to install."""
    code = (
        "import grouputils, grouputils.cli, grouputils.run.pipeline\n"
        "import grouputils.outputs.catalog, grouputils.outputs.webmap\n"
        "from grouputils.core.config import Config\n"
        "for module, extra in (('grouputils.outputs.mosaic', 'mosaic'),):\n"
        "    try:\n"
        "        __import__(module)\n"
        "    except ImportError as e:\n"
        "        print(e)\n"
        "try:\n"
        "    grouputils.outputs.webmap.interactive_map(Config(dir_input='.'))\n"
        "except ImportError as e:\n"
        "    print(e)\n"
    )
    result = _run_blocking(["xarray", "dask", "rioxarray", "contextily", "ipyleaflet"], code)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert len(lines) == 2, result.stdout
    assert "pip install 'grouputils[mosaic]'" in lines[0]
    assert "ipyleaflet" in lines[1] and "pip install 'grouputils[notebook]'" in lines[1]
    data = tomllib.loads((REPO / "pyproject.toml").read_text())
    extras = data["project"]["optional-dependencies"]
    names = {
        e: {re.match(r"[A-Za-z0-9_.\-]+", r).group(0).lower() for r in reqs}
        for e, reqs in extras.items()
    }
    assert {"xarray", "rioxarray", "dask"} <= names["mosaic"]
    assert {"contextily", "ipyleaflet"} <= names["notebook"]
    assert not (
        {"xarray", "rioxarray", "dask", "contextily", "ipyleaflet"} & set(_core_requirements())
    )
    assert (
        "grouputils[mosaic,notebook]" in extras["course"] and "grouputils[course]" in extras["test"]
    )
    assert ".[${EXTRAS}]" in (REPO / "scripts" / "setup.sh").read_text()
    assert 'EXTRAS="${GROUPUTILS_EXTRAS:-test}"' in (REPO / "scripts" / "setup.sh").read_text()


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
