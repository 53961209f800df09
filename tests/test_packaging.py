"""The runtime package stays runtime-only.

The node simulators (lnplugin_sim/) and the test extra's packages serve the
test suite; an operator's `pip install lnplugin` gets neither. Two things keep
it that way: the package discovery in pyproject.toml, which decides what the
wheel holds, and lnplugin's own imports, which must not reach either.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import tomllib
from pathlib import Path

from setuptools import find_namespace_packages

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def _wheel_packages() -> list[str]:
    """What setuptools puts in the wheel: pyproject's `packages.find`, namespaces on."""
    find = PYPROJECT["tool"]["setuptools"]["packages"]["find"]
    return find_namespace_packages(
        where=str(ROOT), include=find.get("include", ["*"]), exclude=find.get("exclude", ())
    )


def _test_only_modules() -> set[str]:
    """Top-level modules provided by the test extra's distributions."""
    dists = {
        re.split(r"[\s<>=!~;\[]", req, maxsplit=1)[0].lower().replace("_", "-")
        for req in PYPROJECT["project"]["optional-dependencies"]["test"]
    }
    return {
        module
        for module, providers in importlib.metadata.packages_distributions().items()
        if any(p.lower().replace("_", "-") in dists for p in providers)
    }


def _imports(path: Path) -> set[str]:
    """Top-level names of every absolute import in a module, wherever it appears."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_wheel_holds_lnplugin_and_not_the_simulators() -> None:
    packages = _wheel_packages()
    assert "lnplugin" in packages
    assert "lnplugin.nodes.lnd.rpc" in packages
    assert [p for p in packages if p != "lnplugin" and not p.startswith("lnplugin.")] == []


def test_runtime_package_imports_no_simulator_or_test_only_package() -> None:
    forbidden = _test_only_modules() | {"lnplugin_sim", "tests"}
    assert {"pytest", "hypothesis", "bolt11"} <= forbidden
    offenders = {
        f"{path.relative_to(ROOT)}: {name}"
        for path in (ROOT / "lnplugin").rglob("*.py")
        for name in _imports(path) & forbidden
    }
    assert sorted(offenders) == []


def test_the_wheel_ships_the_checkout_pages_templates_and_static_files() -> None:
    """Non-Python files reach the wheel only through package-data globs; a
    template or script missing from them is a checkout page that 500s once
    installed from a wheel, while every test run from the checkout passes."""
    globs = PYPROJECT["tool"]["setuptools"]["package-data"]["lnplugin"]
    base = ROOT / "lnplugin"
    files = [
        path.relative_to(base)
        for folder in ("api/templates", "api/static")
        for path in (base / folder).iterdir()
        if path.is_file()
    ]
    assert files
    unshipped = [str(f) for f in files if not any(f.match(g) for g in globs)]
    assert unshipped == []
