"""`make test` is the one test command (the README names it, CI runs it), and
it runs the linter, the type checker and the suite, so none of them can be
skipped by running a different command."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _recipe(target: str) -> list[str]:
    lines = (ROOT / "Makefile").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if re.match(rf"{target}:", line))
    recipe = []
    for line in lines[start + 1 :]:
        if not line.startswith("\t"):
            break
        recipe.append(line.strip())
    return recipe


def test_make_test_runs_ruff_check_and_format_then_mypy_then_pytest() -> None:
    """With bytecode written just before the suite (`compileall`), for the
    processes it starts: the one step that is not a check."""
    steps = [line.split()[:3] for line in _recipe("test")]
    tools = [step[0].rsplit("/", 1)[-1] + "".join(" " + s for s in step[1:2]) for step in steps]
    assert tools == ["ruff check", "ruff format", "mypy", "python -m", "pytest --numprocesses"]
    assert _recipe("test")[3] == "$(BIN)/python -m compileall -q lnplugin lnplugin_sim tests"


def test_ci_runs_make_test_and_no_other_test_command() -> None:
    """CI may prepare the machine (Chromium for the checkout page's browser
    tests, Node and npm for the NWC tests that drive Alby's JavaScript SDK,
    and the variables that make their skips failures), but the tests it runs
    are `make test`'s, last."""
    commands = [
        line.strip()
        for line in (ROOT / ".ci" / "run").read_text().splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]
    commands = [c for c in commands if not c.startswith(("set ", "cd "))]
    assert commands[-1] == "make test"
    assert "export LNPLUGIN_REQUIRE_BROWSER=1" in commands
    assert "export LNPLUGIN_REQUIRE_NODE=1" in commands
    assert any("apt-get install" in c for c in commands)
    for package in ("chromium", "chromium-driver", "nodejs", "npm"):
        assert any(c.endswith(f"missing+=({package})") for c in commands), package
    for command in commands[:-1]:
        assert not re.search(r"\b(pytest|ruff|mypy|make)\b", command), command


def test_make_test_installs_the_javascript_client_when_npm_is_there() -> None:
    """`make test` installs tests/js (Alby's SDK) before the suite whenever npm
    exists, so a machine with Node never skips its tests for want of it."""
    line = next(
        line for line in (ROOT / "Makefile").read_text().splitlines() if line.startswith("test:")
    )
    assert "$(if $(NPM),$(JS)/node_modules/.installed)" in line
    assert _recipe(r"\$\(JS\)/node_modules/\.installed") == [
        "cd $(JS) && npm ci --no-audit --no-fund --loglevel=error",
        "touch $@",
    ]


def test_mypy_checks_lnplugin_with_annotations_required() -> None:
    """The package, the simulators the tests trust, the benchmark scripts and
    the tests. Test functions and fixtures need no annotations, but their
    bodies are checked all the same (`check_untyped_defs`)."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]
    assert config["files"] == ["lnplugin", "lnplugin_sim", "contrib", "tests"]
    assert config["disallow_untyped_defs"] is True
    assert config["check_untyped_defs"] is True
    assert config["warn_unused_ignores"] is True
    relaxed = [o for o in config["overrides"] if "disallow_untyped_defs" in o]
    assert relaxed == [
        {
            "module": ["tests.*"],
            "disallow_untyped_defs": False,
            "disallow_incomplete_defs": False,
        }
    ]
