"""The checkout page in headless Chromium (Debian's `chromium` and
`chromium-driver`, driven by selenium; nothing is downloaded at test time),
against `lnplugin serve` on the dev node.

It renders the QR code and the amount; a fiat-priced invoice shows its
price and its line items, also with JavaScript off, and a BTC invoice its
display-currency amount; `lnplugin dev pay` turns it paid without a reload;
an expired invoice shows expired; the Lightning Address form mints and lands
on the invoice's page; no request leaves the server's origin (read from
Chromium's own network log), with no Content-Security-Policy violation in
the console; and contrib/checkout_screenshot.py makes the README's picture.

The server's rate provider is a local ticker (USD at 100,000 and EUR at
90,000 a bitcoin), and its display currency is EUR.

Without Chromium these tests skip, unless LNPLUGIN_REQUIRE_BROWSER=1 (set by
.ci/run, which installs it), which turns the skip into a failure.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from lnplugin.api import checkout
from tests.e2e import WAIT, Server, cli, wait_for
from tests.helpers_tickers import Ticker
from tests.helpers_webhooks import free_port

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.chrome.service import Service as ChromeService  # noqa: E402
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

REQUIRE = os.environ.get("LNPLUGIN_REQUIRE_BROWSER") == "1"


def _binaries() -> tuple[str, str] | None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    found = _binaries()
    if found is None:
        why = "no chromium and chromedriver (apt-get install chromium chromium-driver)"
        if REQUIRE:
            pytest.fail(f"LNPLUGIN_REQUIRE_BROWSER=1 but {why}")
        pytest.skip(why)
    options = webdriver.ChromeOptions()
    options.binary_location = found[0]
    for arg in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=412,915",  # a phone
        "--hide-scrollbars",
        "--force-device-scale-factor=1",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=ChromeService(executable_path=found[1]))
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def ticker() -> Iterator[Ticker]:
    rates = Ticker({"usd": {"rate": "100000"}, "eur": {"rate": "90000"}})
    yield rates
    rates.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, ticker: Ticker) -> Iterator[Server]:
    port = free_port()
    data = tmp_path_factory.mktemp("checkout-browser") / "data"
    args = ("--public-url", f"http://127.0.0.1:{port}", "--port", str(port))
    fiat = ("--fiat-provider", ticker.provider("local"), "--fiat-allow", "127.0.0.1/32")
    with Server(
        data, *args, *fiat, "--display-currency", "EUR", "--rate-limit", "1000/minute"
    ) as srv:
        yield srv


def _invoice(server: Server, **body: Any) -> dict[str, Any]:
    reply = server.request("POST", "/invoices", json=body)
    assert reply.status_code == 201, reply.text
    return dict(reply.json())


def _text(driver: Any, element_id: str) -> str:
    return str(driver.find_element(By.ID, element_id).text)


def _until(driver: Any, check: Any, what: str) -> None:
    """Wait for the page to get somewhere (a liveness bound, not a timing test)."""
    WebDriverWait(driver, WAIT).until(lambda d: check(d), message=what)


def test_it_renders_the_qr_code_and_the_amount(browser: Any, server: Server) -> None:
    inv = _invoice(server, amount=2100, description="Two coffees")
    browser.get(inv["checkout_url"])
    assert _text(browser, "amount") == "2,100 sats"
    assert _text(browser, "fiat") == "\u2248 1.89 EUR"  # 2,100 sats at 90,000 EUR, at creation
    assert _text(browser, "description") == "Two coffees"
    assert browser.find_elements(By.ID, "items") == []
    assert _text(browser, "status") == "Waiting for payment"
    qr = browser.find_element(By.CSS_SELECTOR, "#qr svg")
    assert qr.is_displayed()
    assert qr.size["width"] >= 200 and qr.size["width"] == qr.size["height"]
    # The script ran: the copy button shows, the no-JS refresh link does not,
    # and the countdown counts (h:mm:ss, under a day).
    assert browser.find_element(By.ID, "copy").is_displayed()
    assert not browser.find_element(By.ID, "refresh").is_displayed()
    _until(browser, lambda d: _text(d, "countdown").startswith("23:59:"), "the countdown")
    open_link = browser.find_element(By.ID, "open").get_attribute("href")
    assert open_link == "lightning:" + inv["payment_request"]


ITEMS = [
    {"description": "Espresso <b>doppio</b>", "unit_price": 250, "quantity": 2},
    {"description": "Croissant", "unit_price": 320},
]
PRIVATE = {"metadata": {"order": "s3cret-order"}, "payer_name": "Ann Payer", "comment": "hush"}


def _rows(driver: Any) -> list[list[str]]:
    return [
        [str(cell.text) for cell in row.find_elements(By.TAG_NAME, "td")]
        for row in driver.find_elements(By.CSS_SELECTOR, "#items tbody tr")
    ]


def _shows_price_and_items(driver: Any) -> None:
    assert _text(driver, "amount") == "8,200 sats"  # $8.20 at $100,000
    assert _text(driver, "fiat") == "8.20 USD"  # the price itself, not the EUR display
    assert _rows(driver) == [
        ["Espresso <b>doppio</b>", "2", "2.50 USD", "5.00 USD"],  # shown as text
        ["Croissant", "1", "3.20 USD", "3.20 USD"],
    ]
    assert _text(driver, "items-total") == "8.20 USD"
    # One column on a phone: the table fits, nothing scrolls sideways.
    assert driver.execute_script(
        "return document.documentElement.scrollWidth <= window.innerWidth;"
    )
    source = driver.page_source
    for secret in ("s3cret-order", "Ann Payer", "hush"):
        assert secret not in source


def test_a_fiat_priced_invoice_shows_its_price_and_line_items(browser: Any, server: Server) -> None:
    inv = _invoice(server, currency="USD", items=ITEMS, description="Caf\u00e9 Lumen", **PRIVATE)
    assert inv["amount_msat"] == 8_200_000 and inv["price"]["amount"] == 820
    browser.get(inv["checkout_url"])
    _until(browser, lambda d: d.find_element(By.ID, "copy").is_displayed(), "the script")
    _shows_price_and_items(browser)
    assert browser.find_element(By.ID, "items").is_displayed()


def test_price_and_items_show_with_javascript_off(browser: Any, server: Server) -> None:
    inv = _invoice(server, currency="USD", items=ITEMS, **PRIVATE)
    browser.execute_cdp_cmd("Emulation.setScriptExecutionDisabled", {"value": True})
    try:
        browser.get(inv["checkout_url"])
        _shows_price_and_items(browser)
        # The script did not run: the no-JS refresh link shows, the copy button does not.
        assert browser.find_element(By.ID, "refresh").is_displayed()
        assert not browser.find_element(By.ID, "copy").is_displayed()
    finally:
        browser.execute_cdp_cmd("Emulation.setScriptExecutionDisabled", {"value": False})


def test_items_of_a_btc_invoice_are_in_sats(browser: Any, server: Server) -> None:
    items = [{"description": "Sticker", "unit_price": 700, "quantity": 3}]
    inv = _invoice(server, items=items)
    browser.get(inv["checkout_url"])
    assert _text(browser, "amount") == "2,100 sats"
    assert _text(browser, "fiat") == "\u2248 1.89 EUR"
    assert _rows(browser) == [["Sticker", "3", "700 sats", "2,100 sats"]]
    assert _text(browser, "items-total") == "2,100 sats"


def test_paying_turns_the_page_paid_without_a_reload(browser: Any, server: Server) -> None:
    inv = _invoice(server, amount=500, description="A tip")
    browser.get(inv["checkout_url"])
    _until(browser, lambda d: d.find_element(By.ID, "copy").is_displayed(), "the script")
    browser.execute_script("window.notReloaded = true;")
    cli(server.data_dir, "dev", "pay", inv["payment_hash"])
    _until(browser, lambda d: _text(d, "status") == "Paid", "the page to turn paid")
    assert browser.execute_script("return window.notReloaded === true;")
    assert browser.find_element(By.TAG_NAME, "body").get_attribute("data-state") == "SETTLED"
    assert not browser.find_element(By.ID, "pay").is_displayed()


def test_a_page_whose_live_stream_is_refused_offers_its_refresh_link(
    browser: Any, server: Server
) -> None:
    """This client already holds its share of open payment pages, so the
    page's state stream is refused (503): the page cannot turn paid by
    itself, and says how to see the new state instead of hiding the link."""
    inv = _invoice(server, amount=700)
    stream = inv["checkout_url"] + "/events"
    # Take what is left of this client's (127.0.0.1's) share: the browser's
    # pages of earlier tests may still hold some of it.
    held: list[requests.Response] = []
    for _ in range(checkout.STREAMS_PER_CLIENT + 1):
        held.append(requests.get(stream, stream=True, timeout=10))
        if held[-1].status_code != 200:
            break
    try:
        assert held[-1].status_code == 503, "this client's streams were not capped"
        browser.get(inv["checkout_url"])
        _until(browser, lambda d: d.find_element(By.ID, "refresh").is_displayed(), "Refresh")
        assert _text(browser, "status") == "Waiting for payment"
    finally:
        for reply in held:
            reply.close()


class Relay:
    """A TCP relay in front of the server, standing in for a payer's patchy
    connection: `drop()` cuts every connection through it and holds new
    ones (the phone is in the wallet app, the tab asleep); `restore()` lets
    them through again."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.passing = threading.Event()
        self.passing.set()
        self.lock = threading.Lock()
        self.sockets: list[socket.socket] = []
        self.sent = bytearray()  # everything the browser sent
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            self.passing.wait()  # while dropped, new connections wait in the backlog
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            # A connection accepted while `drop()` ran (this thread was already
            # waiting in accept) is held too: passed on at once, it let a
            # reconnect through while "dropped", and a busy host's page learnt
            # of the payment before it was meant to.
            self.passing.wait()
            upstream = socket.create_connection(("127.0.0.1", self.target))
            with self.lock:
                self.sockets += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, from_client: bool) -> None:
        try:
            while chunk := src.recv(65536):
                if from_client:
                    with self.lock:
                        self.sent += chunk
                dst.sendall(chunk)
        except OSError:
            pass
        finally:
            for end in (src, dst):
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)

    def streams_opened(self) -> int:
        with self.lock:
            return self.sent.count(b"/events HTTP/")

    def drop(self) -> None:
        self.passing.clear()
        with self.lock:
            cut, self.sockets = self.sockets, []
        for end in cut:
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)
            end.close()

    def restore(self) -> None:
        self.passing.set()

    def close(self) -> None:
        self.drop()
        self.listener.close()
        self.passing.set()


