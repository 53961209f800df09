#!/usr/bin/env python3
"""Send an rss::payment boost to a Lightning Address, as a podcast app does.

    python contrib/rss_payment_sender.py podcast@127.0.0.1:8080 --amount-msat 21000 \\
        --message "Great episode!" --sender-name oscar --dev-pay "$LN" --token "$TOKEN"

Why a script: a boost to a Lightning Address carries only a short LUD-12
comment, `rss::payment::<action> <url> <message>`; the full record is the
`x-rss-payment` header that `<url>` answers with (Podcasting 2.0, "RSS
Payment Metadata"). To see lnplugin turn that into a boostagram you need
both halves, so this script plays the app: it serves the header on a local
port (the app's payment page), asks the address for an invoice with that
comment (LUD-16, LUD-06), and pays it. Standard library only.

With `--dev-pay URL --token TOKEN` it pays through a dev-node lnplugin
(`POST /dev/pay`) and waits until that lnplugin has filled the invoice's
boostagram, then prints the invoice. Without it, it prints the BOLT11
invoice for any wallet to pay and keeps serving the header until the
receiver has fetched it (or `--wait` seconds pass).
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

LOCAL_HOSTS = ("localhost", "127.0.0.1", "[::1]")


def well_known(address: str, scheme: str | None) -> str:
    """LUD-16: `user@domain` -> `https://domain/.well-known/lnurlp/user` (http
    for a local domain, so a receiver on this machine can be tried)."""
    user, _, domain = address.partition("@")
    if not user or not domain:
        raise SystemExit(f"{address!r} is not a Lightning Address such as podcast@pay.example.com")
    scheme = scheme or ("http" if domain.split(":")[0] in LOCAL_HOSTS else "https")
    return f"{scheme}://{domain}/.well-known/lnurlp/{urllib.parse.quote(user)}"


def get_json(url: str, headers: dict[str, str] | None = None, body: Any = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=15) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:  # LUD-06 errors come with a 4xx and a JSON body
        try:
            return json.loads(exc.read())
        except ValueError:
            raise SystemExit(f"{url.split('?')[0]} answered HTTP {exc.code}") from None
    except (urllib.error.URLError, OSError) as exc:  # nothing listening, no such host
        reason = getattr(exc, "reason", exc)
        raise SystemExit(f"cannot reach {url.split('?')[0]}: {reason}") from None


class PaymentPage:
    """The app's payment page: answers every GET with the `x-rss-payment` header."""

    def __init__(self, host: str, port: int, record: dict[str, Any]) -> None:
        header = urllib.parse.quote(json.dumps(record, separators=(",", ":")))
        self.fetched = threading.Event()
        page = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = f"<html><body>{record.get('item_title', 'Episode')}</body></html>".encode()
                self.send_response(200)
                self.send_header("x-rss-payment", header)
                self.send_header("content-type", "text/html; charset=utf-8")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                page.fetched.set()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, host: str, payment_id: str) -> str:
        return f"http://{host}:{self.server.server_port}/payment?payment={payment_id}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("address", help="the receiver's Lightning Address, user@domain")
    parser.add_argument("--amount-msat", type=int, default=21_000)
    parser.add_argument("--action", default="boost", help="boost, stream or auto")
    parser.add_argument("--message", default="")
    parser.add_argument("--sender-name", default="")
    parser.add_argument("--app-name", default="rss_payment_sender")
    parser.add_argument("--feed-title", default="My Pod")
    parser.add_argument("--feed-guid", default="917393e3-1b1e-5cef-ace4-edaa54e1f810")
    parser.add_argument("--item-title", default="Episode 1")
    parser.add_argument("--item-guid", default="my-pod-episode-1")
    parser.add_argument("--position", type=int, default=0, help="playback position, seconds")
    parser.add_argument("--listen", default="127.0.0.1", help="address the page listens on")
    parser.add_argument("--page-host", help="host in the page URL [default: --listen]")
    parser.add_argument("--port", type=int, default=0, help="the page's port [default: any]")
    parser.add_argument("--scheme", choices=("http", "https"), help="for the LUD-16 lookup")
    parser.add_argument("--dev-pay", metavar="URL", help="pay through this dev-node lnplugin")
    parser.add_argument("--token", help="an admin token for --dev-pay")
    parser.add_argument("--wait", type=float, default=60.0, help="seconds to wait at most")
    args = parser.parse_args(argv)
    if args.dev_pay and not args.token:
        parser.error("--dev-pay needs --token")

    payment_id = secrets.token_urlsafe(12)
    record = {
        "id": payment_id,
        "action": args.action,
        "split": 1.0,
        "message": args.message,
        "app_name": args.app_name,
        "sender_name": args.sender_name,
        "recipient_address": args.address,
        "value_msat": args.amount_msat,
        "value_msat_total": args.amount_msat,
        "timestamp": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "position": args.position,
        "feed_guid": args.feed_guid,
        "feed_title": args.feed_title,
        "item_guid": args.item_guid,
        "item_title": args.item_title,
    }
    page = PaymentPage(args.listen, args.port, record)
    try:
        pay_request = get_json(well_known(args.address, args.scheme))
        if pay_request.get("status") == "ERROR":
            raise SystemExit(f"the address answered: {pay_request.get('reason')}")
        url = page.url(args.page_host or args.listen, payment_id)
        comment = f"rss::payment::{args.action} {url} {args.message}".strip()
        comment = comment[: int(pay_request.get("commentAllowed") or 0)]
        if not comment.startswith(f"rss::payment::{args.action} {url}"):
            raise SystemExit("the address allows too short a comment for an rss::payment URL")
        query = urllib.parse.urlencode({"amount": args.amount_msat, "comment": comment})
        callback = pay_request["callback"]
        invoice = get_json(callback + ("&" if "?" in callback else "?") + query)
        if invoice.get("status") == "ERROR":
            raise SystemExit(f"the callback answered: {invoice.get('reason')}")
        if not args.dev_pay:
            print(invoice["pr"], flush=True)
            if not page.fetched.wait(args.wait):
                print("the receiver did not fetch the payment page", file=sys.stderr)
                return 1
            return 0
        auth = {"Authorization": f"Bearer {args.token}", "content-type": "application/json"}
        base = args.dev_pay.rstrip("/")
        paid = get_json(f"{base}/dev/pay", auth, {"payment_request": invoice["pr"]})
        if "payment_hash" not in paid:  # lnplugin's error: a bad --token, not the dev node
            raise SystemExit(f"{base}/dev/pay answered: {paid.get('message', paid)}")
        deadline = time.monotonic() + args.wait
        while time.monotonic() < deadline:
            stored = get_json(f"{base}/invoices/{paid['payment_hash']}", auth)
            if stored.get("boostagram"):
                print(json.dumps(stored, indent=2))
                return 0
            time.sleep(0.2)
        print("no boostagram yet: is --rss-payment-domain set on the receiver?", file=sys.stderr)
        return 1
    finally:
        page.close()


if __name__ == "__main__":
    sys.exit(main())
