"""The report's pictures: matplotlib figures rendered to PNG bytes (no pyplot, no global state).

Each function takes plain arrays and returns PNG bytes; :mod:`replenish.jobs.report` embeds
them in the HTML as base64 data URIs.
"""
from __future__ import annotations

import io
from typing import Sequence

import numpy as np

__all__ = ["png", "fan_and_inventory", "lead_time_demand", "importances", "ledger_trends",
           "backtest_curves", "money_by_reason"]

DPI = 80
BLUE, ORANGE, GREEN, RED, GREY = "#1f5fa8", "#e07b00", "#2e8b57", "#c0392b", "#666666"


def _figure(w: float, h: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=(w, h), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def _tick(v: float, _pos=None) -> str:
    """An axis number as a planner writes it: 65,000 (not 65000 or a 1e4 multiplier), 0.25."""
    return f"{v:,.0f}" if abs(v) >= 1000 or float(v).is_integer() else f"{v:.4g}"


def png(fig) -> bytes:
    from matplotlib.ticker import FuncFormatter, ScalarFormatter
    for ax in fig.axes:        # numeric axes (not the dates) with separators, no offset text
        for axis in (ax.xaxis, ax.yaxis):
            if type(axis.get_major_formatter()) is ScalarFormatter:
                axis.set_major_formatter(FuncFormatter(_tick))
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


def _dates_axis(ax) -> None:
    import matplotlib.dates as mdates
    # evenly spaced ticks (month-aligned ones can fall a day apart, labels overlapping)
    loc = mdates.AutoDateLocator(minticks=3, maxticks=7, interval_multiples=False)
    ax.xaxis.set_major_locator(loc)
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%d %b\n%Y"))
    ax.tick_params(labelsize=8)
    ax.grid(True, alpha=0.3)


def _legend_below(ax, ncol: int = 4) -> None:
    # below the axes, so that it never hides a line
    ax.legend(fontsize=8, frameon=False, loc="upper center", bbox_to_anchor=(0.5, -0.24),
              ncol=ncol)


def fan_and_inventory(title: str, actual_dates: np.ndarray, actuals: np.ndarray,
                      fc_dates: np.ndarray, levels: np.ndarray, quantiles: np.ndarray,
                      inv_dates: np.ndarray, on_hand: np.ndarray, position: np.ndarray,
                      reorder_point: float, order_up_to: float, arrivals: np.ndarray,
                      orders: np.ndarray, unit: str = "units / day") -> bytes:
    """Left: forecast fan (quantile bands) over the recent actuals. Right: projected on hand
    and inventory position with the reorder point, order-up-to level and order arrivals.

    ``quantiles`` (H, Q) units per period; ``on_hand``/``position`` (H + 1,) units at
    ``inv_dates``; ``arrivals``/``orders`` (H,) units received / placed per period.
    """
    fig = _figure(13.5, 3.9)
    fig.suptitle(title, fontsize=11, x=0.01, ha="left", fontweight="bold")
    a, b = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.25, 1]})
    if len(actuals):
        a.plot(actual_dates, actuals, color="black", lw=1.2, marker=".", ms=3, label="actual")
    q = np.asarray(quantiles)
    n_q = len(levels)
    for i in range(n_q // 2):
        lo, hi = i, n_q - 1 - i
        a.fill_between(fc_dates, q[:, lo], q[:, hi], color=BLUE, lw=0,
                       alpha=0.12 + 0.5 * (i + 1) / (n_q // 2 + 1) * 0.5,
                       label=f"{levels[lo]:g}-{levels[hi]:g}" if i in (0, n_q // 2 - 1) else None)
    mid = int(np.argmin(np.abs(np.asarray(levels) - 0.5)))
    a.plot(fc_dates, q[:, mid], color=BLUE, lw=1.6, label="median")
    if len(fc_dates):
        a.axvline(fc_dates[0], color=GREY, lw=0.8, ls=":")
    a.set_ylabel(f"demand, {unit}")
    a.set_ylim(bottom=0)
    a.set_title("forecast over recent actuals", fontsize=9)
    _legend_below(a, ncol=4)
    _dates_axis(a)
    b.step(inv_dates, on_hand, where="post", color=GREEN, lw=1.6, label="on hand")
    b.plot(inv_dates, position, color=BLUE, lw=1.0, ls="--", label="position")
    b.axhline(reorder_point, color=ORANGE, lw=1.2, label="reorder point")
    if order_up_to > reorder_point + 1e-9:
        b.axhline(order_up_to, color=ORANGE, lw=1.0, ls=":", label="order-up-to")
    got = np.flatnonzero(np.asarray(arrivals) > 0)
    if len(got):
        b.scatter(inv_dates[got], on_hand[got], marker="^", s=40 if len(got) < 8 else 16,
                  color=RED, zorder=3, label="arrival")
    placed = np.flatnonzero(np.asarray(orders) > 0)
    if len(placed):
        b.scatter(inv_dates[placed], position[placed], marker="o", s=18 if len(placed) < 8 else 8,
                  color=BLUE, zorder=3, label="order placed")
    b.set_ylabel("units")
    b.set_title("projected inventory (mean forecast, policy followed)", fontsize=9)
    b.set_ylim(bottom=0)
    _legend_below(b, ncol=6)
    _dates_axis(b)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    return png(fig)


def lead_time_demand(title: str, samples: np.ndarray, mean: float, reorder_point: float,
                     safety_stock: float, on_hand_position: float, label: str = "demand over R + L") -> bytes:
    """Histogram of the demand the reorder point protects (over review period plus lead
    time, or under rounded orders the lead time's plus the undershoot), with the mean, the
    safety stock (from the mean to the reorder point) and the reorder point marked."""
    fig = _figure(13.5, 3.6)
    ax = fig.subplots()
    x = np.asarray(samples, np.float64)
    bins = min(60, max(10, int(np.sqrt(len(x)))))
    ax.hist(x, bins=bins, color=BLUE, alpha=0.55, density=True, label=label)
    ax.axvspan(min(mean, reorder_point), max(mean, reorder_point), color=ORANGE, alpha=0.18,
               label=f"safety stock {safety_stock:,.1f}")
    ax.axvline(mean, color="black", lw=1.2, ls="--", label=f"mean {mean:,.1f}")
    share = float((x <= reorder_point).mean()) if len(x) else float("nan")
    ax.axvline(reorder_point, color=ORANGE, lw=2,
               label=f"reorder point s = {reorder_point:,.1f} (P(D <= s) = {share:.3f})")
    ax.axvline(on_hand_position, color=GREEN, lw=1.2, ls=":",
               label=f"inventory position {on_hand_position:,.1f}")
    ax.set_xlabel("units over the protection interval")
    ax.set_ylabel("probability density")
    ax.set_title(title, fontsize=10, loc="left")
    ax.legend(fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    return png(fig)


def importances(groups: dict[str, dict[str, float]]) -> bytes:
    """One horizontal bar chart per group (static, encoder, decoder), largest on top."""
    names = [g for g in ("static", "encoder", "decoder") if groups.get(g)]
    rows = max(len(groups[g]) for g in names)
    fig = _figure(13.5, 1.0 + 0.27 * rows)
    axes = np.atleast_1d(fig.subplots(1, len(names)))
    for ax, g in zip(axes, names):
        items = sorted(groups[g].items(), key=lambda kv: kv[1])
        ax.barh([k for k, _ in items], [v for _, v in items], color=BLUE)
        ax.set_title(f"{g} variables", fontsize=10)
        ax.set_xlabel("share of selection weight")
        ax.tick_params(axis="y", labelsize=8)
        ax.grid(True, axis="x", alpha=0.3)
    fig.tight_layout()
    return png(fig)


def ledger_trends(dates: np.ndarray, accuracy: dict[str, np.ndarray],
                  service: dict[str, np.ndarray]) -> bytes:
    """Left: accuracy measures over time. Right: realised service against the target."""
    fig = _figure(13.5, 3.8)
    a, b = fig.subplots(1, 2)
    for (name, v), c in zip(accuracy.items(), (BLUE, ORANGE, GREEN, RED)):
        a.plot(dates, v, marker="o", ms=3, color=c, label=name)
    a.axhline(0, color=GREY, lw=0.6)
    a.set_title("forecast accuracy per run (fractions; RMSSE, SPL scaled)", fontsize=10)
    _legend_below(a)
    _dates_axis(a)
    styles = {"target": dict(color=GREY, ls="--")}
    for (name, v), c in zip(service.items(), (BLUE, GREEN, GREY)):
        b.plot(dates, v, marker="o", ms=3, label=name, **styles.get(name, {"color": c}))
    b.set_title("realised service per run", fontsize=10)
    b.set_ylabel("fraction")
    _legend_below(b)
    _dates_axis(b)
    if len(dates) and np.unique(dates).size == 1:   # one run: a week either side
        for ax in (a, b):
            ax.set_xlim(dates[0] - np.timedelta64(7, "D"), dates[0] + np.timedelta64(7, "D"))
    fig.tight_layout()
    return png(fig)


def backtest_curves(curves: dict[str, dict[str, np.ndarray]]) -> bytes:
    """Fill rate and cycle service level against average on-hand value, one line per
    policy (points: the service targets)."""
    fig = _figure(13.5, 4.0)
    axes = fig.subplots(1, 2)
    for ax, metric, label in ((axes[0], "fill_rate", "fill rate"),
                              (axes[1], "cycle_service_level", "cycle service level")):
        for (policy, c), color in zip(curves.items(), (BLUE, ORANGE, GREEN, RED, GREY)):
            o = np.argsort(c["avg_on_hand_value"])
            ax.plot(c["avg_on_hand_value"][o], c[metric][o], marker="o", ms=4, color=color,
                    label=policy)
            for x, y, t in zip(c["avg_on_hand_value"][o], c[metric][o], c["target"][o]):
                ax.annotate(f"{t:g}", (x, y), fontsize=6, xytext=(3, -8), textcoords="offset points")
        ax.set_xlabel("average on-hand value (currency)")
        ax.set_ylabel(label)
        ax.set_title(f"{label} against inventory", fontsize=10)
        ax.grid(True, alpha=0.3)
        _legend_below(ax)
    fig.tight_layout()
    return png(fig)


def money_by_reason(reasons: Sequence[str], values: Sequence[float], counts: Sequence[int]) -> bytes:
    """Money at stake per exception reason (bars, labelled with the item counts)."""
    fig = _figure(13.5, 0.9 + 0.32 * max(len(reasons), 1))
    ax = fig.subplots()
    y = np.arange(len(reasons))[::-1]
    ax.barh(y, values, color=ORANGE)
    ax.set_yticks(y, list(reasons), fontsize=9)
    for yi, v, n in zip(y, values, counts):
        ax.text(v, yi, f"  {v:,.0f} ({n:,} item{'s' if n != 1 else ''})", va="center", fontsize=8)
    ax.set_xlabel("money at stake (currency)")
    ax.set_xlim(0, max(values) * 1.35 if len(values) and max(values) > 0 else 1)
    ax.grid(True, axis="x", alpha=0.3)
    fig.tight_layout()
    return png(fig)