def test_a_page_whose_stream_dropped_while_it_was_paid_turns_paid(
    browser: Any, server: Server
) -> None:
    """The payer taps Open in wallet; the phone puts the browser to sleep and
    the state stream drops; the wallet pays; back in the browser, EventSource
    reconnects (with `Last-Event-ID: created`). It used to get 204, which
    stops EventSource: the page stayed on Waiting for payment, and when the
    countdown ran out it said Expired about a paid invoice."""
    inv = _invoice(server, amount=600, description="Dropped")
    relay = Relay(int(server.url.rsplit(":", 1)[1]))
    try:
        path = urllib.parse.urlsplit(inv["checkout_url"]).path
        browser.get(relay.url + path)
        _until(browser, lambda d: relay.streams_opened() == 1, "the state stream")
        _until(browser, lambda d: _text(d, "status") == "Waiting for payment", "the page")
        relay.drop()
        cli(server.data_dir, "dev", "pay", inv["payment_hash"])
        wait_for(
            lambda: (
                server.request("GET", f"/invoices/{inv['payment_hash']}").json()["state"]
                == "SETTLED"
            ),
            "the invoice to be paid",
        )
        assert _text(browser, "status") == "Waiting for payment"  # it cannot know yet
        relay.restore()
        _until(browser, lambda d: _text(d, "status") == "Paid", "the page to turn paid")
        assert relay.streams_opened() >= 2  # it learnt it from a reconnect
        assert not browser.find_element(By.ID, "pay").is_displayed()
    finally:
        relay.close()


