"""The README cannot drift from the code (as sqlite-utils' test_docs does).

Every CLI command, every setting (flag and environment variable) and every
HTTP route must appear in README.md, and every command must have help text.
"""

from __future__ import annotations

import contextlib
import importlib
import re
import shlex
import subprocess
from collections.abc import Iterator
from pathlib import Path

import click
import pytest

from lnplugin import lnurl
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
def test_every_setting_is_documented(setting) -> None:
    assert f"`{setting.flag}`" in README, f"{setting.flag} is missing from the README"
    assert f"`{setting.env}`" in README, f"{setting.env} is missing from the README"


def _normalise(route: str) -> str:
    return re.sub(r"<[^>]+>", "<>", route)


def test_every_route_is_documented(app) -> None:
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


ROOT = Path(__file__).resolve().parents[1]
ARCHITECTURE = (ROOT / "docs" / "architecture.md").read_text()
SOURCE = "\n".join(p.read_text() for p in sorted((ROOT / "lnplugin").rglob("*.py")))


def _defined(name: str) -> bool:
    """`name` is a function, class, attribute, field or table of lnplugin's."""
    patterns = (
        rf"\b(?:def|class)\s+{name}\b",
        rf"^\s*(?:self\.)?{name}\s*(?::[^=\n]+)?=",  # an attribute or a module constant
        rf"^\s+{name}\s*:",  # a dataclass field or a Protocol member
        rf"CREATE TABLE (?:IF NOT EXISTS )?{name}\b",
        rf"[\"']{name}[\"']",  # a protocol's name lnplugin uses, e.g. a NIP-47 notification
    )
    return any(re.search(p, SOURCE, re.MULTILINE) for p in patterns)


def test_the_architecture_map_names_only_files_that_exist() -> None:
    files = {str(p.relative_to(ROOT / "lnplugin")) for p in (ROOT / "lnplugin").rglob("*.py")}
    named = set(re.findall(r"`(?:lnplugin/)?([\w/]+\.py)`", ARCHITECTURE))
    named |= set(re.findall(r"^\s*(?:[│└┌├ ]*)([\w/]+\.py)", ARCHITECTURE, re.MULTILINE))
    missing = [n for n in sorted(named) if not any(f == n or f.endswith("/" + n) for f in files)]
    assert named and not missing, f"docs/architecture.md names files that do not exist: {missing}"


# Named by the map as what lnplugin does not use.
NAMED_FOR_CONTRAST = {"ThreadPoolExecutor"}


def test_the_architecture_map_names_only_code_that_exists() -> None:
    """Every `Class`, `function`, `Class.method` or `module.name` it names is defined."""
    names = re.findall(r"`([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)(?:\(\w*\))?`", ARCHITECTURE)
    code = [
        n
        for n in names
        if (n[0].isupper() or "_" in n or "." in n)
        and not n.endswith(".py")  # files: the test above
        and n not in NAMED_FOR_CONTRAST
    ]
    missing = sorted({n for n in code if not _defined(n.rsplit(".", 1)[-1])})
    assert code and not missing, f"docs/architecture.md names code that does not exist: {missing}"


def test_the_path_of_one_payment_takes_at_most_eight_files() -> None:
    section = ARCHITECTURE.split("## The path of one payment", 1)[1].split("\n## ", 1)[0]
    (count,) = re.findall(r"^ \((\d+) files\)", section, re.MULTILINE)
    steps = re.findall(r"^\d+\. `([\w/]+\.py)`", section, re.MULTILINE)
    assert len(steps) == int(count) <= 8, steps
    assert all((ROOT / step).is_file() for step in steps), steps


def test_the_architecture_map_names_every_part_of_the_service() -> None:
    """`Service`'s parts (its public fields) are the boxes of the map."""
    from dataclasses import fields

    from lnplugin.service import Service

    parts = [f.name for f in fields(Service) if not f.name.startswith("_")]
    paragraph = ARCHITECTURE.split("**service.py**", 1)[1].split("\n\n", 1)[0]
    missing = [p for p in parts if f"`{p}`" not in paragraph and p not in WITHOUT_A_BOX]
    assert not missing, f"docs/architecture.md's service.py paragraph does not name {missing}"


# Service fields that are bookkeeping, not parts.
WITHOUT_A_BOX = {"settings", "store", "node", "started_at", "status_key", "refused", "on_refused"}


