#!/usr/bin/env bash
# Mine, fund cln-a, cln-b and lnd, open channels cln-a -> cln-b and lnd -> cln-b
# (each pushing some funds to cln-b so it can pay out too).
source "$(dirname "$0")/lib.sh"
btc createwallet regtest >/dev/null 2>&1 || btc loadwallet regtest >/dev/null 2>&1 || true
mine 101
btc sendtoaddress "$(cln_a newaddr | jq -r .bech32)" 1 >/dev/null
btc sendtoaddress "$(cln_b newaddr | jq -r .bech32)" 1 >/dev/null
btc sendtoaddress "$(lnd newaddress p2wkh | jq -r .address)" 1 >/dev/null
mine 6
sleep 5
B_ID=$(cln_b getinfo | jq -r .id)
cln_a connect "$B_ID@cln-b:9735" >/dev/null
cln_a fundchannel id="$B_ID" amount=2000000 push_msat=500000000 >/dev/null
lnd connect "$B_ID@cln-b:9735" >/dev/null
lnd openchannel --node_key "$B_ID" --local_amt 2000000 --push_amt 500000 >/dev/null
mine 6
for i in $(seq 1 60); do
  normal=$(cln_b listpeerchannels | jq '[.channels[] | select(.state == "CHANNELD_NORMAL")] | length')
  [ "$normal" -ge 2 ] && { echo "channels open: $normal"; exit 0; }
  mine 1; sleep 2
done
echo "channels did not reach CHANNELD_NORMAL" >&2
exit 1
