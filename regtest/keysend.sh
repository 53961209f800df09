#!/usr/bin/env bash
# keysend.sh [AMOUNT_SAT] [PAYER: lnd|cln-a] [MESSAGE]: a keysend to cln-b carrying a
# 7629169 boostagram and a 34349334 chat message.
source "$(dirname "$0")/lib.sh"
AMOUNT=${1:-21}
PAYER=${2:-lnd}
MESSAGE=${3:-hello from regtest}
B_ID=$(cln_b getinfo | jq -r .id)
BOOST=$(hex "{\"action\":\"boost\",\"podcast\":\"Regtest Pod\",\"feedID\":920666,\"message\":\"$MESSAGE\",\"value_msat_total\":$((AMOUNT * 1000))}")
CHAT=$(hex "$MESSAGE")
case "$PAYER" in
  lnd) lnd sendpayment --keysend --dest "$B_ID" --amt "$AMOUNT" \
         --data "7629169=$BOOST,34349334=$CHAT" --json | jq '{status, payment_hash}' ;;
  cln-a) cln_a -k keysend destination="$B_ID" amount_msat="$((AMOUNT * 1000))" \
           extratlvs="{\"7629169\": \"$BOOST\", \"34349334\": \"$CHAT\"}" \
         | jq '{status, payment_hash}' ;;
  *) echo "payer must be lnd or cln-a" >&2; exit 2 ;;
esac
