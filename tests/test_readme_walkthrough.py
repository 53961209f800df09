"""The README's walk-through works when pasted in order, and prints what it shows.

The blocks fenced as ```` ```sh walkthrough ```` are run the way a reader runs
them: one bash session, in a directory with the `.venv` that `make run`
makes, against a real `lnplugin serve` on the dev node, with `$LN` and
`$TOKEN` exported from what serve printed (the README's `export` line with
the printed values put in) and `LNPLUGIN_DATA_DIR` exported as the README says
to when serve has a data directory of its own. The commands are real curl and
the real CLI.

Each command must exit 0 (a bounded stream, `curl --max-time`, exits 28) and
print what the `# →` comment lines below it show; a command with none must
print nothing. The comment is matched loosely enough to be honest about
values that change from run to run:

- JSON (starts with `{` or `[`): every key shown has that value (`...` stands
  for keys not shown, a string `"…"` for any value, `"abc…"` for a prefix);
  a list has exactly the items shown, in order.
- Text: the lines shown appear in that order (`...` alone skips lines, a line
  ending in `...` is a prefix).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests import e2e

ROOT = Path(__file__).parent.parent
README = (ROOT / "README.md").read_text()
EXPORT_SHOWN = "export LN=http://127.0.0.1:8080 TOKEN=lnp_..."
BOUNDED_EXIT = 28  # curl: --max-time reached, the documented end of a bounded stream
MARK = "@@walkthrough"
SCRIPT_TIMEOUT = 120  # seconds: a liveness bound so a hung command fails the test


@dataclass
class Command:
    text: str
    expected: str | None
    line: int  # in README.md, for failure messages
    output: str = ""
    rc: int | None = None
    extra: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return f"README.md:{self.line}: {self.text.splitlines()[0]}"


def walkthrough_blocks(readme: str, tag: str = "walkthrough") -> list[tuple[int, list[str]]]:
    """The ```sh <tag> blocks: (line number of their first line, lines)."""
    blocks = []
    lines = readme.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].strip() == f"```sh {tag}":
            start = i + 1
            i += 1
            while lines[i].strip() != "```":
                i += 1
            blocks.append((start + 1, lines[start:i]))
        i += 1
    return blocks


def parse_commands(readme: str, tag: str = "walkthrough") -> list[Command]:
    """Commands (backslash continuations joined) with the `# →` output under each."""
    commands: list[Command] = []
    for first, lines in walkthrough_blocks(readme, tag):
        i = 0
        while i < len(lines):
            line = lines[i]
            if not line.strip() or line.lstrip().startswith("#"):
                i += 1
                continue
            start = i
            text = [line]
            while text[-1].endswith("\\"):
                i += 1
                text.append(lines[i])
            i += 1
            expected = None
            if i < len(lines) and lines[i].startswith("# → "):
                shown = [lines[i][len("# → ") :]]
                i += 1
                while i < len(lines) and lines[i].startswith("#   "):
                    shown.append(lines[i][1:].strip())
                    i += 1
                expected = "\n".join(shown)
            commands.append(Command("\n".join(text), expected, first + start))
    return commands


COMMANDS = parse_commands(README)


def script(commands: list[Command], url: str, token: str) -> str:
    """One bash script: each command between markers carrying its exit code."""
    parts = ["exec 2>&1"]
    for n, command in enumerate(commands):
        text = command.text
        if text.startswith("export LN="):
            assert text == EXPORT_SHOWN, f"{command}: the export line changed; update the test"
            text = f"export LN={shlex.quote(url)} TOKEN={shlex.quote(token)}"
        parts.append(f"printf '\\n{MARK} begin {n}\\n'")
        parts.append(text)
        parts.append(f"printf '\\n{MARK} end {n} %d\\n' $?")
    return "\n".join(parts) + "\n"


def run_walkthrough(
    tmp: Path, commands: list[Command] | None = None, server_args: tuple[str, ...] = ()
) -> list[Command]:
    """Serve on the dev node (with `server_args`), then run every walk-through
    command (or `commands`) in one bash."""
    if shutil.which("curl") is None:
        pytest.fail("curl is needed: the README's walk-through uses it")
    venv = Path(sys.prefix)
    if not (venv / "bin" / "activate").exists():
        pytest.skip("the walk-through activates a virtualenv; these tests do not run in one")
    clone = tmp / "clone"
    clone.mkdir()
    (clone / ".venv").symlink_to(venv)  # where `make run` puts it
    (clone / "contrib").symlink_to(ROOT / "contrib")  # scripts the README runs, as in a checkout
    data_dir = tmp / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("LNPLUGIN_")}
    env.pop("VIRTUAL_ENV", None)
    env["HOME"] = str(tmp)  # nothing reaches the real ~/.lnplugin
    env["LNPLUGIN_DATA_DIR"] = str(data_dir)  # as the README says for a data dir of one's own
    commands = [Command(c.text, c.expected, c.line) for c in commands or COMMANDS]
    with e2e.Server(data_dir, *server_args, env=env) as server:
        assert server.token, "serve printed no admin token on a fresh data dir"
        proc = subprocess.run(
            ["bash", "-c", script(commands, server.url, server.token)],
            cwd=clone,
            env=env,
            capture_output=True,
            text=True,
            timeout=SCRIPT_TIMEOUT,
        )
    current: Command | None = None
    for line in proc.stdout.splitlines():
        if line.startswith(f"{MARK} begin "):
            current = commands[int(line.split()[2])]
        elif line.startswith(f"{MARK} end "):
            _, _, n, rc = line.split()
            commands[int(n)].rc = int(rc)
            current = None
        elif current is not None:
            current.extra.append(line)
    for command in commands:
        command.output = "\n".join(command.extra).strip("\n")
    return commands


