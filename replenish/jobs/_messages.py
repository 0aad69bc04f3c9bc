"""What the user reads: one ``[replenish]`` line per thing, once per job.

- :func:`say` and :class:`Formatter`: every line (each line of a multi-line message too)
  starts with ``[replenish]``; warnings say ``warning:``.
- Worker processes do not print: :func:`forward_worker_logs` sends their ``replenish``
  records (and Python warnings) to the job's process, which logs each distinct message once.
  Records of ``replenish.repairs`` (the data repairs, counted in each shard's report) are not
  sent: the job says each repair once, with its total over the shards (:func:`repair_lines`).
- :func:`merge_reports` adds up the shards' reports into the manifest's ``repairs``.
"""
from __future__ import annotations

import logging
import sys
from contextlib import contextmanager
from typing import Any, Iterable, Iterator

__all__ = ["PREFIX", "say", "Formatter", "forward_worker_logs", "merge_reports", "sum_reports",
           "repair_lines", "COUNTED", "PER_COLUMN"]

PREFIX = "[replenish]"
TOPIC = "replenish-log"

log = logging.getLogger("replenish")

#: Report counts that add up over shards (the manifest's ``repairs``).
COUNTED = ("gaps_filled", "trailing_filled", "gaps_missing", "trailing_missing",
           "negative_clipped", "missing_demand_zeroed",
           "duplicates_summed", "future_known_filled", "future_rows_unknown",
           "future_rows_outside_horizon", "echelon_missing", "protection_beyond_horizon",
           "locations_without_recent_rows", "negative_on_hand", "closed_days_zeroed",
           "negative_on_hand_with_backorders")
#: Report counts per column: report key -> prefix of the manifest's ``repairs`` key.
PER_COLUMN = {"covariates_filled": "filled", "static_missing": "static_missing",
              "static_imputed": "static_imputed", "inventory_defaulted": "inventory_default",
              "gap_fill": "gap_fill"}


def _prefixed(text: str, head: str = "") -> str:
    lines = str(text).splitlines() or [""]
    return "\n".join(f"{PREFIX} {head if i == 0 else ''}{line}" for i, line in enumerate(lines))


def say(msg: str) -> None:
    """One message to the user (stderr), every line prefixed."""
    print(_prefixed(msg), file=sys.stderr, flush=True)


class Formatter(logging.Formatter):
    """``[replenish] message``; ``[replenish] warning: message`` from WARNING up; every line
    of a multi-line message prefixed."""

    def format(self, record: logging.LogRecord) -> str:
        text = record.getMessage()
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        head = f"{record.levelname.lower()}: " if record.levelno >= logging.WARNING else ""
        return _prefixed(text, head)


# ---- worker processes -------------------------------------------------------------------

class _Forward(logging.Handler):
    """Sends a worker's records to the job's process as Dask events."""

    def __init__(self, worker, level: int, repairs: bool):
        super().__init__(level)
        self.worker, self.repairs = worker, repairs

    def emit(self, record: logging.LogRecord) -> None:
        if not self.repairs and record.name.startswith("replenish.repairs"):
            return
        try:
            self.worker.log_event(TOPIC, {"level": record.levelno, "name": record.name,
                                          "msg": record.getMessage()})
        except Exception:   # a closing worker: nothing to tell any more
            pass


def _worker_plugin(verbose: bool):
    from distributed.diagnostics.plugin import WorkerPlugin

    class ForwardLogs(WorkerPlugin):
        name = "replenish-forward-logs"

        def __init__(self, verbose: bool):
            self.verbose = verbose

        def setup(self, worker) -> None:
            level = logging.INFO if self.verbose else logging.WARNING
            handler = _Forward(worker, level, repairs=self.verbose)
            logging.captureWarnings(True)
            for name in ("replenish", "py.warnings"):
                lg = logging.getLogger(name)
                for h in [h for h in lg.handlers if isinstance(h, _Forward)]:
                    lg.removeHandler(h)
                lg.addHandler(handler)
                lg.propagate = False   # not also printed by the worker itself
                if name == "replenish":
                    lg.setLevel(level)

    return ForwardLogs(verbose)


