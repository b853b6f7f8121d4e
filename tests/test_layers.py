"""Layers point down: the protocol layer loads nothing heavy, and only one module imports each dependency."""

import ast
import json
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "trivialci"
CORE = ["trivialci", "trivialci.node", "trivialci.delivery", "trivialci.claim", "trivialci.record",
        "trivialci.recovery", "trivialci.runner", "trivialci.event", "trivialci.layout", "trivialci.atomic",
        "trivialci.lock", "trivialci.inbox", "trivialci.status", "trivialci.store", "trivialci.history"]
HEAVY = ["click", "watchdog", "boto3", "botocore"]
# Which module alone may import each dependency (relative to trivialci/).
ONLY_IMPORTER = {"click": "cli.py", "watchdog": "watcher.py", "boto3": "store/s3.py", "botocore": "store/s3.py"}


def test_importing_the_core_and_the_store_loads_no_click_watchdog_or_boto3():
    probe = (f"import sys\nimport {', '.join(CORE)}\n"
             f"print(__import__('json').dumps(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []


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
    return {module} | {f"{module}.{alias.name}" for alias in node.names}


def modules():
    return {str(path.relative_to(PACKAGE)): imported_modules(path) for path in sorted(PACKAGE.rglob("*.py"))}


def importers_of(top: str) -> set[str]:
    return {name for name, imports in modules().items() if any(i == top or i.startswith(top + ".") for i in imports)}


def test_the_import_scanner_sees_relative_and_nested_imports():
    assert "trivialci.node" in imported_modules(PACKAGE / "cli.py")
    assert "trivialci.watcher.InboxWatcher" in imported_modules(PACKAGE / "node.py"), "imports inside functions count"


def test_nothing_in_the_package_imports_the_cli():
    assert importers_of("trivialci.cli") <= {"__main__.py"}, "only `python -m trivialci` starts the CLI"


def test_only_the_watcher_imports_watchdog_and_only_the_cli_imports_click():
    for dependency, module in ONLY_IMPORTER.items():
        assert importers_of(dependency) <= {module}, f"only {module} may import {dependency}"


def test_only_open_store_loads_the_s3_backend():
    assert importers_of("trivialci.store.s3") <= {"store/__init__.py"}, "boto3 is loaded for an s3:// URL alone"


def test_only_the_cli_starts_the_log_server():
    assert importers_of("trivialci.logserver") <= {"cli.py"}, "the log server is started by `trivialci worker` alone"


def test_only_the_cli_imports_the_web_ui():
    assert importers_of("trivialci.webui") <= {"cli.py"}, "the web UI is started by `trivialci hub --ui` alone"
    assert importers_of("trivialci.webhtml") | importers_of("trivialci.webviews") <= {"webui.py"}
