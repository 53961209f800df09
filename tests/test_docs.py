"""The README cannot drift from the code (as sqlite-utils' test_docs does).

Every CLI command, every setting (flag and environment variable) and every
HTTP route must appear in README.md, and every command must have help text.
"""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest

from lnplugin.config import SETTINGS_DOCS
from lnplugin.run.cli import cli

README = (Path(__file__).parent.parent / "README.md").read_text()


def _commands(group: click.Group, prefix: str = "lnplugin") -> list[tuple[str, click.Command]]:
    found = []
    for name, command in group.commands.items():
        path = f"{prefix} {name}"
        found.append((path, command))
        if isinstance(command, click.Group):
            found.extend(_commands(command, path))
    return found


COMMANDS = _commands(cli)


@pytest.mark.parametrize("path,command", COMMANDS, ids=[p for p, _ in COMMANDS])
def test_every_command_is_documented_with_help(path: str, command: click.Command) -> None:
    assert f"`{path}" in README, f"{path} is missing from the README"
    assert command.help and command.help.strip(), f"{path} has no --help text"


@pytest.mark.parametrize("setting", SETTINGS_DOCS, ids=[s.name for s in SETTINGS_DOCS])
def test_every_setting_is_documented(setting) -> None:  # type: ignore[no-untyped-def]
    assert f"`{setting.flag}`" in README, f"{setting.flag} is missing from the README"
    assert f"`{setting.env}`" in README, f"{setting.env} is missing from the README"


def _normalise(route: str) -> str:
    return re.sub(r"<[^>]+>", "<>", route)


def test_every_route_is_documented(app) -> None:  # type: ignore[no-untyped-def]
    documented = {
        _normalise(m) for m in re.findall(r"`((?:GET|POST|DELETE|PUT|PATCH) /[^`]*)`", README)
    }
    missing = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            route = _normalise(f"{method} {rule.rule}")
            if route not in documented:
                missing.append(route)
    assert not missing, f"routes missing from the README: {missing}"


def test_nothing_cites_a_fact_sheet_outside_the_repository() -> None:
    """Protocol facts are cited from docs/protocols.md, which ships with the code;
    the team's private fact sheet is not in the repository."""
    root = Path(__file__).resolve().parents[1]
    sheet = "PROTOCOLS" + ".md"  # spelled apart so this file does not cite it
    citing = [
        str(path.relative_to(root))
        for folder in ("lnplugin", "lnplugin_sim", "tests", "contrib", "docs", "regtest")
        for path in (root / folder).rglob("*")
        if path.is_file()
        and path.suffix in {".py", ".md", ".json", ".proto", ".toml", ".yml", ".sh"}
        and sheet in path.read_text(errors="replace")
    ]
    citing += ["README.md"] if sheet in (root / "README.md").read_text() else []
    assert not citing, f"cite docs/protocols.md instead of {sheet} in: {citing}"