def test_an_expired_invoice_shows_expired(browser: Any, server: Server) -> None:
    inv = _invoice(server, amount=100, expiry=1)
    wait_for(
        lambda: (
            server.request("GET", f"/invoices/{inv['payment_hash']}").json()["state"] == "EXPIRED"
        ),
        "the invoice to expire",
    )
    browser.get(inv["checkout_url"])
    assert _text(browser, "status") == "Expired"
    assert not browser.find_element(By.ID, "pay").is_displayed()
    # With nothing left to happen, the refresh link stays.
    assert browser.find_element(By.ID, "refresh").is_displayed()


def test_a_held_payment_does_not_expire_on_the_page(browser: Any, server: Server) -> None:
    """A hold invoice paid (ACCEPTED) is held past its expiry until the payee
    settles: the page must not turn Expired at the countdown's end (it did,
    and closed its stream, so the settlement never showed)."""
    expiry = 3
    for _ in range(5):  # a payment that came after the expiry is refused: longer, again
        preimage = secrets.token_bytes(32)
        payment_hash = hashlib.sha256(preimage).hexdigest()
        inv = _invoice(server, amount=300, payment_hash=payment_hash, expiry=expiry)
        paid = server.request("POST", "/dev/pay", json={"payment_hash": payment_hash})
        if paid.status_code == 200:
            break
        expiry *= 2
    assert paid.json()["state"] == "ACCEPTED", paid.text
    wait_for(lambda: time.time() > inv["creation_date"] + expiry, "the invoice's expiry to pass")
    assert server.request("GET", f"/invoices/{payment_hash}").json()["state"] == "ACCEPTED"
    browser.get(inv["checkout_url"])
    _until(browser, lambda d: not d.find_element(By.ID, "refresh").is_displayed(), "the script")
    assert _text(browser, "status") == "Payment received, confirming"
    assert not browser.find_element(By.ID, "expiry").is_displayed()
    settled = server.request(
        "POST", f"/invoices/{payment_hash}/settle", json={"preimage": preimage.hex()}
    )
    assert settled.status_code == 200, settled.text
    _until(browser, lambda d: _text(d, "status") == "Paid", "the page to turn paid")


