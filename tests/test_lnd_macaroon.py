"""Reading an LND macaroon's permissions from its bytes (`lnplugin.nodes.lnd.macaroon`).

The first vector is an `admin.macaroon` that a regtest lnd (Polar) wrote,
published in many public examples: real lnd output, and worthless (a
throwaway regtest node). The others are minted by the LND simulator's
writer, which is separate code, so a mistake in one is not mirrored in the
other.
"""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lnplugin.nodes.lnd.macaroon import MacaroonFormatError, decode
from lnplugin_sim.lnd_sim import (
    ADMIN_PERMISSIONS,
    INVOICE_PERMISSIONS,
    READONLY_PERMISSIONS,
    mint_macaroon,
)

REGTEST_ADMIN = bytes.fromhex(
    "0201036c6e6402f801030a10f65286e21207df41cc77be0175cbb2871201301a160a0761646472657373"
    "120472656164120577726974651a130a04696e666f120472656164120577726974651a170a08696e766f"
    "69636573120472656164120577726974651a210a086d616361726f6f6e120867656e6572617465120472"
    "656164120577726974651a160a076d657373616765120472656164120577726974651a170a086f666663"
    "6861696e120472656164120577726974651a160a076f6e636861696e120472656164120577726974651a"
    "140a057065657273120472656164120577726974651a180a067369676e6572120867656e657261746512"
    "0472656164000006202eba3f3acaa7a7b974fdccc7a10060ede5b4801a85661c58166b062412e92e8a"
)


def test_a_real_admin_macaroon_grants_everything_and_can_spend() -> None:
    mac = decode(REGTEST_ADMIN)
    assert mac.location == "lnd" and mac.caveats == ()
    entities = ("address", "info", "invoices", "message", "offchain", "onchain", "peers")
    expected = {f"{e}:{a}" for e in entities for a in ("read", "write")}
    expected |= {"macaroon:generate", "macaroon:read", "macaroon:write"}
    expected |= {"signer:generate", "signer:read"}
    assert mac.permissions == expected
    spending = mac.spending()
    assert [s.split(" ")[0] for s in spending] == [
        "offchain:write",
        "onchain:write",
        "macaroon:generate",
        "signer:generate",
    ]


@pytest.mark.parametrize(
    "permissions,spends",
    [(ADMIN_PERMISSIONS, True), (INVOICE_PERMISSIONS, False), (READONLY_PERMISSIONS, False)],
)
def test_the_simulators_macaroons_carry_their_permissions(permissions, spends) -> None:
    mac = decode(mint_macaroon(permissions))
    assert mac.permissions == permissions
    assert bool(mac.spending()) is spends


def test_caveats_are_read_as_text() -> None:
    raw = mint_macaroon(
        INVOICE_PERMISSIONS, ("time-before 2030-01-01T00:00:00Z", "ipaddr 10.0.0.1")
    )
    assert decode(raw).caveats == ("time-before 2030-01-01T00:00:00Z", "ipaddr 10.0.0.1")


def test_a_single_spending_method_counts_as_spending() -> None:
    perms = frozenset({"invoices:read", "uri:/lnrpc.Lightning/SendPaymentSync"})
    assert decode(mint_macaroon(perms)).spending() == [
        "uri:/lnrpc.Lightning/SendPaymentSync (calls /lnrpc.Lightning/SendPaymentSync)"
    ]


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"MDAxY2xvY2F0aW9u",  # a v1 (base64 text) macaroon
        REGTEST_ADMIN[:40],  # truncated inside the identifier
        REGTEST_ADMIN[:-10],  # truncated signature
        REGTEST_ADMIN.replace(bytes.fromhex("f801030a10"), bytes.fromhex("f801020a10"), 1),
    ],
)
def test_what_is_not_an_lnd_macaroon_is_refused(raw: bytes) -> None:
    with pytest.raises(MacaroonFormatError):
        decode(raw)


@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_raise_anything_else(raw: bytes) -> None:
    with contextlib.suppress(MacaroonFormatError):
        decode(raw)


def test_a_real_length_macaroon_given_as_hex_is_not_looked_up_as_a_file() -> None:
    """Hex of a real macaroon is longer than a file name may be; asking the OS
    whether it is a file raised ENAMETOOLONG (`--lnd-macaroon <hex>` crashed)."""
    from lnplugin.nodes.lnd.node import load_macaroon

    assert len(REGTEST_ADMIN.hex()) > 255
    assert load_macaroon(REGTEST_ADMIN.hex()) == REGTEST_ADMIN.hex()
    assert load_macaroon(REGTEST_ADMIN.hex().upper()) == REGTEST_ADMIN.hex()
