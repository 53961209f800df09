#!/usr/bin/env python3
"""Draw the README's picture of the checkout page (docs/img/checkout.png).

    .venv/bin/python contrib/checkout_screenshot.py [OUTPUT] [--chromium PATH] [--chromedriver PATH]

It starts a real `lnplugin serve` on the embedded dev node in a temporary
data dir, makes a EUR-priced invoice with two line items through the API,
opens its `checkout_url` in headless Chromium at a phone's size, waits for
the page's script to run, and saves the picture of the page's `main`
element to OUTPUT (default docs/img/checkout.png). Then it prints what the
page showed.

The exchange rate comes from a small HTTP server on 127.0.0.1 answering as a
ticker API does (EUR at 100,000 a bitcoin), so the picture does not change
with the market, and nothing leaves the machine. Needs Debian's `chromium`
and `chromium-driver` and selenium (in the `test` extra).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import requests
from selenium import webdriver
from selenium.webdriver.chrome.service import Service as ChromeService
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

ROOT = Path(__file__).resolve().parents[1]
RATE = "100000"  # EUR per BTC: 8.20 EUR is 8,200 sats
INVOICE = {
    "currency": "EUR",
    "description": "Café Lumen, table 4",
    "items": [
        {"description": "Espresso doppio", "unit_price": 250, "quantity": 2},
        {"description": "Croissant", "unit_price": 320},
    ],
}
PHONE = "--window-size=412,1100"  # a phone's width; tall enough for the whole page
WAIT = 30.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def _rates() -> Iterator[str]:
    """A local ticker API; yields the `--fiat-provider` value for it."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps({"rate": RATE}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"local=http://127.0.0.1:{httpd.server_address[1]}/{{currency}}|rate"
    finally:
        httpd.shutdown()
        httpd.server_close()


def _lnplugin(*args: str) -> list[str]:
    return [sys.executable, "-m", "lnplugin", *args]


@contextmanager
def _server(data_dir: Path, provider: str) -> Iterator[tuple[str, str]]:
    """`lnplugin serve` on the dev node; yields its URL and an admin token."""
    env = {**os.environ, "LNPLUGIN_LOG_LEVEL": "warning"}
    made = subprocess.run(
        _lnplugin("token", "create", "--scope", "admin", "--data-dir", str(data_dir)),
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    token = made.stdout.strip().splitlines()[-1]
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    serve = _lnplugin(
        "serve",
        "--data-dir",
        str(data_dir),
        "--port",
        str(port),
        "--public-url",
        url,
        "--fiat-provider",
        provider,
        "--fiat-allow",
        "127.0.0.1/32",
    )
    proc = subprocess.Popen(serve, stdout=subprocess.DEVNULL, env=env)
    try:
        deadline = time.monotonic() + WAIT
        while True:
            try:
                if requests.get(url + "/health", timeout=1).ok:
                    break
            except requests.RequestException:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"lnplugin serve did not come up (exit status {proc.poll()})")
            time.sleep(0.1)
        yield url, token
    finally:
        proc.terminate()
        proc.wait(20)


def _browser(chromium: str, chromedriver: str) -> Any:
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        PHONE,
        "--hide-scrollbars",
        "--force-device-scale-factor=1",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
    ):
        options.add_argument(arg)
    return webdriver.Chrome(options=options, service=ChromeService(executable_path=chromedriver))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("output", nargs="?", default=str(ROOT / "docs" / "img" / "checkout.png"))
    parser.add_argument("--chromium", default=shutil.which("chromium") or "chromium")
    parser.add_argument("--chromedriver", default=shutil.which("chromedriver") or "chromedriver")
    args = parser.parse_args()
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    with (
        tempfile.TemporaryDirectory() as tmp,
        _rates() as provider,
        _server(Path(tmp) / "data", provider) as (url, token),
    ):
        reply = requests.post(
            url + "/invoices",
            json=INVOICE,
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )
        reply.raise_for_status()
        driver = _browser(args.chromium, args.chromedriver)
        try:
            driver.get(reply.json()["checkout_url"])
            WebDriverWait(driver, WAIT).until(
                lambda d: d.find_element(By.ID, "copy").is_displayed(), "the page's script"
            )
            driver.find_element(By.TAG_NAME, "main").screenshot(str(out))
            shown = [driver.find_element(By.ID, i).text for i in ("amount", "fiat")]
            lines = len(driver.find_elements(By.CSS_SELECTOR, "#items tbody tr"))
        finally:
            driver.quit()
    print(f"wrote {out}: {shown[0]}, {shown[1]}, {lines} line items")


if __name__ == "__main__":
    main()