@pytest.fixture(scope="module")
def walked(tmp_path_factory: pytest.TempPathFactory) -> list[Command]:
    return run_walkthrough(tmp_path_factory.mktemp("walkthrough"))


def test_the_walkthrough_is_marked() -> None:
    assert COMMANDS, "README.md has no ```sh walkthrough blocks"
    assert COMMANDS[0].text == ". .venv/bin/activate"
    assert sum(c.text.startswith("export LN=") for c in COMMANDS) == 1


@pytest.mark.parametrize("n", range(len(COMMANDS)), ids=[str(c) for c in COMMANDS])
def test_each_command_works_and_prints_what_the_readme_shows(walked: list[Command], n: int) -> None:
    command = walked[n]
    assert command.rc is not None, f"{command} never finished (an earlier command hung?)"
    allowed = {0, BOUNDED_EXIT} if "--max-time" in command.text else {0}
    assert command.rc in allowed, f"{command} exited {command.rc}:\n{command.output}"
    if command.expected is None:
        assert command.output == "", f"{command} printed output the README does not show"
    elif command.expected.startswith(("{", "[")):
        shown = json.loads(re.sub(r",?\s*\.\.\.", "", command.expected))
        try:
            got = json.loads(command.output)
        except ValueError:
            pytest.fail(f"{command} printed no JSON:\n{command.output}")
        problem = mismatch(shown, got, "")
        assert problem is None, f"{command}: {problem}\ngot: {command.output}"
    else:
        problem = lines_mismatch(command.expected.splitlines(), command.output.splitlines())
        assert problem is None, f"{command}: {problem}\ngot:\n{command.output}"


def mismatch(shown: Any, got: Any, where: str) -> str | None:
    """Why `got` is not what the README shows, or None."""
    if isinstance(shown, dict):
        if not isinstance(got, dict):
            return f"{where or 'answer'}: expected an object, got {got!r}"
        for key, value in shown.items():
            if key not in got:
                return f"{where}.{key} is missing"
            problem = mismatch(value, got[key], f"{where}.{key}")
            if problem:
                return problem
        return None
    if isinstance(shown, list):
        if not isinstance(got, list) or len(got) != len(shown):
            return f"{where or 'answer'}: expected {len(shown)} items, got {got!r}"
        for i, (s, g) in enumerate(zip(shown, got, strict=True)):
            problem = mismatch(s, g, f"{where}[{i}]")
            if problem:
                return problem
        return None
    if isinstance(shown, str) and shown.endswith("…"):
        ok = isinstance(got, str) and got.startswith(shown[:-1])
    else:
        ok = shown == got and type(shown) is type(got)
    return None if ok else f"{where} is {got!r}, the README shows {shown!r}"


def lines_mismatch(shown: list[str], got: list[str]) -> str | None:
    """The first shown line not found (in order) in `got`, or None."""
    at = 0
    for line in shown:
        if line == "...":
            continue
        prefix = line.endswith("...")
        want = line[:-3] if prefix else line
        while at < len(got) and not (got[at].startswith(want) if prefix else got[at] == want):
            at += 1
        if at == len(got):
            return f"line {line!r} is not printed (in this order)"
        at += 1
    return None


def test_bracketed_urls_are_not_globbed() -> None:
    """curl reads `[...]` in a URL as a glob range (`bad range in URL`) unless given -g."""
    unglobbed = [
        line
        for line in README.splitlines()
        if re.match(r"\s*curl ", line)
        and re.search(r"\?[^ ]*\[", line)
        and not re.search(r"\s-[a-zA-Z]*g|--globoff", line)
    ]
    assert not unglobbed, f"curl commands with brackets but without -g: {unglobbed}"


def test_make_run_passes_the_readmes_settings_to_serve() -> None:
    """`make run ARGS=...` as the README shows it reaches `lnplugin serve` (dry run)."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    shown = [line for line in README.splitlines() if line.startswith("make run ARGS=")]
    assert shown, "the README shows no `make run ARGS=...`"
    for line in shown:
        args = shlex.split(line)[2:]
        proc = subprocess.run(
            ["make", "-n", "-C", str(ROOT), "run", *args],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert proc.returncode == 0, proc.stderr
        flags = shlex.split(line)[2].partition("=")[2]
        assert f"lnplugin serve {flags}" in proc.stdout, proc.stdout