def test_the_changelog_lists_every_store_migration_by_its_name() -> None:
    from lnplugin.store.migrations import MIGRATIONS

    changelog = (ROOT / "CHANGELOG.md").read_text()
    listed = {
        int(n): text
        for section in changelog.split("### Store migrations")[1:]
        for n, text in re.findall(r"^(\d+)\. (.+)$", section.split("\n## ", 1)[0], re.MULTILINE)
    }
    assert sorted(listed) == sorted(MIGRATIONS)
    wrong = {n: text for n, text in listed.items() if not text.startswith(MIGRATIONS[n][0])}
    assert not wrong, f"CHANGELOG.md names these migrations otherwise than the code: {wrong}"


# What `doctor` prints for a store that needs no migration, and what `backup`
# prints: output shown in the docs, which must show this lnplugin's schema.
_SHOWN_SCHEMA = re.compile(
    r"^(?:OK   store: .*\(mode 0\d+, schema version (\d+)\)"
    r"|# → Backed up .*\(schema version (\d+), )",
    re.MULTILINE,
)


def test_doctor_and_backup_output_in_the_docs_shows_the_latest_schema_version() -> None:
    """They showed schema version 25 after migrations 26 to 28 had been added."""
    from lnplugin.store.migrations import MIGRATIONS

    shown = {
        f"{page.relative_to(ROOT)}: {m.group(0)}": int(m.group(1) or m.group(2))
        for page in DOC_PAGES
        for m in _SHOWN_SCHEMA.finditer(page.read_text())
    }
    assert len(shown) >= 3, shown  # docs/lnd.md and docs/cln.md (doctor), operations.md (backup)
    stale = {line: n for line, n in shown.items() if n != max(MIGRATIONS)}
    assert not stale, f"the latest schema version is {max(MIGRATIONS)}: {stale}"


def test_the_docs_give_the_migration_that_added_public_ids() -> None:
    """docs/checkout.md says which migration gave every invoice its page id."""
    from lnplugin.store.migrations import MIGRATIONS

    checkout = (ROOT / "docs" / "checkout.md").read_text()
    (n,) = re.findall(r"Store migration (\d+) adds the column", checkout)
    assert "public id" in MIGRATIONS[int(n)][0]


def test_the_address_fields_table_names_every_payer_data_kind() -> None:
    """An operator reads which LUD-18 payer data an address can ask for from
    the README's table; a kind the API takes but the table leaves out is one
    nobody knows to ask for."""
    (row,) = [line for line in README.splitlines() if line.startswith("| `payer_data` |")]
    missing = [kind for kind in lnurl.PAYER_DATA_KINDS if f"`{kind}`" not in row]
    assert not missing, f"payer_data kinds missing from the README's address table: {missing}"


def test_every_documented_variable_is_one_lnplugin_or_its_tests_read() -> None:
    """The other way round from `test_every_setting_is_documented`: an
    `LNPLUGIN_*` name in the docs, the units or the Dockerfile that nothing
    reads is a setting the operator sets for nothing (lnplugin only warns
    about the names close to a real one). A name that is not a setting must
    be one the repository's tests or scripts read, or the misspelling the
    README shows being warned about."""
    from lnplugin.config import env_typos

    texts = [ROOT / "README.md", ROOT / "Dockerfile", *(ROOT / "docs").glob("*.md")]
    texts += [p for p in (ROOT / "contrib").rglob("*") if p.is_file() and p.suffix != ".json"]
    texts += [p for p in (ROOT / "regtest").rglob("*") if p.is_file()]
    named = {
        name
        for path in texts
        for name in re.findall(r"\bLNPLUGIN_[A-Z0-9_]*[A-Z0-9]\b", path.read_text(errors="replace"))
    }
    settings = {doc.env for doc in SETTINGS_DOCS}
    readers = [
        p
        for folder in ("tests", "regtest", "lnplugin_sim", ".ci")
        for p in (ROOT / folder).rglob("*")
        if p.is_file() and p.suffix in {"", ".py", ".sh", ".yml", ".yaml"}
    ]
    read = "\n".join(p.read_text(errors="replace") for p in readers)
    unread = [
        name
        for name in sorted(named - settings)
        if not re.search(rf"\b{name}\b", read) and not env_typos({name: "x"})
    ]
    assert not unread, f"documented but read by nothing: {unread}"