def test_the_address_form_mints_and_shows_the_invoice(browser: Any, server: Server) -> None:
    reply = server.request(
        "POST",
        "/lightning_addresses",
        json={"username": "bakery", "description": "The bakery", "comment_allowed": 30},
    )
    assert reply.status_code == 201, reply.text
    browser.get(server.url + "/pay/address/bakery")
    assert _text(browser, "description") == "The bakery"
    browser.find_element(By.ID, "amount").send_keys("42")
    browser.find_element(By.ID, "comment").send_keys("two loaves")
    browser.find_element(By.ID, "submit").click()
    _until(browser, lambda d: "/pay/address/" not in d.current_url, "the invoice page")
    assert _text(browser, "amount") == "42 sats"
    minted = server.request("GET", "/invoices?items=1").json()[0]
    assert minted["lightning_address"] == "bakery" and minted["comment"] == "two loaves"
    assert browser.current_url == minted["checkout_url"]
    cli(server.data_dir, "dev", "pay", minted["payment_hash"])
    _until(browser, lambda d: _text(d, "status") == "Paid", "the page to turn paid")


def test_no_request_leaves_the_origin_and_nothing_breaks_the_policy(
    browser: Any, server: Server
) -> None:
    browser.get_log("performance")  # drop what earlier tests logged
    browser.get_log("browser")
    inv = _invoice(server, amount=21, description="origin check")
    browser.get(inv["checkout_url"])
    _until(browser, lambda d: d.find_element(By.ID, "copy").is_displayed(), "the script")
    browser.get(server.url + "/pay/address/bakery")
    urls = []
    for entry in browser.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        if msg["method"] == "Network.requestWillBeSent":
            urls.append(msg["params"]["request"]["url"])
    # The page, its style sheet, its script, the state stream, the address page.
    assert inv["checkout_url"] in urls
    assert any(u.endswith("/pay/static/checkout.js") for u in urls)
    assert any(u.endswith("/pay/static/checkout.css") for u in urls)
    assert any(u.endswith("/events") for u in urls)
    foreign = [u for u in urls if not u.startswith(server.url + "/")]
    assert foreign == []
    problems = [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert problems == []


def test_the_screenshot_script_draws_the_page(browser: Any, tmp_path: Path) -> None:
    """contrib/checkout_screenshot.py, which makes docs/img/checkout.png, runs:
    its own server on the dev node, its own rate provider, its own Chromium
    (`browser` is here for its skip-or-fail check only)."""
    found = _binaries()
    assert found is not None
    out = tmp_path / "checkout.png"
    script = Path(__file__).resolve().parents[1] / "contrib" / "checkout_screenshot.py"
    done = subprocess.run(
        [sys.executable, str(script), str(out), "--chromium", found[0], "--chromedriver", found[1]],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert out.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert "8,200 sats" in done.stdout and "8.20 EUR" in done.stdout


# -- what a payer with a screen reader, a keyboard or a small screen meets -----------

# The elements whose text a payer reads, on each kind of page.
PAY_TEXT: tuple[str, ...] = (
    "#amount",
    "#amount span",
    "#fiat",
    "#description",
    "#status",
    "#expiry",
)
PAY_TEXT += ("#open", "#copy", "label[for=invoice]", "#invoice")
ADDRESS_TEXT = ("#address", "#description", "label[for=amount]", "#submit", "#error")
# Each element's text colour and the first opaque background behind it.
COLOURS_JS = """
function rgba(s) {
  var m = s.match(/[\\d.]+/g).map(Number);
  return m.length > 3 ? m : m.concat([1]);
}
function behind(el) {
  for (; el; el = el.parentElement) {
    var c = rgba(getComputedStyle(el).backgroundColor);
    if (c[3] > 0) { return c; }
  }
  return [255, 255, 255, 1];
}
return arguments[0].map(function (sel) {
  var el = document.querySelector(sel);
  if (!el || !el.getClientRects().length) { return null; }
  return [sel, rgba(getComputedStyle(el).color), behind(el)];
});
"""


def _contrast(fg: list[float], bg: list[float]) -> float:
    def luminance(rgb: list[float]) -> float:
        lin = [
            c / 255 / 12.92 if c / 255 <= 0.03928 else ((c / 255 + 0.055) / 1.055) ** 2.4
            for c in rgb[:3]
        ]
        return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]

    light, dark = sorted((luminance(fg), luminance(bg)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


def _low_contrast(driver: Any, selectors: tuple[str, ...]) -> list[str]:
    """Text below WCAG AA's 4.5:1 against what is behind it."""
    found = driver.execute_script(COLOURS_JS, list(selectors))
    assert any(found), selectors
    return [
        f"{sel}: {_contrast(fg, bg):.2f}"
        for sel, fg, bg in filter(None, found)
        if _contrast(fg, bg) < 4.5
    ]


def _colour_scheme(driver: Any, scheme: str) -> None:
    driver.execute_cdp_cmd(
        "Emulation.setEmulatedMedia",
        {"features": [{"name": "prefers-color-scheme", "value": scheme}]},
    )


def _wait_script(driver: Any) -> None:
    _until(driver, lambda d: d.find_element(By.ID, "copy").is_displayed(), "the script")


def _address(server: Server, username: str, **body: Any) -> str:
    reply = server.request("POST", "/lightning_addresses", json={"username": username, **body})
    assert reply.status_code == 201, reply.text
    return f"{server.url}/pay/address/{username}"


def test_text_and_buttons_meet_contrast_aa_in_light_and_dark_mode(
    browser: Any, server: Server
) -> None:
    """The Open in wallet button was white on orange (2.3:1), the Paid badge
    green on pale green (4.3:1)."""
    waiting = _invoice(server, amount=2100, description="contrast")
    paid = _invoice(server, amount=2100, description="contrast, paid")
    cli(server.data_dir, "dev", "pay", paid["payment_hash"])
    expired = _invoice(server, amount=100, expiry=1)
    form = _address(server, "contrast", comment_allowed=10)
    wait_for(
        lambda: (
            server.request("GET", f"/invoices/{expired['payment_hash']}").json()["state"]
            == "EXPIRED"
        ),
        "the invoice to expire",
    )
    try:
        for scheme in ("light", "dark"):
            _colour_scheme(browser, scheme)
            low = []
            browser.get(waiting["checkout_url"])
            _wait_script(browser)
            low += _low_contrast(browser, PAY_TEXT)
            for inv in (paid, expired):
                browser.get(inv["checkout_url"])
                low += _low_contrast(browser, ("#amount", "#status", "#refresh"))
            browser.get(form)
            browser.execute_script("document.querySelector('form').noValidate = true;")
            browser.find_element(By.ID, "amount").send_keys("0")
            browser.find_element(By.ID, "submit").click()
            _until(browser, lambda d: d.find_elements(By.ID, "error"), "the form's error")
            low += _low_contrast(browser, ADDRESS_TEXT)
            assert low == [], scheme
    finally:
        _colour_scheme(browser, "light")


def test_each_page_has_one_level_one_heading(browser: Any, server: Server) -> None:
    """Screen reader users jump by headings; no page had one."""
    inv = _invoice(server, amount=2100, description="heading")
    form = _address(server, "heading")

    def headings() -> list[str]:
        return [str(h.text) for h in browser.find_elements(By.TAG_NAME, "h1")]

    browser.get(inv["checkout_url"])
    assert headings() == ["2,100 sats"]
    browser.get(form)
    assert headings() == [f"heading@127.0.0.1:{server.url.rsplit(':', 1)[1]}"]
    browser.get(server.url + "/pay/0123456789ab")
    assert headings() == ["Not found"]


def test_the_qr_code_is_named_as_a_lightning_invoice(browser: Any, server: Server) -> None:
    """The QR code was announced as "Open in wallet", the same as the button
    after it, not as the invoice's QR code."""
    inv = _invoice(server, amount=2100, description="qr name")
    browser.get(inv["checkout_url"])
    name = browser.find_element(By.ID, "qr").accessible_name
    assert "QR code" in name and "Lightning invoice" in name
    assert name != browser.find_element(By.ID, "open").accessible_name


def test_the_keyboard_reaches_every_control_in_reading_order(browser: Any, server: Server) -> None:
    inv = _invoice(server, amount=2100, description="keyboard")
    browser.get(inv["checkout_url"])
    _wait_script(browser)
    order = []
    for _ in range(4):
        ActionChains(browser).send_keys(Keys.TAB).perform()
        order.append(browser.switch_to.active_element.get_attribute("id"))
    assert order == ["qr", "open", "copy", "invoice"]


def test_a_phone_320_px_wide_or_200_percent_zoom_does_not_scroll_sideways(
    browser: Any, server: Server
) -> None:
    inv = _invoice(server, currency="USD", items=ITEMS, description="Caf\u00e9 Lumen " * 6)
    browser.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": 320, "height": 640, "deviceScaleFactor": 1, "mobile": True},
    )
    # The address in the words of a page that offers no form (it wrapped on
    # the form's page, in the heading, but not in that paragraph).
    wallet_only = _address(server, "wide" * 16, payer_data={"email": {"mandatory": True}})
    try:
        for url in (
            inv["checkout_url"],
            _address(server, "narrow" * 5, comment_allowed=50),
            wallet_only,
            server.url + "/pay/address/" + "missing" * 9,  # the error page names it
        ):
            browser.get(url)
            assert browser.execute_script(
                "return document.documentElement.scrollWidth <= 320 && window.innerWidth === 320;"
            ), url
        browser.get(inv["checkout_url"])
        invoice = browser.find_element(By.ID, "invoice")
        assert browser.execute_script(
            "return arguments[0].scrollWidth <= arguments[0].clientWidth;", invoice
        )
    finally:
        browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


class Site:
    """Another website (at http://localhost:<port>/, not the server's
    127.0.0.1 origin) whose one page holds `body`: a pay button embedded
    the way docs/checkout.md says."""

    def __init__(self, body: str) -> None:
        page = f"<!doctype html><html lang=en><title>A shop</title>{body}".encode()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(page)))
                self.end_headers()
                self.wfile.write(page)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://localhost:{self.httpd.server_port}/"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _clipboard(browser: Any, server: Server) -> str:
    """What the clipboard holds, read from a page of the server's own origin."""
    browser.execute_cdp_cmd(
        "Browser.grantPermissions",
        {"origin": server.url, "permissions": ["clipboardReadWrite", "clipboardSanitizedWrite"]},
    )
    browser.get(server.url + "/pay/0123456789ab")
    return str(
        browser.execute_async_script(
            "var done = arguments[0];"
            "navigator.clipboard.readText().then(done, function (e) { done('error: ' + e); });"
        )
    )


