"""Names and constants shared by the simulator's two loops (``simulate.py``, ``_sim_cpu.py``)."""

#: Per-item, per-segment sums returned by :func:`simulate_inventory` (shape (n, S)).
SIM_KEYS = (
    "periods",            # periods simulated in the segment
    "demand",             # units demanded
    "sold",               # units met from stock in the period they were demanded
    "short",              # units not met when demanded (backordered or lost)
    "lost",               # units lost (lost sales only; 0 with backorders)
    "received",           # units received
    "ordered",            # units ordered
    "orders",             # orders placed
    "expired",            # units written off at the end of their shelf life
    "cycles",             # replenishment cycles that ended in the segment
    "stockout_cycles",    # of them, cycles with a stockout
    "stockout_periods",   # periods with unmet demand or outstanding backorders
    "on_hand_sum",        # sum of end-of-period on hand, unit-periods
    "backorder_sum",      # sum of end-of-period backorders, unit-periods
    "holding_cost", "stockout_cost", "ordering_cost", "waste_cost",   # currency
)
#: The sums the loops accumulate (the periods and the costs are derived from them).
ACC = SIM_KEYS[1:14]
#: Per-period paths recorded with ``record=True``.
DAILY_KEYS = ("on_hand", "backorders", "received", "sold", "short", "expired", "ordered")

MASK = (1 << 64) - 1
# odd multipliers of the counter-based hash (seed, item id, period, stream)
C_SEED, C_ITEM, C_T, C_STREAM = (0x9E3779B97F4A7C15, 0xD1B54A32D192ED03, 0xAEF17502108EF2D9,
                                 0xCF1BBCDCB7A56463)

__all__ = ["SIM_KEYS", "ACC", "DAILY_KEYS", "MASK", "C_SEED", "C_ITEM", "C_T", "C_STREAM"]
