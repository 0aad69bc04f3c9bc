"""Progress of a running job: bars with counts and rates, or a few lines for batch logs.

- :func:`completed` / :func:`gather`: wait for Dask futures with a bar (tqdm) counting them
  and their rows or series, with the rate;
- :func:`training_reporter` (worker side) and :class:`TrainingProgress` (client side): the
  training loop's steps, loss, best validation loss and time left, sent from the worker
  that trains to the process that started the job as Dask events (so it works on any
  cluster, not only a local one).

Bars are drawn on standard error when it is a terminal; ``set_mode("quiet")`` (``--quiet``)
or a non-terminal standard error gives no bars, only a line when a stage ends (and one
training line per validation). Nothing else here changes what a job computes.
"""
from __future__ import annotations

import sys
import time
from typing import Any, Callable, Iterable, Iterator

__all__ = ["set_mode", "bars_enabled", "completed", "gather", "training_reporter",
           "TrainingProgress", "TRAIN_TOPIC", "say", "bar"]

TRAIN_TOPIC = "replenish-training"
_MODE: str | None = None   # None: bars on a terminal; "bars"; "quiet"
_STREAM = None             # tests may set another stream


def set_mode(mode: str | None, stream=None) -> None:
    """``"quiet"`` (no bars), ``"bars"`` (always), None (bars when stderr is a terminal)."""
    global _MODE, _STREAM
    if mode not in (None, "quiet", "bars"):
        raise ValueError(f"progress mode must be None, 'quiet' or 'bars', got {mode!r}")
    _MODE, _STREAM = mode, stream


def _stream():
    return _STREAM if _STREAM is not None else sys.stderr


def bars_enabled() -> bool:
    if _MODE is not None:
        return _MODE == "bars"
    isatty = getattr(sys.stderr, "isatty", None)
    return bool(isatty and isatty())


def say(msg: str) -> None:
    print(f"[replenish] {msg}", file=_stream(), flush=True)


def bar(total: int | None, label: str, unit: str):
    """A bar to update by hand (``None`` when bars are off), for loops :func:`completed`
    does not fit (futures submitted as others finish)."""
    return _bar(total, label, unit) if bars_enabled() else None


def _bar(total: int | None, label: str, unit: str):
    from tqdm.auto import tqdm
    return tqdm(total=total, desc=f"[replenish] {label}", unit=unit, file=_stream(),
                dynamic_ncols=True, mininterval=0.5, leave=True)


def completed(futures: dict | list, label: str, unit: str = "task",
              count: Callable[[Any], int] | None = None,
              count_unit: str | None = None) -> Iterator[tuple[Any, Any]]:
    """Yield ``(future, value)`` as the futures finish (``value``: the dict's value, or the
    future itself for a list), with a bar of finished / total and their rate. ``count``:
    a number per finished result (rows, series) shown as a running total and rate in
    ``count_unit``. Failed futures are yielded too (the caller decides)."""
    from distributed import as_completed
    items = futures if isinstance(futures, dict) else {f: f for f in futures}
    total = len(items)
    t0 = time.perf_counter()
    bar = _bar(total, label, unit) if bars_enabled() else None
    counted = 0
    try:
        for fut in as_completed(list(items)):
            if count is not None and fut.status == "finished":
                counted += int(count(fut.result()))
            if bar is not None:
                if count is not None:
                    rate = counted / max(time.perf_counter() - t0, 1e-9)
                    bar.set_postfix_str(f"{counted:,} {count_unit} ({rate:,.0f}/s)", refresh=False)
                bar.update(1)
            yield fut, items[fut]
    finally:
        if bar is not None:
            bar.close()
    if bar is None and total:
        secs = time.perf_counter() - t0
        extra = f", {counted:,} {count_unit}" if count is not None else ""
        say(f"{label}: {total} {unit}s done in {secs:.1f} s{extra}")


def gather(futures: list, label: str, unit: str = "task",
           count: Callable[[Any], int] | None = None, count_unit: str | None = None) -> list:
    """Results of ``futures`` in their order, with a bar as :func:`completed`; the first
    failure is raised once all have finished."""
    pos = {f: i for i, f in enumerate(futures)}
    out: list = [None] * len(futures)
    failed = None
    for fut, _ in completed(list(futures), label, unit, count, count_unit):
        if fut.status == "error" and failed is None:
            failed = fut
        elif fut.status == "finished":
            out[pos[fut]] = fut.result()
    if failed is not None:
        failed.result()   # raises the task's exception
    return out


# ---- training -----------------------------------------------------------------------------

