#!/usr/bin/env bash
# Build cln-b (lnplugin-cln from this checkout) and start the network.
source "$(dirname "$0")/lib.sh"
compose up -d --build
for i in $(seq 1 60); do
  if btc getblockchaininfo >/dev/null 2>&1 && cln_b getinfo >/dev/null 2>&1 \
     && cln_a getinfo >/dev/null 2>&1 && lnd getinfo >/dev/null 2>&1; then
    echo "regtest network up; lnplugin on cln-b: http://127.0.0.1:${LNPLUGIN_REGTEST_PORT:-8080}"
    cln_b lnplugin-status
    exit 0
  fi
  sleep 2
done
echo "nodes did not come up; see: docker compose -f regtest/docker-compose.yml logs" >&2
exit 1
