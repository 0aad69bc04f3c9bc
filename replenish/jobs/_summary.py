"""The summary a finished plan, train, forecast or optimize job prints on stdout."""
from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["print_summary"]


def print_summary(summary: dict[str, Any]) -> None:
    """The job's summary on stdout, each line prefixed; quantities in units of stock, the
    order value in the currency of the unit costs (or said to be unknown without them)."""
    def line(text: str) -> None:
        print(f"[replenish] {text}", flush=True)

    out = Path(summary["out"])
    if summary["series"] == 0 and summary.get("trained_series"):   # the train job
        line(f"done in {summary['seconds']:.0f} s: model trained on "
             f"{summary['trained_series']} series")
    else:
        line(f"done in {summary['seconds']:.0f} s: {summary['series']} SKU-locations, "
             f"{summary['shards']} shards")
    for name in ("forecasts", "orders"):
        if (out / name).exists():
            line(f"  {name:10s} {out / name}")
    if summary.get("model"):
        line(f"  {'model':10s} {summary['model']}")
    if "orders_today" in summary:
        value = f"value {summary['order_value']:,.0f} (currency of the unit costs)" \
            if summary.get("unit_cost_given", True) else \
            "value unknown: the inventory has no unit_cost (order_value counts each unit as 1)"
        line(f"  orders to place today: {summary['orders_today']:,} SKU-locations, "
             f"{summary['units_to_order']:,.0f} units of stock, {value}")
        line(f"  safety stock: {summary['safety_stock_units']:,.0f} units of stock")
    if summary.get("repairs"):   # each was said above; the counts are in the manifest
        n = len(summary["repairs"])
        line(f"  data repairs and adjustments: {n} kind{'s' if n != 1 else ''}, counted in the "
             f"manifest's summary.repairs")
    if summary.get("exceptions"):
        money = "money at stake" if summary.get("unit_cost_given", True) else \
            "value at stake, in units: no unit costs"
        top = ", ".join(f"{k} {v['items']} ({v['value']:,.0f})"
                        for k, v in list(summary["exceptions"].items())[:4])
        line(f"  exceptions (items, {money}): {top}")
        line(f"  {'exceptions':10s} {out / 'exceptions'}")
    if summary.get("budget"):
        b = summary["budget"]
        line(f"  {b['kind']}: {b['orders_cut']} orders cut by {b['units_cut']:,.0f} units of stock "
             f"over {b['groups_limited']} limited groups")
    if summary.get("report"):
        line(f"  {'report':10s} {summary['report']}")
    line(f"  manifest   {out / 'manifest.json'}")
