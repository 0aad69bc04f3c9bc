"""``replenish report DIR``: one self-contained HTML file about a finished plan.

The file opens offline (no script, no font or style sheet fetched: every picture is a PNG
embedded as a base64 data URI) and stays small for any number of items, since it holds
aggregates and a fixed number of items (``items`` per section): about 1 MB.

Sections (each always present; one whose input was not given says how to add it):

- ``summary``: items, orders, units and value to order, expected fill rate (weighted by
  demand), safety stock, stock on hand, data repairs, timings;
- ``exceptions``: money at stake per reason, and the most valuable exceptions;
- ``top-exceptions`` and ``least-accurate``: per item a forecast fan chart (quantile bands
  over the recent actuals) and the projected inventory (mean forecast, policy followed) with
  reorder point, order-up-to level and order arrivals; least accurate: highest recent RMSSE
  from an evaluate ledger given to the plan, else the most uncertain forecasts;
- ``lead-time-demand``: for the top item, demand over review period plus lead time
  (sampled from its forecasts) with safety stock and reorder point marked, and what its
  order-up-to level is made of;
- ``importance``: the TFT's variable importances (static, encoder, decoder), aggregated
  over a sample of series when the model was trained;
- ``ledger``: accuracy and realised service over time (``--ledger``, an evaluate ledger);
- ``backtest``: service against inventory per policy (``--backtest``, a backtest's folder
  with ``summary.parquet`` and ``backtest.json``).
"""
from __future__ import annotations

import base64
import html
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pds

from ..engine.contract import DataError
from . import _charts

__all__ = ["write_report", "build_report", "SECTIONS"]

log = logging.getLogger("replenish")

#: Section ids, in the order they appear.
SECTIONS = ("summary", "exceptions", "top-exceptions", "least-accurate", "lead-time-demand",
            "importance", "ledger", "backtest")

#: Backtest summary columns the report reads (one row per policy and target).
BACKTEST_COLUMNS = ("policy", "target", "fill_rate", "cycle_service_level", "avg_on_hand_value")


def write_report(run: str | Path, *, ledger: str | Path | None = None,
                 backtest: str | Path | None = None, out: str | Path | None = None,
                 items: int = 6) -> Path:
    """Write the report of the finished job in ``run`` (default ``run/report.html``,
    atomically) and return its path."""
    path = Path(out) if out is not None else Path(run) / "report.html"
    text = build_report(run, ledger=ledger, backtest=backtest, items=items)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path


# ---- reading the run ----------------------------------------------------------------------

def _hive(path: Path) -> pds.Dataset:
    return pds.dataset(str(path), format="parquet",
                       partitioning=pds.partitioning(pa.schema([("location", pa.string())]),
                                                     flavor="hive"))


def _pairs(sku, location) -> np.ndarray:
    from ..engine.validate import key_text
    return np.asarray(key_text(sku), dtype=object) + "\x1f" + np.asarray(key_text(location), dtype=object)


def _select(path: Path, keys: list[tuple[Any, Any]], columns: list[str] | None = None) -> pa.Table:
    """Rows of a location-partitioned dataset for the (sku, location) pairs ``keys``."""
    from ..engine.validate import key_text
    locs = sorted(set(key_text([str(loc) for _, loc in keys])))
    t = _hive(path).to_table(filter=pc.field("location").isin(locs), columns=columns)
    want = set(_pairs([str(s) for s, _ in keys], [str(loc) for _, loc in keys]))
    mask = np.isin(_pairs(t.column("sku"), t.column("location")), list(want))
    return t.filter(pa.array(mask))


def _forecasts_dir(run: Path, manifest: dict[str, Any]) -> Path | None:
    if (run / "forecasts").exists():
        return run / "forecasts"
    src = (manifest.get("config") or {}).get("forecasts")
    if isinstance(src, str) and "://" not in src and Path(src).exists():
        p = Path(src)
        return p / "forecasts" if (p / "forecasts").exists() else p
    return None