def _announced(browser: Any) -> list[str]:
    """The text of the page's live regions (what a screen reader is told)."""
    return [
        str(el.get_attribute("textContent")).strip()
        for el in browser.find_elements(By.CSS_SELECTOR, "[role=status], [aria-live]")
    ]


def test_copy_puts_the_invoice_on_the_clipboard_and_says_so(browser: Any, server: Server) -> None:
    inv = _invoice(server, amount=2100, description="copy")
    browser.execute_cdp_cmd(
        "Browser.grantPermissions",
        {"origin": server.url, "permissions": ["clipboardReadWrite", "clipboardSanitizedWrite"]},
    )
    browser.get(inv["checkout_url"])
    _wait_script(browser)
    browser.find_element(By.ID, "copy").click()
    _until(browser, lambda d: "Invoice copied" in _announced(d), "the copy to be announced")
    assert _clipboard(browser, server) == inv["payment_request"]


def test_copy_works_in_a_pay_button_embedded_on_another_site(browser: Any, server: Server) -> None:
    """In the documented iframe, on another origin, the browser refuses the
    Clipboard API; the button only selected the text and said nothing."""
    inv = _invoice(server, amount=2100, description="embedded copy")
    browser.execute_cdp_cmd("Browser.resetPermissions", {})
    site = Site(f'<iframe id="pay" src="{inv["checkout_url"]}" width="360" height="900"></iframe>')
    try:
        browser.get(site.url)  # localhost: not the server's origin (127.0.0.1)
        browser.switch_to.frame(browser.find_element(By.ID, "pay"))
        _wait_script(browser)
        browser.find_element(By.ID, "copy").click()
        _until(browser, lambda d: "Invoice copied" in _announced(d), "the copy to be announced")
        browser.switch_to.default_content()
    finally:
        site.close()
    assert _clipboard(browser, server) == inv["payment_request"]