@contextmanager
def forward_worker_logs(client, verbose: bool | None = None) -> Iterator[None]:
    """While the block runs, the workers' ``replenish`` records and Python warnings are
    logged here, each distinct message once (``verbose``: INFO and the per-shard repairs
    too; default: as this process's ``replenish`` logger is set)."""
    if verbose is None:
        verbose = log.getEffectiveLevel() <= logging.INFO
    seen: set[tuple[int, str]] = set()

    def handler(event) -> None:
        msg = event[1]
        key = (msg["level"], msg["msg"])
        if key in seen:
            return
        seen.add(key)
        logger = logging.getLogger(msg["name"])
        if logger.hasHandlers():
            logger.log(msg["level"], msg["msg"])
        elif msg["level"] >= logging.WARNING:   # no logging set up (a script): as Python's
            say(f"warning: {msg['msg']}")        # last resort would, but prefixed

    client.subscribe_topic(TOPIC, handler)
    client.register_plugin(_worker_plugin(verbose))
    try:
        yield
    finally:
        try:
            client.unsubscribe_topic(TOPIC)
        except Exception:   # the client is already closing
            pass


# ---- repairs, once per job ----------------------------------------------------------------

def merge_reports(reports: Iterable[dict[str, Any]]) -> dict[str, int]:
    """The manifest's ``repairs``: the shards' counts added up (``PER_COLUMN`` counts keyed
    ``<prefix>:<column>``)."""
    repairs: dict[str, int] = {}
    for r in reports:
        for k, v in r.items():
            if k in COUNTED:
                repairs[k] = repairs.get(k, 0) + int(v)
            elif k in PER_COLUMN:
                for c, n in v.items():
                    key = f"{PER_COLUMN[k]}:{c}"
                    repairs[key] = repairs.get(key, 0) + int(n)
    return repairs