def _model_meta(run: Path, manifest: dict[str, Any]) -> dict[str, Any] | None:
    for cand in ((manifest.get("summary") or {}).get("model"), (manifest.get("config") or {}).get("model"),
                 str(run / "model")):
        if cand and (Path(cand) / "model.json").exists():
            return json.loads((Path(cand) / "model.json").read_text())
    return None


def _num(t: pa.Table, c: str) -> np.ndarray:
    col = t.column(c)
    return pc.fill_null(col.cast(pa.float64()), np.nan).to_numpy(zero_copy_only=False)


# ---- HTML helpers --------------------------------------------------------------------------

_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:0;color:#222;background:#fafafa}
header{background:#1f5fa8;color:#fff;padding:14px 28px}
header h1{margin:0;font-size:22px} header p{margin:4px 0 0;font-size:13px;opacity:.9}
nav{padding:8px 28px;background:#e9eef5;font-size:13px} nav a{margin-right:14px;color:#1f5fa8}
section{padding:10px 28px 18px;border-bottom:1px solid #ddd;background:#fff;margin-bottom:6px}
h2{font-size:18px;margin:10px 0} h3{font-size:14px;margin:14px 0 4px}
.cards{display:flex;flex-wrap:wrap;gap:10px}
.card{border:1px solid #d5dbe3;border-radius:6px;padding:8px 12px;min-width:150px;background:#f6f8fb}
.card b{display:block;font-size:18px} .card span{font-size:12px;color:#555}
table{border-collapse:collapse;font-size:12px;margin:6px 0}
th,td{border:1px solid #d5dbe3;padding:3px 7px;text-align:right} th{background:#eef2f7}
td.t,th.t{text-align:left}
img{max-width:100%;height:auto;display:block;margin:6px 0}
.note{color:#666;font-size:13px} .facts{font-size:12px;color:#333;margin:2px 0 10px}
footer{padding:10px 28px;font-size:12px;color:#666}
"""


def _e(v: Any) -> str:
    if isinstance(v, float):
        if not np.isfinite(v):
            return "-" if np.isnan(v) else "inf"
        if v.is_integer() or abs(v) >= 1000:   # 311, 4,586: no decimals that say nothing
            return f"{v:,.0f}"
        # 9.05 and 470.84 units (2 decimals), a fraction to 3 (0.987), no trailing zeros
        return f"{v:,.{3 if abs(v) < 1 else 2}f}".rstrip("0").rstrip(".")
    if v is None:
        return "-"
    return html.escape(str(v))


def _days(v: Any) -> str:
    return "-" if v is None or not np.isfinite(v) and np.isnan(v) else \
        "inf" if not np.isfinite(v) else f"{v:,.1f}"


def _review_words(review_days: Any) -> str:
    """How often an item is reviewed, in words: "reviewed daily", "review every 7 days"."""
    if review_days is None:
        return "review period not recorded"
    v = float(review_days)
    return "reviewed daily" if v == 1 else f"review every {v:,.4g} days"


def _img(data: bytes, alt: str) -> str:
    return (f'<img alt="{html.escape(alt)}" src="data:image/png;base64,'
            f'{base64.b64encode(data).decode("ascii")}">')


def _table(header: list[str], rows: list[list[Any]], text_cols: int = 0) -> str:
    head = "".join(f'<th class="{"t" if i < text_cols else ""}">{html.escape(h)}</th>'
                   for i, h in enumerate(header))
    body = "".join("<tr>" + "".join(f'<td class="{"t" if i < text_cols else ""}">{_e(v)}</td>'
                                    for i, v in enumerate(r)) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _card(value: str, label: str) -> str:
    return f'<div class="card"><b>{value}</b><span>{html.escape(label)}</span></div>'


def _section(sid: str, title: str, body: str) -> str:
    return f'<section id="{sid}"><h2>{html.escape(title)}</h2>{body}</section>'


# ---- the report ----------------------------------------------------------------------------

def build_report(run: str | Path, *, ledger: str | Path | None = None,
                 backtest: str | Path | None = None, items: int = 6) -> str:
    """The report's HTML text (see the module docstring)."""
    from ._outputs import read_manifest, read_output
    run = Path(run)
    if not run.is_dir():
        raise DataError(f"{run} does not exist (give the --out folder of a finished plan or optimize job)")
    if not (run / "_SUCCESS").exists():
        raise DataError(f"{run} holds no finished job (no _SUCCESS marker)")
    if not (run / "orders").exists():
        raise DataError(f"{run} holds no orders (a plan or optimize job's folder)")
    t0 = time.perf_counter()
    manifest = read_manifest(run)
    summary = manifest.get("summary") or {}
    step = 7 if summary.get("freq") == "W" else 1
    unit = "units / week" if step == 7 else "units / day"
    orders = read_output(run, "orders", columns=[
        "as_of", "order_quantity", "order_value", "expected_fill_rate", "protection_demand_mean",
        "safety_stock", "unit_cost", "on_hand", "exception", "exception_value", "binding_rule"])
    parts = [_summary_section(run, manifest, orders)]
    exc_rows = _exceptions_section(run, parts)
    hl = _highlights(run)
    fc_dir = _forecasts_dir(run, manifest)
    cfg = manifest.get("config") or {}
    # the sampling path's cycle-service reorder point covers the demand up to the order's
    # trigger under the order rule (kernels.undershoot): draw that demand, not R + L
    plot = _ItemPlotter(run, fc_dir, step, unit,
                        rounded=cfg.get("method", "sample") == "sample" and cfg.get("target", "csl") == "csl",
                        draws=(int(cfg.get("n_samples") or 1000), int(cfg.get("seed") or 0)))
    top = _pick(hl, "exception", items)
    parts.append(_section("top-exceptions", "Top exceptions: forecast and projected inventory",
                          plot.items(top, exc_rows) if top else
                          '<p class="note">No exceptions were raised.</p>'))
    worst = _pick(hl, "least_accurate", items)
    rmsse_known = bool(manifest.get("config", {}).get("ledger"))
    note = ("<p class='note'>Ranked by the highest RMSSE over the recent runs of the evaluate "
            "ledger the plan read.</p>" if rmsse_known else
            "<p class='note'>No evaluate ledger was given to the plan (<code>replenish plan ... "
            "--ledger L</code>), so these are the most uncertain forecasts instead: the highest "
            "coefficient of variation of demand over the protection interval.</p>")
    parts.append(_section("least-accurate", "Least accurate items",
                          note + (plot.items(worst, exc_rows) if worst else
                                  '<p class="note">No item to show.</p>')))
    first = (top or worst or [None])[0]
    parts.append(_section("lead-time-demand", "Lead-time demand of one item",
                          plot.lead_time_demand(first) if first is not None else
                          '<p class="note">No item to show.</p>'))
    parts.append(_importance_section(_model_meta(run, manifest)))
    parts.append(_ledger_section(ledger))
    parts.append(_backtest_section(backtest))
    as_of = orders.column("as_of")
    as_of_text = str(pc.min(as_of).as_py()) if orders.num_rows else "-"
    nav = "".join(f'<a href="#{s}">{s.replace("-", " ")}</a>' for s in SECTIONS)
    head = (f"<header><h1>replenish plan as of {html.escape(as_of_text)}</h1><p>{html.escape(str(run))}"
            f" &middot; finished {html.escape(str(manifest.get('finished', '-')))} &middot; "
            f"{summary.get('series', orders.num_rows):,} SKU-locations</p></header><nav>{nav}</nav>")
    foot = (f"<footer>Written by replenish on {time.strftime('%Y-%m-%d %H:%M')} in "
            f"{time.perf_counter() - t0:.1f} s. Self-contained: opens offline; pictures are "
            f"embedded.</footer>")
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>replenish report '
            f"{html.escape(as_of_text)}</title><style>{_CSS}</style></head><body>{head}"
            + "".join(parts) + foot + "</body></html>")


def _summary_section(run: Path, manifest: dict[str, Any], o: pa.Table) -> str:
    s = manifest.get("summary") or {}
    qty, val = _num(o, "order_quantity"), _num(o, "order_value")
    w = _num(o, "protection_demand_mean")
    fr = _num(o, "expected_fill_rate")
    ok = np.isfinite(fr) & np.isfinite(w)
    fill = float(np.sum(fr[ok] * w[ok]) / np.sum(w[ok])) if np.sum(w[ok]) > 0 else float("nan")
    cost = _num(o, "unit_cost")
    ss = _num(o, "safety_stock")
    n_exc = int(pc.sum(pc.is_valid(o.column("exception"))).as_py() or 0)
    money = float(np.nansum(_num(o, "exception_value")))
    cards = [
        _card(f"{o.num_rows:,}", "SKU-locations planned"),
        _card(f"{int((qty > 0).sum()):,}", "orders to place today"),
        _card(f"{qty.sum():,.0f}", "units to order"),
        _card(f"{val.sum():,.0f}", "order value (currency)"),
        _card(f"{fill:.3f}" if np.isfinite(fill) else "-", "expected fill rate (demand-weighted)"),
        _card(f"{np.sum(ss * cost):,.0f}", f"safety stock value ({ss.sum():,.0f} units)"),
        _card(f"{np.sum(_num(o, 'on_hand') * cost):,.0f}", "stock on hand (value)"),
        _card(f"{n_exc:,}", f"items with an exception ({money:,.0f} at stake)"),
    ]
    rules = o.group_by("binding_rule").aggregate([("binding_rule", "count")])
    rule_rows = sorted(zip(rules.column("binding_rule").to_pylist(),
                           rules.column("binding_rule_count").to_pylist()), key=lambda r: -r[1])
    repairs = s.get("repairs") or {}
    timings = s.get("timings") or {}
    body = [f'<div class="cards">{"".join(cards)}</div>']
    body.append("<h3>What bound the order quantities</h3>" + _table(
        ["rule", "SKU-locations"], [[r, c] for r, c in rule_rows], 1))
    body.append("<h3>Data repairs</h3>" + (_table(["repair", "count"], sorted(repairs.items()), 1)
                                           if repairs else '<p class="note">None.</p>'))
    if s.get("budget"):
        b = s["budget"]
        body.append("<h3>Budget</h3>" + _table(
            ["kind", "groups limited", "limit", "spend (limited groups)", "orders cut", "units cut"],
            [[b["kind"], b["groups_limited"], b["limit"], b["spend_limited_groups"], b["orders_cut"],
              b["units_cut"]]], 1))
    if timings:
        body.append("<h3>Timings</h3>" + _table(["stage", "seconds"],
                                                [[k, float(v)] for k, v in timings.items()], 1))
    meta = _model_meta(run, manifest) or {}
    trained = s.get("trained_series") or (meta.get("history") or {}).get("series")
    body.append(f'<p class="note">Model: {_e(s.get("model"))}; trained on '
                f'{_e(trained)} series; {s.get("shards", "-")} shards; period '
                f'{_e(s.get("freq"))}.</p>')
    return _section("summary", "Run summary", "".join(body))


def _exceptions_section(run: Path, parts: list[str]) -> pa.Table | None:
    from .exceptions import read_exceptions
    try:
        t = read_exceptions(run)
    except DataError:
        parts.append(_section("exceptions", "Exceptions", '<p class="note">This run wrote no '
                              'exceptions (written by an older replenish?).</p>'))
        return None
    if t.num_rows == 0:
        parts.append(_section("exceptions", "Exceptions", '<p class="note">No exceptions.</p>'))
        return t
    g = t.group_by("reason").aggregate([("value", "sum"), ("value", "count")])
    rows = sorted(zip(g.column("reason").to_pylist(), g.column("value_sum").to_pylist(),
                      g.column("value_count").to_pylist()), key=lambda r: -r[1])
    img = _img(_charts.money_by_reason([r[0] for r in rows], [r[1] for r in rows],
                                       [r[2] for r in rows]), "money at stake per reason")
    head = t.slice(0, 25)
    cols = ["rank", "sku", "location", "reason", "value", "order_quantity", "inventory_position",
            "order_up_to", "days_of_supply_on_hand", "stockout_date"]
    table = _table(["rank", "sku", "location", "reason", "money at stake", "order (units)",
                    "position (units)", "order-up-to (units)", "days of supply", "stockout date"],
                   [[_days(v) if c == "days_of_supply_on_hand" else v
                     for c, v in zip(cols, (head.column(c)[i].as_py() for c in cols))]
                    for i in range(head.num_rows)], 4)
    parts.append(_section(
        "exceptions", "Exceptions, ranked by money at stake",
        f'<p class="note">{t.num_rows:,} exceptions on '
        f'{len(set(_pairs(t.column("sku"), t.column("location")))):,} SKU-locations; all of them '
        f'in <code>{html.escape(str(run / "exceptions"))}</code>.</p>{img}'
        f"<h3>The 25 most valuable</h3>{table}"))
    return t


def _highlights(run: Path) -> pa.Table | None:
    d = run / "highlights"
    if not d.exists() or not any(d.glob("*.parquet")):
        return None
    return pds.dataset(str(d), format="parquet").to_table()


def _pick(hl: pa.Table | None, why: str, k: int) -> list[dict[str, Any]]:
    """The ``k`` best-scoring highlight items of one kind, over all shards."""
    if hl is None or hl.num_rows == 0:
        return []
    t = hl.filter(pc.equal(hl.column("why"), why))
    t = t.take(pc.sort_indices(t, sort_keys=[("score", "descending")]))
    out, seen = [], set()
    for r in t.to_pylist():
        key = (str(r["sku"]), str(r["location"]))
        if key not in seen:
            seen.add(key)
            out.append(r)
        if len(out) == k:
            break
    return out


class _ItemPlotter:
    """Per-item pictures: reads the items' orders and forecasts rows once."""

    def __init__(self, run: Path, fc_dir: Path | None, step: int, unit: str, rounded: bool = False,
                 draws: tuple[int, int] = (1000, 0)):
        self.run, self.fc_dir, self.step, self.unit = run, fc_dir, step, unit
        # rounded: the plan's reorder point allows for rounded orders; draws: its samples and seed
        self.rounded, self.draws = rounded, draws
        self._cache: dict[tuple[str, str], tuple[dict, np.ndarray, np.ndarray, np.ndarray]] = {}

    def _load(self, picked: list[dict[str, Any]]) -> None:
        keys = [(r["sku"], r["location"]) for r in picked
                if (str(r["sku"]), str(r["location"])) not in self._cache]
        if not keys:
            return
        o = _select(self.run / "orders", keys)
        f = _select(self.fc_dir, keys) if self.fc_dir is not None else None
        okeys = _pairs(o.column("sku"), o.column("location"))
        fkeys = _pairs(f.column("sku"), f.column("location")) if f is not None else None
        qcols = [c for c in (f.column_names if f is not None else []) if c.startswith("q")]
        levels = np.array(sorted(float(c[1:]) for c in qcols))
        qcols = sorted(qcols, key=lambda c: float(c[1:]))
        for s, loc in keys:
            k = _pairs([str(s)], [str(loc)])[0]
            hit = np.flatnonzero(okeys == k)
            if not len(hit):
                continue
            row = o.slice(int(hit[0]), 1).to_pylist()[0]
            if f is not None:
                sub = f.filter(pa.array(fkeys == k))
                sub = sub.take(pc.sort_indices(sub, sort_keys=[("date", "ascending")]))
                q = np.stack([_num(sub, c) for c in qcols], -1) if sub.num_rows else np.zeros((0, 0))
                dates = sub.column("date").to_numpy().astype("datetime64[D]")
            else:
                q, dates = np.zeros((0, 0)), np.zeros(0, "datetime64[D]")
            self._cache[(str(s), str(loc))] = (row, levels, q, dates)

    def _projection(self, row: dict, levels: np.ndarray, q: np.ndarray):
        from ..kernels import daily_moments, projected_inventory
        mean_d, _ = daily_moments(levels, q[None].astype(np.float64))
        st = self.step

        def a(v):
            return np.array([np.nan if v is None else float(v)])
        return projected_inventory(
            a(row["on_hand"]), a(row["on_order"]), a(row["backorders"]), mean_d,
            reorder_point=a(row["reorder_point"]), order_up_to=a(row["order_up_to"]),
            lead_time=(a(row["lead_time_days"]) + a(row.get("dc_service_days") or 0.0)) / st,
            review_period=a(row["review_period_days"]) / st, first_order=a(row["order_quantity"]),
            moq=a(row["moq"]), case_pack=a(row["case_pack"]),
            max_order=np.array([np.inf if row["max_order"] is None else float(row["max_order"])]))

    def items(self, picked: list[dict[str, Any]], exc: pa.Table | None) -> str:
        self._load(picked)
        out = []
        for r in picked:
            got = self._cache.get((str(r["sku"]), str(r["location"])))
            if got is None:
                continue
            row, levels, q, fdates = got
            if not q.size:
                out.append(f'<p class="note">No forecasts found for {_e(r["sku"])} @ '
                           f'{_e(r["location"])}.</p>')
                continue
            proj = self._projection(row, levels, q)
            acts = np.asarray(r["actuals"] or [], np.float64)
            start = r["actuals_start"]
            adates = (np.datetime64(start, "D") + np.arange(len(acts)) * self.step
                      if start is not None else np.zeros(0, "datetime64[D]"))
            inv_dates = fdates[0] + np.arange(q.shape[0] + 1) * self.step
            reason = row.get("exception") or "-"
            value = row.get("exception_value")
            title = (f"SKU {r['sku']} at location {r['location']}: {reason}"
                     + (f", {value:,.0f} at stake" if value is not None and np.isfinite(value) else ""))
            img = _charts.fan_and_inventory(
                title, adates, acts, fdates, levels, q, inv_dates, proj["on_hand"][0],
                proj["position"][0], float(row["reorder_point"]), float(row["order_up_to"]),
                proj["arrivals"][0], proj["orders"][0], unit=self.unit)
            out.append(_img(img, f"forecast and projected inventory of {r['sku']} at {r['location']}"))
            out.append(self._facts(row, r))
        return "".join(out)

    def _facts(self, row: dict, r: dict) -> str:
        def g(v):   # 128,000 units, 12.5 units (not 1.28e+05)
            return "-" if v is None else _e(float(v))

        def d(v):
            return "-" if v is None else f"{float(v):,.1f}"

        def days(v):   # 1 day, 2 days, 0.5 days
            return "- days" if v is None else f"{g(v)} day{'' if float(v) == 1 else 's'}"
        bits = [f"order {g(row['order_quantity'])} units (need {g(row['order_need'])}, bound by "
                f"{_e(row['binding_rule'])})",
                f"position {g(row['inventory_position'])}",
                f"reorder point {g(row['reorder_point'])}", f"order-up-to {g(row['order_up_to'])}",
                f"days of supply {d(row['days_of_supply_on_hand'])} on hand, "
                f"{d(row['days_of_supply_after_order'])} after the order",
                f"stockout without the order {_e(row['stockout_date'])}",
                f"lead time {days(row['lead_time_days'])}, {_review_words(row['review_period_days'])}"]
        if r["why"] == "least_accurate":
            if row.get("forecast_rmsse") is not None and np.isfinite(row["forecast_rmsse"]):
                bits.append(f"recent RMSSE {g(row['forecast_rmsse'])}, bias "
                            f"{g(row.get('forecast_bias'))}")
            else:
                bits.append(f"coefficient of variation of protection-interval demand "
                            f"{g(r['score'])}")
        return f'<p class="facts">{"; ".join(bits)}.</p>'

    def lead_time_demand(self, r: dict[str, Any]) -> str:
        from ..kernels import sample_lead_time_demand
        self._load([r])
        got = self._cache.get((str(r["sku"]), str(r["location"])))
        if got is None or not got[2].size:
            return '<p class="note">No forecasts found for the item.</p>'
        row, levels, q, _ = got
        st = self.step
        lead = (float(row["lead_time_days"]) + float(row.get("dc_service_days") or 0.0)) / st
        sd = float(row.get("lead_time_std_days") or 0.0) / st
        rule = {}
        if self.rounded:
            cap = np.inf if row.get("max_order") is None else float(row["max_order"])
            rule = dict(order_gap=max(float(row["order_up_to"]) - float(row["reorder_point"]), 0.0),
                        moq=float(row.get("moq") or 0.0), case_pack=float(row.get("case_pack") or 0.0),
                        max_order=None if not np.isfinite(cap) else cap)
        samples = sample_lead_time_demand(levels, q[None].astype(np.float64), np.array([lead]),
                                          lead_time_std=np.array([sd]) if sd > 0 else None,
                                          review_period=np.array([float(row["review_period_days"]) / st]),
                                          n_samples=self.draws[0], seed=self.draws[1], **rule)[0]
        days = f"{float(row['review_period_days']) + lead * st:g} days"
        what = (f"demand over the lead time + how far below the reorder point the position is "
                f"when an order goes out ({_review_words(row['review_period_days'])}, orders "
                f"rounded)" if rule
                else f"demand over review period + lead time ({days})")
        title = f"SKU {r['sku']} at location {r['location']}: {what}"
        img = _img(_charts.lead_time_demand(title, samples, float(row["protection_demand_mean"]),
                                            float(row["reorder_point"]), float(row["safety_stock"]),
                                            float(row["inventory_position"]),
                                            label="demand the reorder point covers" if rule else "demand over R + L"),
                   f"lead-time demand of {r['sku']} at {r['location']}")
        parts = [["pipeline stock (demand over the lead time)", row["pipeline_stock"]],
                 ["cycle stock (review period, or the undershoot with rounded orders, + lot size)",
                  row["cycle_stock"]],
                 ["safety stock: demand uncertainty", row["safety_stock_demand"]],
                 ["safety stock: lead-time uncertainty", row["safety_stock_lead_time"]],
                 ["= order-up-to level", row["order_up_to"]]]
        return (img + "<h3>What the order-up-to level is made of (units)</h3>"
                + _table(["part", "units"], parts, 1))


def _importance_section(meta: dict[str, Any] | None) -> str:
    imp = ((meta or {}).get("history") or {}).get("variable_importance")
    if not imp:
        return _section("importance", "What the model looks at", '<p class="note">The model '
                        "records no variable importances (trained by an older replenish, or "
                        "no series long enough for a window).</p>")
    img = _img(_charts.importances({k: imp[k] for k in ("static", "encoder", "decoder")}),
               "TFT variable importances")
    return _section("importance", "What the model looks at: TFT variable importances",
                    f'<p class="note">Share of the variable selection weights, summed over the '
                    f'last window of {imp.get("series", "?")} sampled series when the model was '
                    f"trained (pytorch-forecasting's interpret_output).</p>{img}")


def _ledger_section(ledger: str | Path | None) -> str:
    title = "Accuracy and realised service over time"
    if ledger is None:
        return _section("ledger", title, '<p class="note">No evaluate ledger given '
                        "(<code>replenish report DIR --ledger accuracy.parquet</code>).</p>")
    import pyarrow.parquet as pq
    t = pq.read_table(ledger)
    if t.num_rows == 0:
        return _section("ledger", title, '<p class="note">The ledger is empty.</p>')
    xcol = "forecast_start" if "forecast_start" in t.column_names else "evaluated_at"
    x = np.array([np.datetime64(str(v)[:10]) for v in t.column(xcol).to_pylist()])
    acc = {c: _num(t, c) for c in ("rmsse", "spl", "wape", "bias") if c in t.column_names}
    svc = {}
    for c, name in (("service_realised_cycle_service_level", "cycle service level"),
                    ("service_realised_fill_rate", "fill rate"),
                    ("service_target_service_level", "target")):
        if c in t.column_names:
            svc[name] = _num(t, c)
    img = _img(_charts.ledger_trends(x, acc, svc), "accuracy and service over time")
    last = t.slice(t.num_rows - 1).to_pylist()[0]
    names = {"forecast_start": "forecast start", "series": "SKU-locations", "rmsse": "RMSSE",
             "spl": "SPL", "wape": "WAPE", "bias": "bias (fraction, + over-forecast)",
             "service_realised_cycle_service_level": "realised cycle service level",
             "service_target_service_level": "target service level",
             "service_realised_fill_rate": "realised fill rate"}
    cells = [[label, last.get(k)] for k, label in names.items() if k in last]
    return _section("ledger", title, f'<p class="note">{t.num_rows} evaluation'
                    f'{"s" if t.num_rows != 1 else ""} from '
                    f"{html.escape(str(ledger))}.</p>{img}<h3>Latest evaluation</h3>"
                    + _table(["measure", "value"], cells, 1))


def _backtest_section(backtest: str | Path | None) -> str:
    title = "Backtest: service against inventory"
    if backtest is None:
        return _section("backtest", title, '<p class="note">No backtest given '
                        "(<code>replenish report DIR --backtest BACKTEST_DIR</code>).</p>")
    import pyarrow.parquet as pq
    d = Path(backtest)
    path = d / "summary.parquet"
    if not path.exists():
        raise DataError(f"report: backtest folder {d} has no summary.parquet")
    t = pq.read_table(path)
    missing = [c for c in BACKTEST_COLUMNS if c not in t.column_names]
    if missing:
        raise DataError(f"report: backtest summary {path} lacks column(s) {missing}; it has "
                        f"{t.column_names}")
    curves: dict[str, dict[str, np.ndarray]] = {}
    pol = np.asarray(t.column("policy").to_pylist(), dtype=object)
    for p in sorted(dict.fromkeys(pol), key=lambda v: (v != "replenish", str(v))):  # ours first
        sub = t.filter(pa.array(pol == p))
        curves[str(p)] = {c: _num(sub, c) for c in BACKTEST_COLUMNS[1:]}
    img = _img(_charts.backtest_curves(curves), "service against inventory per policy")
    head = {}
    if (d / "backtest.json").exists():
        head = json.loads((d / "backtest.json").read_text())
    red = head.get("inventory_reduction_at_equal_service")
    measure = str(head.get("service_measure", "service")).replace("_", " ")
    headline = (f"<p><b>Inventory reduction at equal {html.escape(measure)}: "
                f"{'not measured' if red is None else f'{100 * red:.1f}%'}</b></p>")
    cols = [c for c in ("policy", "target", "fill_rate", "cycle_service_level", "avg_on_hand_units",
                        "avg_on_hand_value", "stockout_days", "total_cost") if c in t.column_names]
    rows = [[r[c] for c in cols] for r in t.select(cols).to_pylist()]
    return _section("backtest", title, headline + img + _table(cols, rows, 1))
