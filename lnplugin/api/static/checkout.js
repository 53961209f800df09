// The invoice page's live parts: the countdown, the copy button, and the
// state stream that turns the page paid or expired without a reload. Without
// this script the page still shows the QR code, the invoice and a refresh link.
(function () {
  "use strict";
  var body = document.body;
  var LABELS = {
    CREATED: "Waiting for payment", ACCEPTED: "Payment received, confirming",
    SETTLED: "Paid", EXPIRED: "Expired", CANCELED: "Canceled"
  };
  var FINAL = { SETTLED: true, EXPIRED: true, CANCELED: true };
  var state = body.getAttribute("data-state");
  var source = null;
  var timer = null;
  // The server's title is "<state>: <amount>": the state changes, the amount stays.
  var amountInTitle = document.title.slice(document.title.indexOf(": "));
  if (document.title.indexOf(": ") < 0) { amountInTitle = ""; }

  var status = document.getElementById("status");

  function show(next) {
    if (!LABELS[next] || FINAL[state]) { return; }
    state = next;
    body.setAttribute("data-state", next);
    body.className = "state-" + next.toLowerCase();
    status.textContent = LABELS[next];
    document.title = LABELS[next] + amountInTitle;
    if (next !== "CREATED") { stopCountdown(); }
    if (FINAL[next]) {
      var pay = document.getElementById("pay");
      // Hiding the focused control (Copy invoice) would drop keyboard focus
      // to the top of the page: put it on the new state instead.
      var hadFocus = pay.contains(document.activeElement);
      pay.hidden = true;
      if (hadFocus) { status.focus(); }
      if (source) { source.close(); }
    }
  }

  // Only an unpaid invoice expires: a held payment (ACCEPTED) stays until
  // the payee settles or cancels it, often after the invoice's expiry.
  function stopCountdown() {
    if (timer) { clearInterval(timer); timer = null; }
    document.getElementById("expiry").hidden = true;
  }

  // Counted from the server's "seconds left", not the payer's clock.
  var deadline = Date.now() + 1000 * Number(body.getAttribute("data-expires-in"));
  var countdown = document.getElementById("countdown");
  function tick() {
    var left = Math.max(0, Math.round((deadline - Date.now()) / 1000));
    var h = Math.floor(left / 3600), m = Math.floor(left % 3600 / 60), s = left % 60;
    countdown.textContent = h + ":" + (m < 10 ? "0" : "") + m + ":" + (s < 10 ? "0" : "") + s;
    if (left === 0 && state === "CREATED") { show("EXPIRED"); }
  }

  // The button's text says it was copied; the live region tells a screen
  // reader, which may not read a change of the focused button's text.
  var copy = document.getElementById("copy");
  var copied = document.getElementById("copied");
  var invoice = document.getElementById("invoice");
  copy.hidden = false;
  function say(text) { copied.textContent = text; }
  function done() {
    copy.textContent = "Copied";
    say("Invoice copied");
  }
  // The Clipboard API is refused in a frame on another site (the embedded
  // pay button) and missing on plain http: copy the selected text instead,
  // and if even that fails, leave the invoice text selected and say so.
  function copySelected() {
    invoice.select();
    var ok = false;
    try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
    if (ok) {
      copy.focus();
      done();
    } else {
      say("Could not copy. The invoice text is selected: copy it from there.");
    }
  }
  copy.addEventListener("click", function () {
    say("");
    if (navigator.clipboard && navigator.clipboard.writeText) {
      navigator.clipboard.writeText(invoice.value).then(done, copySelected);
    } else {
      copySelected();
    }
  });

  if (!FINAL[state]) {
    document.getElementById("refresh").hidden = true;
    if (state === "CREATED") {
      timer = setInterval(tick, 1000);
      tick();
    }
    if (window.EventSource) {
      source = new EventSource(body.getAttribute("data-events"));
      source.addEventListener("state", function (event) {
        show(JSON.parse(event.data).state);
      });
      // Refused (503: too many open pages) is final for EventSource, unlike
      // a dropped connection, which it retries: offer the Refresh link then.
      source.addEventListener("error", function () {
        if (source.readyState === EventSource.CLOSED && !FINAL[state]) {
          document.getElementById("refresh").hidden = false;
        }
      });
    }
  }
}());
