"""Stream tickets: how a browser opens an event stream without putting a
long-lived token in a URL.

`EventSource` cannot send an `Authorization` header, and a token in a query
string ends up in proxy logs and browser history. So an authenticated
`POST /events/tickets` names one stream path and gets a ticket for it; the
browser then opens `GET <path>?ticket=<ticket>`. A ticket:

- acts as the token that asked for it (same id, same scopes, and it stops
  working if that token is revoked), only for the path it names;
- is used once: the first request that presents it consumes it, whatever
  the answer;
- lives `TICKET_TTL` seconds;
- is kept only as its SHA-256, in memory: tickets are short-lived by design,
  so a restart dropping them costs a client one more POST.

A reconnecting `EventSource` reuses its URL, so a client should fetch a new
ticket on `error` and pass `last_event_id` itself to resume.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, current_app
from pydantic import ConfigDict, Field, StrictStr, field_validator

from lnplugin.api import context
from lnplugin.api.auth import READ_SCOPES, current_token, has_scope, require_one_of
from lnplugin.api.errors import APIError
from lnplugin.api.schemas import HEX64, Body

bp = Blueprint("tickets", __name__)

TICKET_TTL = 60
TICKET_PREFIX = "lnpt_"
MAX_OUTSTANDING = 10_000  # a bound on memory; the oldest are dropped first


class TicketCreate(Body):
    """POST /events/tickets: the stream the ticket opens."""

    model_config = ConfigDict(extra="forbid")

    path: StrictStr = Field(
        max_length=200,
        description="`/events` or `/invoices/<payment_hash>/events`",
        examples=["/events"],
    )

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        if value == "/events":
            return value
        parts = value.split("/")
        if (
            len(parts) == 4
            and parts[0] == ""
            and parts[1] == "invoices"
            and HEX64.fullmatch(parts[2])
            and parts[3] == "events"
        ):
            return "/invoices/" + parts[2].lower() + "/events"
        raise ValueError("must be /events or /invoices/<payment_hash>/events")


@dataclass(frozen=True)
class _Ticket:
    token_id: int
    path: str
    expires_at: float


class TicketBook:
    """Outstanding tickets by SHA-256; thread-safe."""

    def __init__(self, ttl: float = TICKET_TTL) -> None:
        self.ttl = ttl
        self._tickets: dict[str, _Ticket] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _digest(ticket: str) -> str:
        return hashlib.sha256(ticket.encode("utf-8", "surrogatepass")).hexdigest()

    def issue(self, token_id: int, path: str) -> str:
        ticket = TICKET_PREFIX + secrets.token_urlsafe(24)
        now = time.monotonic()
        with self._lock:
            for key in [k for k, t in self._tickets.items() if t.expires_at <= now]:
                del self._tickets[key]
            while len(self._tickets) >= MAX_OUTSTANDING:
                del self._tickets[next(iter(self._tickets))]
            self._tickets[self._digest(ticket)] = _Ticket(token_id, path, now + self.ttl)
        return ticket

    def redeem(self, ticket: str, path: str) -> int | None:
        """The token id the ticket stands for, when it is live and for `path`;
        the ticket is consumed either way."""
        with self._lock:
            found = self._tickets.pop(self._digest(ticket), None)
        if found is None or found.expires_at <= time.monotonic():
            return None
        return found.token_id if found.path == path.lower() else None


def book() -> TicketBook:
    """The app's book; `auth.current_token` redeems from the same one."""
    return current_app.extensions["lnplugin_tickets"]


@bp.post("/events/tickets")
@require_one_of(*READ_SCOPES)
def create_ticket() -> Any:
    """The ticket opens the stream as its token would, so a token that could not
    open that stream gets no ticket for it either."""
    body = context.body_as(TicketCreate)
    token = current_token()
    if body.path != "/events" and not has_scope(token, "invoices:read"):
        raise APIError(403, "Token lacks scope: invoices:read")
    ticket = book().issue(token.id, body.path)
    return {
        "ticket": ticket,
        "path": body.path,
        "expires_in": book().ttl,
        "url": f"{body.path}?ticket={ticket}",
    }, 201