def test_focus_moves_to_the_new_state_when_the_focused_control_is_hidden(
    browser: Any, server: Server
) -> None:
    """A keyboard user on Copy invoice when the payment lands: the pay
    section is hidden, and focus goes to the state line that says "Paid"
    rather than back to the top of the page."""
    inv = _invoice(server, amount=700, description="focus")
    browser.get(inv["checkout_url"])
    _wait_script(browser)
    browser.execute_script("document.getElementById('copy').focus()")
    assert browser.execute_script("return document.activeElement.id") == "copy"
    cli(server.data_dir, "dev", "pay", inv["payment_hash"])
    _until(browser, lambda d: _text(d, "status") == "Paid", "the page to turn paid")
    assert browser.execute_script("return document.activeElement.id") == "status"


def test_the_tab_title_keeps_the_amount_as_the_state_changes(browser: Any, server: Server) -> None:
    inv = _invoice(server, amount=500, description="title")
    browser.get(inv["checkout_url"])
    _wait_script(browser)
    assert browser.title == "Waiting for payment: 500 sats"
    cli(server.data_dir, "dev", "pay", inv["payment_hash"])
    _until(browser, lambda d: _text(d, "status") == "Paid", "the page to turn paid")
    assert browser.title == "Paid: 500 sats"


# -- the Lightning Address form ----------------------------------------------------


