"""BOLT11 minting and decoding for the CLN simulator.

Kept apart from the simulator so the switch from the `bolt11` PyPI package to
lnplugin's own encoder touches one small file. Minting uses
`lnplugin.bolt11.encode` when it exists, else the PyPI package (a test
dependency); decoding uses the PyPI package and renders CLN's `decode` shape.
"""

from __future__ import annotations

from typing import Any

# Bits of the features field in the invoices of the captured v26.06.6 node
# ("02024100"): var_onion_optin, payment_secret, basic_mpp, option_route_blinding.
INVOICE_FEATURES = (8, 14, 17, 25)


def _features_int(bits: tuple[int, ...]) -> int:
    value = 0
    for bit in bits:
        value |= 1 << bit
    return value


def mint(
    *,
    currency: str,
    amount_msat: int | None,
    timestamp: int,
    payment_hash: str,
    payment_secret: str,
    private_key: bytes,
    description: str | None,
    description_hash: str | None,
    expiry: int,
    cltv: int,
    route_hints: list[dict[str, Any]] | None = None,
) -> str:
    """A signed BOLT11 string; `route_hints` are dicts with Route field names."""
    try:
        from lnplugin import bolt11 as own  # type: ignore[attr-defined]

        encode = own.encode
    except (ImportError, AttributeError):
        encode = None
    if encode is None or route_hints:
        # Route hints stay on the PyPI path until the own encoder's hint format
        # is pinned by a test here.
        return _mint_pypi(**locals())
    return encode(
        currency=currency,
        amount_msat=amount_msat,
        timestamp=timestamp,
        payment_hash=payment_hash,
        payment_secret=payment_secret,
        private_key=private_key,
        description=description,
        description_hash=description_hash,
        expiry=expiry,
        min_final_cltv_expiry_delta=cltv,
        features=INVOICE_FEATURES,
    )


def _mint_pypi(**kw: Any) -> str:
    import bolt11
    from bitstring import Bits

    tags = bolt11.Tags()
    tags.add(bolt11.TagChar.payment_hash, kw["payment_hash"])
    tags.add(bolt11.TagChar.payment_secret, kw["payment_secret"])
    if kw["description_hash"] is not None:
        tags.add(bolt11.TagChar.description_hash, kw["description_hash"])
    else:
        tags.add(bolt11.TagChar.description, kw["description"] or "")
    tags.add(bolt11.TagChar.expire_time, kw["expiry"])
    tags.add(bolt11.TagChar.min_final_cltv_expiry, kw["cltv"])
    value = _features_int(INVOICE_FEATURES)
    width = -(-value.bit_length() // 5) * 5
    tags.add(
        bolt11.TagChar.features, bolt11.Features.from_bitstring(Bits(uint=value, length=width))
    )
    for hint in kw["route_hints"] or ():
        tags.add(bolt11.TagChar.route_hint, bolt11.RouteHint.from_list([hint]))
    amount = kw["amount_msat"]
    invoice = bolt11.Bolt11(
        currency=kw["currency"],
        date=kw["timestamp"],
        tags=tags,
        amount_msat=bolt11.MilliSatoshi(amount) if amount else None,
    )
    return bolt11.encode(invoice, private_key=kw["private_key"].hex())


def decode(invstring: str) -> dict[str, Any]:
    """CLN's `decode` result for a BOLT11 string (shape of decode_b.json).

    Raises ValueError when the string is not a BOLT11 invoice.
    """
    import bolt11
    from coincurve.ecdsa import cdata_to_der, deserialize_recoverable, recoverable_convert

    text = invstring.strip()
    if text.lower().startswith("lightning:"):
        text = text[len("lightning:") :]
    try:
        inv = bolt11.decode(text)
    except Exception as exc:  # the PyPI decoder raises many exception types
        raise ValueError(f"Invalid bolt11: {exc}") from None
    out: dict[str, Any] = {
        "type": "bolt11 invoice",
        "currency": inv.currency,
        "created_at": inv.date,
        "expiry": inv.expiry,
        "payee": inv.payee or (inv.signature.recover_public_key() if inv.signature else None),
    }
    if inv.amount_msat:
        out["amount_msat"] = int(inv.amount_msat)
    if inv.description is not None:
        out["description"] = inv.description
    if inv.description_hash is not None:
        out["description_hash"] = inv.description_hash
    out["min_final_cltv_expiry"] = inv.min_final_cltv_expiry
    if inv.payment_secret:
        out["payment_secret"] = inv.payment_secret
    if inv.features is not None:
        value = inv.features.data.uint
        out["features"] = value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big").hex()
    hints = inv.route_hints or []
    if hints:
        out["routes"] = [
            [
                {
                    "pubkey": r.public_key,
                    "short_channel_id": r.short_channel_id,
                    "fee_base_msat": r.base_fee,
                    "fee_proportional_millionths": r.ppm_fee,
                    "cltv_expiry_delta": r.cltv_expiry_delta,
                }
                for r in hint.routes
            ]
            for hint in hints
        ]
    out["payment_hash"] = inv.payment_hash
    if inv.signature is not None:
        sig = recoverable_convert(deserialize_recoverable(inv.signature.signature_data))
        out["signature"] = cdata_to_der(sig).hex()
    out["valid"] = True
    return out
