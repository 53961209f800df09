// An NWC app built on @getalby/sdk's NWCClient: Alby's own client, the one
// most apps that "connect a wallet" use. tests/test_nwc_alby_sdk.py drives
// it over stdin and stdout, so the test plays the user and the SDK plays
// the app, unchanged.
//
// Usage: node nwc_app.mjs 'nostr+walletconnect://…'
// In:  one JSON command per line, {"id": 1, "method": "makeInvoice", "params": {…}}
//      (any NWCClient method; "subscribeNotifications" takes {"types": […]};
//      "requestPayment" {"sats": 21, "description": …} is the SDK's headline
//      call, `new LN(url).requestPayment(SATS(21)).onPaid(…)`; "lud16" and
//      "encryptionType" read the client's properties).
// Out: one JSON line per answer, {"id": 1, "result": …} or
//      {"id": 1, "error": {"code": "NOT_IMPLEMENTED", "message": …}},
//      one per notification, {"notification": {…}}, and one per onPaid,
//      {"paid": {…}}.
import { webcrypto } from "node:crypto";
import readline from "node:readline";
import WebSocket from "ws";

// Node 18 has no global crypto (@noble's randomness) and Node < 22 no global
// WebSocket (nostr-tools' relays): the SDK's README names the same two gaps.
globalThis.crypto ??= webcrypto;
globalThis.WebSocket ??= WebSocket;
// The SDK logs its progress with console.log; stdout is for answers only.
console.log = console.info = (...args) => console.error(...args);

const { LN, NWCClient, SATS } = await import("@getalby/sdk");
const client = new NWCClient({ nostrWalletConnectUrl: process.argv[2] });
const say = (message) => process.stdout.write(JSON.stringify(message) + "\n");

for await (const line of readline.createInterface({ input: process.stdin })) {
  const { id, method, params } = JSON.parse(line);
  try {
    if (method === "subscribeNotifications") {
      await client.subscribeNotifications((n) => say({ notification: n }), params?.types);
      say({ id, result: null });
    } else if (method === "requestPayment") {
      const { sats, ...args } = params;
      const request = await new LN(client).requestPayment(SATS(sats), args);
      request.onPaid((transaction) => say({ paid: transaction }));
      // `invoice` is the SDK's own decoding of the BOLT11 (@getalby/lightning-tools).
      const { paymentHash, satoshi, description } = request.invoice;
      say({ id, result: { transaction: request.transaction, decoded: { paymentHash, satoshi, description } } });
    } else if (method === "encryptionType") {
      say({ id, result: client.encryptionType });
    } else if (method === "lud16") {
      // The Lightning Address the SDK read from the connection string.
      say({ id, result: client.lud16 ?? null });
    } else {
      say({ id, result: (await client[method](params)) ?? null });
    }
  } catch (error) {
    say({ id, error: { code: error?.code ?? null, message: String(error?.message ?? error) } });
  }
}
client.close();
process.exit(0);