def sum_reports(reports: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Several panels' reports as one (counts added, examples joined, the first gap rules)."""
    out: dict[str, Any] = {}
    for r in reports:
        for k, v in r.items():
            if k in COUNTED or k == "input_rows":
                out[k] = out.get(k, 0) + int(v)
            elif k in PER_COLUMN or k == "static_missing_series":
                d = out.setdefault(k, {})
                for c, n in v.items():
                    d[c] = d.get(c, 0) + int(n)
            elif k.endswith("_examples"):
                out[k] = out.get(k, []) + list(v)
            elif k == "gap_fill_rules":
                out.setdefault(k, dict(v))
    return out


def _columns(repairs: dict[str, int], prefix: str) -> dict[str, int]:
    return {k.split(":", 1)[1]: v for k, v in repairs.items() if k.startswith(prefix + ":")}


def first_dates(dates: Iterable[str], n: int = 4) -> str:
    """The distinct dates, sorted, the first ``n`` of them: "2019-04-19, 2019-04-21, ..."."""
    d = sorted(set(dates))
    return ", ".join(d[:n]) + (", ..." if len(d) > n else "")


def repair_lines(repairs: dict[str, int], reports: Iterable[dict[str, Any]] = (),
                 rules: dict[str, str] | None = None) -> list[str]:
    """One line per repair of the job, with its total (``repairs`` as :func:`merge_reports`
    gives; ``reports``: the shards' reports, for examples; ``rules``: the gap rules)."""
    from ..engine.validate import rules_text
    reports = list(reports)
    lines = []
    n = repairs.get
    if n("negative_clipped"):
        lines.append(f"{n('negative_clipped'):,} rows with negative demand clipped to zero")
    if n("missing_demand_zeroed"):
        lines.append(f"{n('missing_demand_zeroed'):,} rows with missing demand set to zero")
    if n("duplicates_summed"):
        lines.append(f"{n('duplicates_summed'):,} duplicate rows summed into their first row")
    if n("gaps_filled"):
        lines.append(f"{n('gaps_filled'):,} missing periods inside series filled with zero demand")
    gaps = n("gaps_filled", 0) + n("gaps_missing", 0)
    rows = sum(int(r.get("input_rows", 0)) for r in reports)
    if rows and gaps > rows:
        lines.append(f"warning: more periods were missing ({gaps:,}) than the history has rows "
                     f"({rows:,}): check the frequency and the dates")
    if n("gaps_missing"):
        lines.append(f"{n('gaps_missing'):,} missing periods inside series left unknown "
                     f"(--gaps missing)")
    if n("trailing_missing"):
        lines.append(f"{n('trailing_missing'):,} periods after series' last rows, up to the "
                     f"history's end, left unknown (--gaps missing)")
    if n("trailing_filled"):
        lines.append(f"{n('trailing_filled'):,} periods after series' last rows, up to the "
                     f"history's end, filled with zero demand")
    if n("locations_without_recent_rows"):
        ex = [e for r in reports for e in r.get("locations_without_recent_rows_examples", [])]
        lines.append(f"warning: {n('locations_without_recent_rows'):,} location(s) have no row "
                     f"in the last period(s) of the history (e.g. {', '.join(dict.fromkeys(ex[:3]))}"
                     f"): their series were extended with "
                     f"{'unknown periods' if n('trailing_missing') else 'zero demand'}; if their "
                     f"feeds are late, "
                     f"rerun once they are in, or use --no-align-end")
    gap = _columns(repairs, "gap_fill")
    if gap and rules:
        lines.append(f"covariates in the {max(gap.values()):,} filled periods: "
                     f"{rules_text({c: r for c, r in rules.items() if c in gap})} "
                     f"(set with --gap-fill COLUMN=VALUE)")
    filled = _columns(repairs, "filled")
    if filled:
        lines.append("missing covariate values filled from the series' own rows (forward, "
                     "backward, else 0): " + ", ".join(f"{c} {v:,}" for c, v in filled.items()))
    series = {}
    for r in reports:
        for c, v in r.get("static_missing_series", {}).items():
            series[c] = series.get(c, 0) + int(v)
    for c, v in _columns(repairs, "static_missing").items():
        lines.append(f"column '{c}': {series.get(c, 0):,} series ({v:,} rows) without a static "
                     f"attribute get the missing category")
    for c, v in _columns(repairs, "inventory_default").items():
        lines.append(f"inventory column '{c}': {v:,} missing values set to the default")
    if n("closed_days_zeroed"):
        ex = [e for r in reports for e in r.get("closed_days_examples", [])]
        lines.append(f"closed days: {n('closed_days_zeroed'):,} forecasts (SKU-location-days) "
                     f"set to zero demand, on days their location sold nothing in its latest two "
                     f"years that tell, while open around them"
                     + (f" ({first_dates(ex)})" if ex else "")
                     + "; forecast.closed_days = false keeps the model's forecasts")
    if n("negative_on_hand"):
        both = n("negative_on_hand_with_backorders", 0)
        lines.append(f"{'warning: ' if both else ''}inventory: {n('negative_on_hand'):,} "
                     f"SKU-locations with negative on_hand, read as units owed to customers "
                     f"(the inventory position counts them as it counts backorders)"
                     + (f"; {both:,} of them also have backorders: if those are the same "
                        f"units, they count twice" if both else ""))
    if n("future_rows_unknown"):
        lines.append(f"future: {n('future_rows_unknown'):,} rows for SKU-locations not in the "
                     f"history ignored")
    if n("future_rows_outside_horizon"):
        # rows ignored while the horizon lacks values: the dates are likely off (a wrong year)
        head = "warning: " if n("future_known_filled") else ""
        lines.append(f"{head}future: {n('future_rows_outside_horizon'):,} rows outside the "
                     f"forecast horizon ignored (their dates are not one of the periods after "
                     f"their series' last date{': check the dates' if head else ''})")
    if n("future_known_filled"):
        lines.append(f"warning: future: {n('future_known_filled'):,} missing known-covariate "
                     f"values filled with the series' last known value")
    if n("echelon_missing"):
        lines.append(f"echelon: {n('echelon_missing'):,} SKU-locations without a row in the "
                     f"placement keep their own lead time (their DC serves at once)")
    if n("protection_beyond_horizon"):
        lines.append(f"warning: {n('protection_beyond_horizon'):,} SKU-locations need demand "
                     f"beyond the forecast horizon (lead time + review period): its last "
                     f"period is repeated there")
    return lines