def test_the_checkout_guide_gives_the_per_client_stream_cap_the_code_has() -> None:
    # It said "shares those 8" after the cap went to 16.
    from lnplugin.api.checkout import STREAMS_PER_CLIENT

    text = " ".join((ROOT / "docs" / "checkout.md").read_text().split())
    said = re.findall(
        r"at most (\d+) of them open|\(limit (\d+)\)|shares those (\d+)|(\d+) per client", text
    )
    numbers = [int(n) for groups in said for n in groups if n]
    (nth,) = re.findall(r"The (\d+)th gets `503`", text)
    assert len(numbers) >= 3 and set(numbers) == {STREAMS_PER_CLIENT}, numbers
    assert int(nth) == STREAMS_PER_CLIENT + 1


def parse_command_line(words: list[str]) -> click.Command:
    """The command `lnplugin <words>` would run, parsed by click as it would be
    (unknown commands and options, missing or bad values fail); nothing runs."""
    command: click.Command = cli
    ctx = click.Context(cli, info_name="lnplugin")
    while isinstance(command, click.Group) and words and not words[0].startswith("-"):
        name, words = words[0], words[1:]
        sub = command.get_command(ctx, name)
        if sub is None:
            raise click.UsageError(f"No such command {name!r}")
        ctx = click.Context(sub, info_name=name, parent=ctx)
        command = sub
    with contextlib.suppress(click.exceptions.Exit):  # --help, --version
        command.make_context(ctx.info_name, list(words), parent=ctx.parent)
    return command


DOC_PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# `lnplugin` as a command: at the start, after `$(`, `&&`, `;`, `|`, `exec`,
# `sudo -u USER` or `docker exec NAME`, bare or by a path ending in bin/.
_INVOCATION = re.compile(
    r"(?:^|\$\(|&&|;|\||\bexec|docker exec \S+|sudo -u \S+)\s*(?:\S*/bin/)?lnplugin\s+(.*)"
)
# Where the shell takes over again: a pipe, a list, a redirection, a comment,
# the end of a command substitution.
_SHELL = re.compile(r"\s(?:\||&&|;|>|2>|#|<<)|\)")
# `make run ARGS="..."`: serve's flags.
_MAKE_RUN = re.compile(r'^make run ARGS="([^"]*)"')


def shell_lines(text: str, langs: tuple[str, ...]) -> Iterator[tuple[int, str]]:
    """The commands of the fenced blocks in `langs`, continuation lines
    (`\\`) joined: (first line number, command). In ```console blocks only
    the `$ ` lines are commands."""
    lang, joined, first = None, "", 0
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if stripped.startswith("```"):
            lang = None if lang is not None else (stripped[3:].split() or [""])[0]
            continue
        if lang not in langs:
            continue
        if lang == "console":
            if not stripped.startswith("$ "):
                continue
            stripped = stripped[2:]
        if not joined:
            first = number
        joined += stripped
        if joined.endswith("\\"):
            joined = joined[:-1] + " "
            continue
        yield first, joined
        joined = ""


def doc_command_lines(text: str) -> list[tuple[int, list[str]]]:
    """`lnplugin ...` command lines of the ```sh / ```console blocks: (line, words)."""
    found: list[tuple[int, list[str]]] = []
    for first, joined in shell_lines(text, ("sh", "console")):
        match = _INVOCATION.search(joined)
        if match:
            words = match.group(1)
            if joined[: match.start(1)].count("'") % 2:  # inside `sh -c '...'`
                words = words.split("'", 1)[0]
            found.append((first, shlex.split(_SHELL.split(words)[0])))
        elif make := _MAKE_RUN.match(joined):
            found.append((first, ["serve", *shlex.split(make.group(1))]))
    return found


# `python -m lnplugin_sim.<module> ...`: a simulator or relay run from the clone.
_SIMULATOR = re.compile(r"(?:^|\s)(?:\S*/)?python3? -m lnplugin_sim\.(\w+)\s+(.*)")


def doc_simulator_lines(text: str) -> list[tuple[int, str, list[str]]]:
    """`python -m lnplugin_sim.X ...` lines of the ```sh blocks: (line, module, words)."""
    found = []
    for first, joined in shell_lines(text, ("sh",)):
        if match := _SIMULATOR.search(joined):
            words = _SHELL.split(match.group(2))[0].removesuffix("&")
            found.append((first, match.group(1), shlex.split(words)))
    return found


SIMULATOR_COMMANDS = [
    (f"{page.relative_to(ROOT)}:{line}", module, words)
    for page in DOC_PAGES
    for line, module, words in doc_simulator_lines(page.read_text())
]


