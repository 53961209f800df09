"""The files an operator deploys from: docs, systemd units, LICENSE, CHANGELOG.

They are read by people, not run by the suite, so they rot quietly: a link
to a moved page, a unit systemd refuses, an install line for a package index
lnplugin is not on, a recipe that fishes the admin token out of a log. Each
test here catches one of those.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from lnplugin.run.cli import cli
from lnplugin.store.migrations import MIGRATIONS
from tests import e2e

ROOT = Path(__file__).resolve().parents[1]
UNITS = sorted((ROOT / "contrib" / "systemd").glob("*.service")) + sorted(
    (ROOT / "contrib" / "systemd").glob("*.timer")
)
DOCS = [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").glob("*.md"))]
OPERATOR_TEXTS = [*DOCS, *UNITS, ROOT / "contrib" / "cln" / "config.sample", ROOT / "Dockerfile"]


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to dashes."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)
    return {_slug(m) for m in re.findall(r"^#{1,6} (.+)$", text, flags=re.M)}


def _links(path: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)
    return [
        link
        for link in re.findall(r"\]\(([^)\s]+)\)", text)
        if not re.match(r"[a-z]+:", link)  # http:, https:, mailto:
    ]


@pytest.mark.parametrize("doc", DOCS, ids=[str(d.relative_to(ROOT)) for d in DOCS])
def test_every_relative_link_and_anchor_resolves(doc: Path) -> None:
    broken = []
    for link in _links(doc):
        target, _, anchor = link.partition("#")
        path = (doc.parent / target).resolve() if target else doc
        if not path.exists() or (anchor and path.suffix == ".md" and anchor not in _anchors(path)):
            broken.append(link)
    assert not broken, f"{doc.name}: {broken}"


def test_every_docs_page_is_linked_from_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    unlinked = [p.name for p in (ROOT / "docs").glob("*.md") if f"(docs/{p.name}" not in readme]
    assert not unlinked


@pytest.mark.parametrize("path", OPERATOR_TEXTS, ids=[p.name for p in OPERATOR_TEXTS])
def test_nothing_installs_lnplugin_from_a_package_index(path: Path) -> None:
    """lnplugin is not published: `pip install lnplugin` would fail (or install a
    stranger's package of that name)."""
    offending = [
        match.group(0)
        for match in re.finditer(
            r"(`?)pip install ((?:--\S+ )*)lnplugin(?![\w.*/-])", path.read_text()
        )
        if not match.group(1)  # `pip install lnplugin` quoted in prose, saying it fails
        and "--no-index" not in match.group(2)  # from local wheels only (the Dockerfile)
    ]
    assert not offending, f"{path.name}: {offending}"


@pytest.mark.parametrize("path", OPERATOR_TEXTS, ids=[p.name for p in OPERATOR_TEXTS])
def test_no_recipe_reads_a_token_from_a_log(path: Path) -> None:
    for line in path.read_text().splitlines():
        if "journalctl" in line or "docker logs" in line:
            assert "token" not in line.lower(), f"{path.name}: {line.strip()}"


@pytest.mark.parametrize(
    "path",
    [
        ROOT / "docs" / "deploy.md",
        ROOT / "docs" / "lnd.md",
        ROOT / "contrib" / "systemd" / "lnplugin-lnd.service",
    ],
    ids=lambda p: p.name,
)
def test_the_admin_token_is_created_before_the_first_start(path: Path) -> None:
    """A server that finds no admin token prints a new one on stdout, which a
    service manager logs; making it first with `token create` prevents that."""
    text = path.read_text()
    assert "lnplugin token create --scope admin" in text.replace("\\\n", "").replace("  ", " ")
    created = text.index("token create")
    started = text.index("enable --now lnplugin")
    assert created < started


def _shell_lines(path: Path) -> list[str]:
    """The command lines of a page's `sh` and plain code blocks, a line
    continued with a backslash joined to the next."""
    lines = []
    for block in re.findall(r"^```(sh)?\n(.*?)^```", path.read_text(), flags=re.S | re.M):
        lines.extend(block[1].replace("\\\n", " ").splitlines())
    return lines


SERVICE_DATA_DIR = "/var/lib/lnplugin"
LNPLUGIN_COMMAND = re.compile(
    rf"(?:^|[\s/])lnplugin (?:{'|'.join(map(re.escape, cli.commands))})\b"
)
AS_SERVICE = "sudo -u lnplugin "
CRON_D = re.compile(r"^[\d*][^ ]* \S+ \S+ \S+ \S+ (\S+) ")  # /etc/cron.d: the 6th field is the user


@pytest.mark.parametrize(
    "path",
    [ROOT / "docs" / p for p in ("deploy.md", "operations.md", "lnd.md")],
    ids=lambda p: p.name,
)
def test_recipes_on_the_services_data_dir_run_as_root_or_its_user(path: Path) -> None:
    """The deployed data dir is the `lnplugin` user's, mode 0700: a command
    an operator pastes as themselves cannot enter it (the restore recipe's
    `cd /var/lib/lnplugin` failed, and the `mv` and `install` after it then
    worked on whatever directory the shell was in, so the damaged store
    stayed), and one run as root from a crontab leaves root-owned files in it."""
    wrong = []
    for line in _shell_lines(path):
        line = line.strip()
        if SERVICE_DATA_DIR not in line or line.startswith("#") or "─" in line:
            continue
        cron = CRON_D.match(line)
        if cron:
            ok = cron.group(1) == "lnplugin"
        elif LNPLUGIN_COMMAND.search(line):
            # lnplugin itself, run as root there, is refused (root in another
            # user's data dir): only as the service user does the recipe work.
            ok = line.startswith(AS_SERVICE)
        else:
            ok = line.startswith("sudo ")
        if not ok:
            wrong.append(line)
    assert not wrong, f"{path.name}: {wrong}"


def test_the_units_pass_systemd_analyze_verify() -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    for unit in UNITS:
        proc = subprocess.run(
            [analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60
        )
        # The install paths (/opt/lnplugin/...) and users do not exist on a test machine.
        problems = [
            line
            for line in (proc.stdout + proc.stderr).splitlines()
            if line.strip() and "is not executable" not in line and "/opt/lnplugin" not in line
        ]
        assert not problems, f"{unit.name}: {problems}"


def test_the_backup_units_command_makes_a_backup(tmp_path: Path) -> None:
    """The ExecStart of lnplugin-backup.service, with systemd's escapes undone and
    its paths pointed at a temporary data dir, run by a real shell."""
    unit = (ROOT / "contrib" / "systemd" / "lnplugin-backup.service").read_text()
    (command,) = re.findall(r"^ExecStart=(.+)$", unit, flags=re.M)
    command = command.replace("$$", "$").replace("%%", "%")
    data, backups = tmp_path / "data", tmp_path / "backups"
    backups.mkdir()
    e2e.cli(data, "token", "create", "--scope", "admin")
    command = (
        command.replace("/opt/lnplugin/.venv/bin/lnplugin", f"{sys.executable} -m lnplugin")
        .replace("/var/lib/lnplugin", str(data))
        .replace("/var/backups/lnplugin", str(backups))
    )
    argv = command.split(" ", 2)
    assert argv[:2] == ["/bin/sh", "-c"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("LNPLUGIN_")}
    for _ in range(2):  # the second run replaces the day's file (--force)
        proc = subprocess.run(
            ["/bin/sh", "-c", argv[2].strip("'")], capture_output=True, text=True, env=env
        )
        assert proc.returncode == 0, proc.stderr
    (made,) = backups.iterdir()
    assert re.fullmatch(r"lnplugin-[1-7]\.sqlite", made.name)


def test_the_license_is_the_one_pyproject_declares() -> None:
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["license"]
    text = (ROOT / "LICENSE").read_text()
    assert declared == "MIT" and text.startswith("MIT License")
    assert "Permission is hereby granted, free of charge" in text


def test_the_changelog_names_every_migration() -> None:
    changelog = (ROOT / "CHANGELOG.md").read_text()
    missing = [
        f"{number}. {name}"
        for number, (name, _) in sorted(MIGRATIONS.items())
        if f"{number}. {name}" not in changelog
    ]
    assert not missing, f"add to CHANGELOG.md: {missing}"


# The newest migration each released version had; later ones are unreleased.
RELEASED_SCHEMA = {"0.1.0": 5}


def test_the_changelog_names_each_migration_under_the_version_that_added_it() -> None:
    """An operator upgrading from 0.1.0 reads which migrations the upgrade runs
    in the sections above 0.1.0's; listed under 0.1.0, they look already applied."""
    changelog = (ROOT / "CHANGELOG.md").read_text()
    sections = {part.split("\n", 1)[0].split()[0]: part for part in changelog.split("\n## ")[1:]}
    for number, (name, _) in sorted(MIGRATIONS.items()):
        version = next(
            (v for v, newest in sorted(RELEASED_SCHEMA.items()) if number <= newest),
            "Unreleased",
        )
        holders = [v for v, text in sections.items() if f"{number}. {name}" in text]
        assert holders == [version], f"migration {number} is listed under {holders}, not {version}"


def _section(text: str, heading: str) -> str:
    start = text.index(heading)
    end = text.find("\n## ", start + len(heading))
    return text[start : end if end != -1 else None]


def test_wheel_upgrades_and_rollbacks_force_the_reinstall() -> None:
    """Every build is the same version until a release, and pip skips a wheel
    of the installed version: an upgrade or rollback that says `pip install
    X.whl` leaves the old code running on the store."""
    sections = [
        _section((ROOT / "docs/operations.md").read_text(), "## Upgrade"),
        _section((ROOT / "docs/deploy.md").read_text(), "## 7. Upgrades"),
    ]
    installs = [
        " ".join(m.group(0).split())
        for text in sections
        for m in re.finditer(r"pip\s+install\s+[^`\n]*(?:\n[^`\n]*)?\.whl", text)
    ]
    assert installs, "the upgrade instructions name no wheel install"
    assert all("--force-reinstall" in cmd for cmd in installs), installs