def _ax_node(browser: Any, element_id: str) -> dict[str, Any]:
    """The element as the accessibility tree (what a screen reader reads) has it."""
    target = browser.execute_cdp_cmd(
        "DOM.describeNode",
        {
            "objectId": browser.execute_cdp_cmd(
                "Runtime.evaluate", {"expression": f"document.getElementById({element_id!r})"}
            )["result"]["objectId"]
        },
    )
    nodes = browser.execute_cdp_cmd(
        "Accessibility.getPartialAXTree",
        {"backendNodeId": target["node"]["backendNodeId"], "fetchRelatives": False},
    )["nodes"]
    node = nodes[0]
    props = {p["name"]: p["value"].get("value") for p in node.get("properties", [])}
    props.setdefault("focused", False)
    return {
        "name": node.get("name", {}).get("value"),
        "description": node.get("description", {}).get("value"),
        **props,
    }


def test_form_errors_sit_by_their_field_and_are_read_with_it(browser: Any, server: Server) -> None:
    """An error was one line above the form, tied to no field and not
    focused, so a screen reader user back on the page heard nothing of it."""
    form = _address(
        server,
        "errors",
        min_sendable_msat=10_000,
        max_sendable_msat=1_000_000,
        comment_allowed=20,
        payer_data={"name": {"mandatory": False}},
    )
    browser.get(form)
    # A browser that does not check the form (or a value it lets through).
    browser.execute_script("document.querySelector('form').noValidate = true;")
    browser.find_element(By.ID, "amount").send_keys("5000")
    browser.find_element(By.ID, "comment").send_keys("for the bread")
    browser.find_element(By.ID, "name").send_keys("Ann")
    browser.find_element(By.ID, "submit").click()
    _until(browser, lambda d: d.find_elements(By.ID, "error"), "the form's error")
    error = _text(browser, "error")
    assert error == "Enter from 10 to 1,000 sats."
    amount = _ax_node(browser, "amount")
    assert amount["focused"] is True and amount["invalid"] == "true"
    assert amount["description"] == error
    assert amount["name"].startswith("Amount")
    # The error is shown right after its field, before the next one.
    assert browser.execute_script(
        "var e = document.getElementById('error');return e.previousElementSibling.id === 'amount';"
    )
    # What the payer typed is still there.
    assert browser.find_element(By.ID, "comment").get_attribute("value") == "for the bread"
    assert browser.find_element(By.ID, "name").get_attribute("value") == "Ann"
    assert _ax_node(browser, "comment")["invalid"] == "false"