@pytest.mark.parametrize(
    "where,module,words", SIMULATOR_COMMANDS, ids=[w for w, _, _ in SIMULATOR_COMMANDS]
)
def test_every_simulator_command_line_in_the_docs_parses(
    where: str, module: str, words: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """The simulators' and relay's command lines the docs give to try lnplugin
    without a node are ones their argument parsers take."""
    simulator = importlib.import_module(f"lnplugin_sim.{module}")
    try:
        simulator.parser().parse_args(words)
    except SystemExit:
        pytest.fail(f"{where}: python -m lnplugin_sim.{module}: {capsys.readouterr().err}")


def test_the_docs_show_how_to_run_each_simulator() -> None:
    assert {m for _, m, _ in SIMULATOR_COMMANDS} >= {"cln_sim", "lnd_sim", "nostr_relay"}


DOC_COMMANDS = [
    (f"{page.relative_to(ROOT)}:{line}", words)
    for page in DOC_PAGES
    for line, words in doc_command_lines(page.read_text())
]


def test_the_docs_show_many_lnplugin_command_lines() -> None:
    """So that the test below cannot pass by finding none."""
    assert len(DOC_COMMANDS) >= 40, len(DOC_COMMANDS)


@pytest.mark.parametrize("where,words", DOC_COMMANDS, ids=[w for w, _ in DOC_COMMANDS])
def test_every_lnplugin_command_line_in_the_docs_parses(where: str, words: list[str]) -> None:
    """A command pasted from the README or a docs/ page is not refused by the
    CLI for an option or command it does not have, or a value it cannot take."""
    try:
        parse_command_line(words)
    except click.ClickException as error:
        pytest.fail(f"{where}: lnplugin {shlex.join(words)}: {error.format_message()}")


def _leaves(group: click.Group, prefix: str = "lnplugin") -> list[tuple[str, click.Command]]:
    return [
        leaf
        for path, command in _commands(group, prefix)
        if not isinstance(command, click.Group)
        for leaf in [(path, command)]
    ]


# Options every store command has; a command with nothing else needs no example.
_PLAIN = {"config", "data_dir", "help"}
NEEDS_AN_EXAMPLE = [
    (path, command) for path, command in _leaves(cli) if {p.name for p in command.params} - _PLAIN
]


@pytest.mark.parametrize("path,command", NEEDS_AN_EXAMPLE, ids=[p for p, _ in NEEDS_AN_EXAMPLE])
def test_each_command_with_options_shows_examples_that_parse(
    path: str, command: click.Command
) -> None:
    ctx = click.Context(command, info_name=path)
    text = command.get_help(ctx)
    assert "  Examples:\n" in text, f"`{path} --help` shows no example"
    examples = [
        _SHELL.split(line.strip())[0].strip()
        for line in text.split("  Examples:\n", 1)[1].splitlines()
        if line.strip().startswith("lnplugin ")
    ]
    assert examples, f"`{path} --help` has an Examples: heading but no example"
    for example in examples:
        assert example.startswith(path + " ") or example == path, example
        try:
            parsed = parse_command_line(shlex.split(example)[1:])
        except click.ClickException as error:
            pytest.fail(f"`{path} --help` example {example!r}: {error.format_message()}")
        assert parsed is command, example


def _readme_field_helper() -> str:
    [line] = [ln for ln in README.splitlines() if ln.startswith("field() {")]
    return line


@pytest.mark.parametrize(
    ("answer", "printed", "said"),
    [
        ('{"payment_hash": "ab12", "amount": 21}', "ab12\n", ""),
        # The first mistake of the walk-through: TOKEN left as `lnp_...`.
        ('{"code": 401, "error": true, "message": "Invalid or revoked token"}', "", "Invalid"),
        ("", "", "no payment_hash"),  # nothing answered: lnplugin is not running
    ],
    ids=["a field", "an error answer", "no answer"],
)
def test_the_walkthroughs_field_helper_says_what_came_back_instead(
    answer: str, printed: str, said: str
) -> None:
    """Not a Python traceback (KeyError, JSONDecodeError): one line with the
    answer that has no such field, so the reader sees the lnplugin error."""
    script = f"{_readme_field_helper()}\nfield payment_hash"
    out = subprocess.run(["bash", "-c", script], input=answer, capture_output=True, text=True)
    assert out.stdout == printed
    assert "Traceback" not in out.stderr
    if said:
        assert out.returncode != 0
        assert len(out.stderr.splitlines()) == 1 and said in out.stderr, out.stderr
    else:
        assert out.returncode == 0 and out.stderr == ""
