"""The shipped pipeline scripts use only the API that docs/scripting.md documents, and every name it documents exists."""

import ast
import importlib
import importlib.util
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "scripting.md"
HEADING = re.compile(r"^#{2,4} `(trivialci(?:\.[A-Za-z_]\w*)+)", re.M)


def documented_names() -> set[str]:
    return set(HEADING.findall(PAGE.read_text()))


def names_a_script_uses(path: Path) -> set[str]:
    """Dotted names of trivialci the script imports, or reaches as attributes of an imported trivialci module."""
    tree = ast.parse(path.read_text(), str(path))
    used, modules = set(), {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "trivialci":
            used.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            modules.update({alias.asname or alias.name: alias.name for alias in node.names
                            if alias.name.split(".")[0] == "trivialci"})
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in modules:
            used.add(f"{modules[node.value.id]}.{node.attr}")
    return used


def test_every_shipped_script_uses_only_documented_names():
    documented = documented_names()
    undocumented = {f"{path.name}: {name}" for path in sorted((ROOT / "pipeline").glob("*.py"))
                    for name in names_a_script_uses(path) if name not in documented}
    assert undocumented == set(), "document these in docs/scripting.md, or use a documented name"


def test_the_check_sees_imports_and_attributes(tmp_path):
    script = tmp_path / "x.py"
    script.write_text("import trivialci\nfrom trivialci.hub import scheduling\nfrom trivialci.hub.state import X\n"
                      "trivialci.emit('a', {})\ntrivialci.node.Node\n")
    assert names_a_script_uses(script) == {"trivialci.hub.scheduling", "trivialci.hub.state.X", "trivialci.emit",
                                           "trivialci.node"}


def test_every_documented_name_exists():
    for name in sorted(documented_names()):
        module, _, attribute = name.rpartition(".")
        if importlib.util.find_spec(module) and attribute and (ROOT / Path(*name.split("."))).is_dir():
            continue  # a documented package
        assert hasattr(importlib.import_module(module), attribute), f"docs/scripting.md documents {name}"
