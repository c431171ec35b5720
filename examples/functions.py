"""The Python step functions the examples call. A worker loads them when started with
`RTE_FUNCTION_MODULES=examples.functions` (or `rte up -m examples.functions`), from the repository's
root folder.

A function receives the step's `args` as keyword arguments (JSON values) and returns a JSON value,
which becomes the step's output. An exception fails the step with the category `user_code`; one
whose `non_retryable` attribute is true is not retried.
"""

from __future__ import annotations

from typing import Any

from rte.functions import function

HIGH_PRIORITY_SCORE = 50


class MissingAmount(ValueError):
    non_retryable = True  # the same order fails the same way every time: retrying cannot help


@function("score_order")
def score_order(order: dict[str, Any], position: int = 0) -> dict[str, Any]:
    """A priority score for one order: a point per 10 of amount, 5 per item."""
    if "amount" not in order:
        raise MissingAmount(f"order {order.get('id')} has no amount")
    score = round(order["amount"] / 10 + 5 * len(order.get("items") or []), 1)
    return {
        "order": order["id"],
        "position": position,
        "score": score,
        "priority": "high" if score >= HIGH_PRIORITY_SCORE else "normal",
    }


@function("shipping_quote")
def shipping_quote(country: str, weight_kg: float, context: Any) -> dict[str, Any]:
    """A flat rate per country plus a price per kilogram. A parameter named `context` receives the
    step's context: ids, the attempt, and `log()` for the step's log."""
    base = {"DE": 4.9, "FR": 5.9, "NL": 5.5}.get(country.upper(), 14.9)
    price = round(base + 1.2 * weight_kg, 2)
    context.log("info", f"{weight_kg} kg to {country.upper()}: {price} EUR")
    return {"country": country.upper(), "price": price}
