"""What `pip install .` ships: every package of the source tree, and the default pipeline."""

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_package_in_the_source_tree_is_listed_for_installation():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    in_tree = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "trivialci").rglob("__init__.py")}
    assert in_tree <= listed, f"add {sorted(in_tree - listed)} to [tool.setuptools] packages in pyproject.toml"
    assert "trivialci.pipeline" in listed


def test_the_default_pipeline_ships_every_script():
    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert "*" in package_data["trivialci.pipeline"], "executable scripts without .py must ship too"
