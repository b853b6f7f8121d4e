"""Layers point down: `ls trivialci/` is the architecture, and the imports obey it.

    cli, __main__                the command line           (imports anything below)
    up                           a whole CI on one machine
    web                          the hub's UI, the worker's log server
    worker                       one job on a worker
    hub                          state/, queue, dispatch, boots
    forge                        webhooks in, commit statuses out (GitHub, Gitea, GitLab)
    git                          safe git, mirrors, the gitwatcher
    store                        the artifact store, history
    spool                        the on-disk protocol: stdlib only
    errors, jobs                 the words every layer shares

A module may import its own layer and the layers below it, never one above;
the package face (`trivialci/__init__.py`) is for users, never imported back.
"""

import ast
import json
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "trivialci"
LAYERS = [{"errors", "jobs"}, {"spool"}, {"store"}, {"git"}, {"forge"}, {"hub"}, {"worker"}, {"web"}, {"up"},
          {"cli", "__main__"}]
SPOOL = sorted(f"trivialci.spool.{p.stem}" for p in (PACKAGE / "spool").glob("*.py")
               if p.stem not in ("__init__", "watcher"))
HEAVY = ["click", "watchdog", "boto3", "botocore"]
# Which module alone may import each dependency (relative to trivialci/).
ONLY_IMPORTER = {"click": "cli/", "watchdog": "spool/watcher.py", "boto3": "store/s3.py", "botocore": "store/s3.py"}


def loaded_heavy_modules(*names: str) -> list[str]:
    probe = (f"import sys\nimport {', '.join(names)}\n"
             f"print(__import__('json').dumps(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_importing_the_spool_layer_loads_no_click_watchdog_or_boto3():
    assert loaded_heavy_modules("trivialci", "trivialci.spool", *SPOOL) == []


def test_importing_the_store_git_and_hub_loads_no_click_watchdog_or_boto3():
    assert loaded_heavy_modules("trivialci.store", "trivialci.store.history", "trivialci.git", "trivialci.forge",
                                "trivialci.hub", "trivialci.worker") == []


def imported_modules(path: Path) -> set[str]:
    """Absolute names of what a module imports, wherever in the file (relative ones resolved)."""
    names = set()
    package = ".".join(("trivialci", *path.relative_to(PACKAGE).parent.parts))
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            names.update(_from_names(node, package))
    return names


def _from_names(node: ast.ImportFrom, package: str) -> set[str]:
    if node.level:
        base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
        module = f"{base}.{node.module}" if node.module else base
    else:
        module = node.module
    names = {f"{module}.{alias.name}" for alias in node.names}
    return names if node.level and not node.module else {module} | names  # `from .. import git` names trivialci.git


def modules():
    return {str(path.relative_to(PACKAGE)): imported_modules(path) for path in sorted(PACKAGE.rglob("*.py"))}


def importers_of(top: str) -> set[str]:
    return {name for name, imports in modules().items() if any(i == top or i.startswith(top + ".") for i in imports)}


def layer_of_file(relative: str) -> int | None:
    """The layer of a module of the package, by its first path part; None for the package face."""
    first = relative.split("/")[0].removesuffix(".py")
    return None if first == "__init__" else _layer_of_part(first)


def _layer_of_part(part: str) -> int:
    for level, names in enumerate(LAYERS):
        if part in names:
            return level
    raise AssertionError(f"trivialci/{part} is in no layer: add it to LAYERS in tests/test_layers.py")


def upward_imports(imports_by_file: dict[str, set[str]]) -> list[str]:
    """'FILE imports NAME' for every import of a higher layer, or of the package face, from inside the package."""
    found = []
    for relative, imports in imports_by_file.items():
        level = layer_of_file(relative)
        if level is None or level == len(LAYERS) - 1:  # the face itself, and the CLI that prints its version
            continue
        for name in sorted(imports):
            parts = name.split(".")
            if parts[0] != "trivialci":
                continue
            if len(parts) == 1 or not (PACKAGE / parts[1]).exists() and not (PACKAGE / f"{parts[1]}.py").exists():
                found.append(f"{relative} imports the package face ({name})")
            elif _layer_of_part(parts[1]) > level:
                found.append(f"{relative} imports {name}, a higher layer")
    return found


def test_every_module_is_in_a_layer_and_imports_only_its_own_layer_or_lower_ones():
    assert upward_imports(modules()) == []


def test_the_layer_check_catches_an_upward_import_and_an_import_of_the_face():
    assert upward_imports({"spool/node.py": {"trivialci.hub.state.HubState"}}) == [
        "spool/node.py imports trivialci.hub.state.HubState, a higher layer"]
    assert upward_imports({"hub/state.py": {"trivialci.web", "trivialci.jobs.JobStatus"}}) == [
        "hub/state.py imports trivialci.web, a higher layer"]
    assert upward_imports({"store/s3.py": {"trivialci.emit"}}) == ["store/s3.py imports the package face (trivialci.emit)"]
    assert upward_imports({"up.py": {"trivialci.web.ui", "trivialci.__version__"}}) == [
        "up.py imports the package face (trivialci.__version__)"]


def test_the_package_shows_its_layers_with_few_modules_at_the_top():
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(top) <= 8, top
    for package in PACKAGE.glob("*/__init__.py"):
        docstring = ast.get_docstring(ast.parse(package.read_text()))
        assert docstring and "import" in docstring, f"{package}: say what the layer is and what it may import"


def test_no_module_is_over_450_lines():
    long = {str(p.relative_to(PACKAGE)): n for p in PACKAGE.rglob("*.py") if (n := len(p.read_text().splitlines())) > 450}
    assert long == {}, "split these where a concern stands apart"


def test_the_import_scanner_sees_relative_and_nested_imports():
    assert "trivialci.spool.node" in imported_modules(PACKAGE / "cli" / "nodes.py")
    assert "trivialci.spool.watcher.InboxWatcher" in imported_modules(PACKAGE / "spool" / "notices.py"), \
        "imports inside functions count"


def in_cli(module: str) -> bool:
    """Whether a module (relative to trivialci/) is part of the command line, the package trivialci/cli/."""
    return module.startswith("cli/")


def test_nothing_in_the_package_imports_the_cli():
    assert {m for m in importers_of("trivialci.cli") if not in_cli(m)} <= {"__main__.py"}, \
        "only `python -m trivialci` starts the CLI"


def test_only_the_watcher_imports_watchdog_and_only_the_cli_imports_click():
    for dependency, module in ONLY_IMPORTER.items():
        assert all(importer == module or module.endswith("/") and importer.startswith(module)
                   for importer in importers_of(dependency)), f"only {module} may import {dependency}"


def test_only_open_store_loads_the_s3_backend():
    assert importers_of("trivialci.store.s3") <= {"store/__init__.py"}, "boto3 is loaded for an s3:// URL alone"


def test_only_the_cli_starts_the_log_server_and_the_web_ui():
    assert all(map(in_cli, importers_of("trivialci.web.logserver"))), "the log server is started by `trivialci worker` alone"
    assert all(map(in_cli, importers_of("trivialci.web.ui"))), "the web UI is started by `trivialci hub --ui` alone"
    assert all(map(in_cli, importers_of("trivialci.web.webhook"))), "the webhook endpoint: `trivialci hub --webhook`"
    assert importers_of("trivialci.web.pages") | importers_of("trivialci.web.views") <= {"web/ui.py"}
