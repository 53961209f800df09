#!/usr/bin/env bash
# pay.sh [AMOUNT_SAT] [PAYER: cln-a|lnd]: cln-b makes an invoice, the payer pays it.
source "$(dirname "$0")/lib.sh"
AMOUNT=${1:-1000}
PAYER=${2:-cln-a}
BOLT11=$(cln_b invoice "${AMOUNT}sat" "regtest-$(date +%s%N)" "regtest pay" | jq -r .bolt11)
case "$PAYER" in
  cln-a) cln_a pay "$BOLT11" | jq '{status, payment_hash}' ;;
  lnd) lnd payinvoice --force "$BOLT11" ;;
  *) echo "payer must be cln-a or lnd" >&2; exit 2 ;;
esac