def test_a_message_with_line_breaks_up_to_the_limit_is_taken(browser: Any, server: Server) -> None:
    """The browser counts a line break as one character and sends it as two
    (CR LF): a message the field let the payer type to its limit was refused
    as too long."""
    form = _address(server, "lines", comment_allowed=20)
    browser.get(form)
    browser.find_element(By.ID, "amount").send_keys("21")
    comment = browser.find_element(By.ID, "comment")
    comment.send_keys("a" * 9 + Keys.ENTER + "b" * 10)
    assert browser.execute_script("return arguments[0].value.length;", comment) == 20
    browser.find_element(By.ID, "submit").click()
    _until(browser, lambda d: "/pay/address/" not in d.current_url, "the invoice page")
    minted = server.request("GET", "/invoices?items=1").json()[0]
    assert minted["lightning_address"] == "lines"
    assert minted["comment"] == "a" * 9 + "\n" + "b" * 10


def test_the_api_docs_page_renders_under_its_content_security_policy(
    browser: Any, server: Server
) -> None:
    """/docs runs requests with the operator's token once Authorize is
    pressed: it is sent with a policy that allows only its own scripts and
    no framing, and Swagger UI still draws every operation under it."""
    page = server.request("GET", "/docs", token="")
    policy = page.headers["Content-Security-Policy"]
    assert "script-src 'self';" in policy and "frame-ancestors 'none'" in policy
    browser.get_log("browser")  # drop what earlier tests logged
    browser.get(server.url + "/docs")
    _until(
        browser,
        lambda d: len(d.find_elements(By.CSS_SELECTOR, ".opblock")) >= 10,
        "Swagger UI's operations",
    )
    assert browser.find_element(By.CSS_SELECTOR, ".info .title").text.startswith("lnplugin")
    # Opened, with its form: what an operator does next draws more of the UI.
    browser.find_element(By.CSS_SELECTOR, ".opblock .opblock-summary").click()
    _until(browser, lambda d: d.find_elements(By.CSS_SELECTOR, ".try-out__btn"), "Try it out")
    browser.find_element(By.CSS_SELECTOR, ".try-out__btn").click()
    _until(browser, lambda d: d.find_elements(By.CSS_SELECTOR, ".execute"), "Execute")
    refused = [
        e["message"] for e in browser.get_log("browser") if "Content Security" in e["message"]
    ]
    assert refused == []
