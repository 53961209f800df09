# Helpers sourced by the regtest scripts. Run them from anywhere.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
compose() { docker compose "$@"; }
btc() { compose exec -T bitcoind bitcoin-cli -regtest -rpcuser=lnplugin -rpcpassword=lnplugin "$@"; }
cln_a() { compose exec -T cln-a lightning-cli --network=regtest "$@"; }
cln_b() { compose exec -T cln-b lightning-cli --network=regtest "$@"; }
lnd() { compose exec -T lnd lncli --network=regtest "$@"; }
lnplugin_b() { compose exec -T cln-b /opt/lnplugin/bin/lnplugin "$@" --data-dir /root/.lightning/regtest/lnplugin-data; }
mine() { btc generatetoaddress "${1:-6}" "$(btc getnewaddress)" >/dev/null; }
hex() { printf '%s' "$1" | od -An -tx1 | tr -d ' \n'; }