def training_reporter(every_s: float = 1.0) -> Callable[..., None]:
    """A callback for the training loop: ``cb(step, steps, loss, best, elapsed, budget_s)``.

    In a Dask worker it publishes the progress as an event (topic :data:`TRAIN_TOPIC`), at
    most every ``every_s`` seconds plus at validations and the end; elsewhere it prints
    the same lines itself.
    """
    try:
        from distributed import get_worker
        worker = get_worker()
    except (ImportError, ValueError):
        worker = None
    last = [0.0]

    def cb(step: int, steps: int, loss: float | None, best: float | None, elapsed: float,
           budget_s: float | None = None, validated: bool = False, done: bool = False,
           stage: str = "tft", note: str | None = None) -> None:
        now = time.perf_counter()
        if not (validated or done or now - last[0] >= every_s):
            return
        last[0] = now
        rate = step / max(elapsed, 1e-9)
        left = (steps - step) / rate if rate > 0 else None
        if budget_s is not None:
            left = min(left if left is not None else budget_s, max(budget_s - elapsed, 0.0))
        msg = {"step": int(step), "steps": int(steps),
               "loss": None if loss is None else float(loss),
               "best": None if best is None else float(best), "elapsed": float(elapsed),
               "left": 0.0 if done else left, "validated": bool(validated), "done": bool(done),
               "stage": stage, "note": note}
        if worker is not None:
            worker.log_event(TRAIN_TOPIC, msg)
        else:
            _render_line(msg)

    return cb


def _fmt_s(s: float | None) -> str:
    if s is None:
        return "?"
    s = int(round(s))
    return f"{s // 60}:{s % 60:02d}" if s < 3600 else f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


def _line(msg: dict) -> str:
    if msg.get("stage") == "member":   # the ensemble member: one line per quantile model
        if not msg["step"]:
            return f"LightGBM member: 0/{msg['steps']} quantile models ({msg['note']})"
        return (f"LightGBM member: {msg['step']}/{msg['steps']} quantile models ({msg['note']}), "
                f"{_fmt_s(msg['elapsed'])} elapsed, time left {_fmt_s(msg['left'])}")
    best = "-" if msg["best"] is None else f"{msg['best']:.4f}"
    return (f"training step {msg['step']}/{msg['steps']}, loss {msg['loss']:.4f}, best "
            f"validation {best}, {_fmt_s(msg['elapsed'])} elapsed, time left "
            f"{_fmt_s(msg['left'])}")


_LAST_LINE = [""]


def _render_line(msg: dict) -> None:
    if msg.get("validated") or msg.get("done"):
        line = _line({**msg, "left": 0.0 if msg.get("done") else msg["left"]})
        key = line.split(", time left")[0].split(", ")[:3]
        if key != _LAST_LINE[0]:     # the end right after a validation: one line
            _LAST_LINE[0] = key
            say(line)


class TrainingProgress:
    """Show the training events of :func:`training_reporter` while the block runs.

    With bars: one bar of steps with loss, best validation loss and time left, then one of
    the LightGBM member's quantile models; quiet: one line per validation and per model.
    ``client``: the job's distributed Client.
    """

    def __init__(self, client):
        self.client = client
        self.bar = None
        self.member_bar = None
        self.last: dict | None = None

    def __enter__(self) -> "TrainingProgress":
        self.client.subscribe_topic(TRAIN_TOPIC, self._handle)
        return self

    def _handle(self, event) -> None:
        msg = event[1] if isinstance(event, tuple) else event
        self.last = msg
        if not bars_enabled():
            _render_line(msg)
            return
        if msg.get("stage") == "member":
            if self.member_bar is None:
                self.member_bar = _bar(msg["steps"], "LightGBM member", "model")
            left = "" if msg["left"] is None else f", left {_fmt_s(msg['left'])}"
            self.member_bar.set_postfix_str(f"{msg['note']}{left}", refresh=False)
            self.member_bar.update(msg["step"] - self.member_bar.n)
            return
        if self.bar is None:
            self.bar = _bar(msg["steps"], "training", "step")
        best = "-" if msg["best"] is None else f"{msg['best']:.4f}"
        self.bar.set_postfix_str(f"loss {msg['loss']:.4f}, best val {best}, "
                                 f"left {_fmt_s(msg['left'])}", refresh=False)
        self.bar.update(msg["step"] - self.bar.n)

    def __exit__(self, *exc) -> bool:
        try:
            self.client.unsubscribe_topic(TRAIN_TOPIC)
        except Exception:   # the client may be closing
            pass
        for bar in (self.bar, self.member_bar):
            if bar is not None:
                bar.close()
        return False


def iterate(items: Iterable, label: str, unit: str, total: int | None = None) -> Iterator:
    """Iterate with a bar (for loops in the job's own process)."""
    if not bars_enabled():
        yield from items
        return
    bar = _bar(total, label, unit)
    try:
        for x in items:
            yield x
            bar.update(1)
    finally:
        bar.close()
