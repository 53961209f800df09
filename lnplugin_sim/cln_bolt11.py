"""BOLT11 decoding for the CLN simulator, in the shape of CLN's `decode`.

It uses the `bolt11` PyPI package (a test dependency), a decoder apart from
lnplugin's own. The simulator mints with `lnplugin.bolt11.encode`.
"""

from __future__ import annotations

from typing import Any


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
