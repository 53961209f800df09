"""Shared fixtures: a real service on a temporary data dir with the dev node.

The API tests use Flask's test client against a fully assembled service
(real store, real dev node, real follower thread); nothing of ours is mocked.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import settings as hypothesis_settings

from lnplugin.api import create_app
from lnplugin.config import load_settings
from lnplugin.service import Service
from lnplugin.store import tokens

# A test run started by a systemd unit inherits JOURNAL_STREAM, which turns
# off `serve`'s bootstrap token (lnplugin.run.server.bootstrap_wanted); the
# servers the tests start read their token from that banner.
os.environ.pop("JOURNAL_STREAM", None)

# Hypothesis fails an example that takes over 200 ms by default: a timing
# assertion, which a busy 2-core CI host trips on tests that are correct
# (test_lnurl's round trip did, at 362 ms). Off for every test; the
# example counts stay as each test sets them.
hypothesis_settings.register_profile("lnplugin", deadline=None)
hypothesis_settings.load_profile("lnplugin")


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def service(data_dir: Path) -> Iterator[Service]:
    # Per-token limits have their own tests (test_token_limits.py); here one
    # token makes as many requests as a test (or hypothesis) needs.
    settings = load_settings(
        {"data_dir": str(data_dir), "token_rate_limit": "1000000/minute"}, environ={}
    )
    svc = Service.build(settings)
    svc.start()
    yield svc
    svc.stop()


@pytest.fixture
def app(service: Service):
    app = create_app(service)
    app.testing = True
    return app


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def make_token(service: Service) -> Callable[..., str]:
    def make(*scopes: str) -> str:
        with service.store.transaction() as tx:
            _, token = tokens.create(tx, list(scopes))
        return token

    return make


@pytest.fixture
def admin(make_token: Callable[..., str]) -> dict[str, str]:
    """Headers carrying an admin token."""
    return {"Authorization": f"Bearer {make_token('admin')}"}
