"""Cold compile time and compiled vs eager speed of the TFT forward (the two compiled regions).

    python benchmarks/compile_time.py [--quick] [--device cpu|cuda] [--batch 256]

Trains nothing: the model is pytorch-forecasting's TFT built for synthetic daily data (hidden
32, 4 heads, hidden_continuous 16, encoder 56, horizon 28, 7 quantiles, as in
``forecast_throughput.py``). Measured in one process, in order: the eager forward (the peer:
the same module without torch.compile), then ``Runner(compile=True)``: the first call of each
mode compiles ``encode`` and ``decode`` cold (a fresh Inductor cache directory, so nothing is
reused from earlier runs), then the steady compiled speed. Reported: cold compile seconds, wall
and CPU (code generation in this process; CPU seconds stay meaningful on a shared machine),
for eval mode (prediction) and train mode (training, forward + backward), windows/s eager
and compiled, and their ratio. The last line is one JSON object.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="hidden 16, batch 64, 3 timed batches")
    ap.add_argument("--device", default="cuda" if _cuda() else "cpu")
    ap.add_argument("--batch", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--whole", action="store_true",
                    help="instead: compile the whole forward in one torch.compile (the earlier "
                         "approach: Dynamo splits it at the LSTMs), eval mode, and count its graphs")
    a = ap.parse_args()
    # a cold compile: a fresh cache folder (set before torch reads it); code generation in this
    # process, so that its CPU seconds (robust on a shared machine, unlike wall time) are ours
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="replenish-inductor-")
    os.environ.setdefault("TORCHINDUCTOR_COMPILE_THREADS", "1")
    import numpy as np
    import torch

    from replenish.engine import _tft
    from replenish.engine._features import category_luts
    from replenish.engine._sampler import WindowPlan, WindowSampler
    from replenish.engine.forecast import ForecastConfig, TFTForecaster
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from forecast_throughput import ARCH, ENCODER, HORIZON, QUANTILES, synthetic_panel

    if a.threads:
        torch.set_num_threads(a.threads)
    dev = torch.device(a.device)
    arch = dict(ARCH, hidden_size=16, hidden_continuous_size=8) if a.quick else ARCH
    batch = a.batch or (64 if a.quick else 256)
    reps = 3 if a.quick else 10
    panel, _ = synthetic_panel(200, 200, HORIZON)
    cfg = ForecastConfig(encoder_length=ENCODER, horizon=HORIZON, quantiles=QUANTILES,
                         max_steps=1, batch_size=batch, validation=False, device=a.device,
                         compile=False, **arch)
    f = TFTForecaster(cfg).fit(panel)            # one step: builds the model and its encoders
    model = f.model.to(dev)
    sampler = WindowSampler(f.spec, panel, dev)
    plan = WindowPlan(panel.lengths, ENCODER, HORIZON, 0)
    rng = np.random.default_rng(0)
    luts = category_luts(f.spec, dev)

    def batch_x():
        s, d, e, w = plan.draw(rng, batch, short=False)
        return sampler.windows(torch.as_tensor(s), torch.as_tensor(d), torch.as_tensor(e), w,
                               device=dev, luts=luts)

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    def timed(fn, n):
        fn()
        sync()
        t = time.perf_counter()
        for _ in range(n):
            fn()
        sync()
        return n * batch / (time.perf_counter() - t)

    xs = [batch_x() for _ in range(reps)]
    amp = torch.bfloat16 if dev.type == "cuda" else None
    if a.whole:
        model.eval()
        from torch._dynamo.utils import counters
        whole = torch.compile(_tft.forward_fixed, dynamic=False)
        with torch.no_grad():
            t, c = time.perf_counter(), time.process_time()
            whole(model, xs[0], None)
            sync()
            wall, cpu = time.perf_counter() - t, time.process_time() - c
        out = {"benchmark": "compile_time", "mode": "whole forward, eval", "device": str(dev),
               "cold_compile_s": round(wall, 1), "cold_compile_cpu_s": round(cpu, 1),
               "graph_breaks": sum(counters["graph_break"].values()),
               "frames_compiled": counters["stats"]["unique_graphs"],
               "load_average_1min": round(os.getloadavg()[0], 1), "torch": torch.__version__,
               "date": time.strftime("%Y-%m-%d")}
        print(f"whole forward: cold compile {wall:.1f} s ({cpu:.1f} CPU s), "
              f"{out['frames_compiled']} graphs, {out['graph_breaks']} graph breaks")
        print(json.dumps(out))
        return
    eager = _tft.Runner(model, None, dev, amp)
    model.eval()
    with torch.no_grad():
        eager_eval = timed(lambda: [eager.forward(x, True) for x in xs], 1)
    comp = _tft.Runner(model, None, dev, amp, compile=True)
    with torch.no_grad():
        t, c = time.perf_counter(), time.process_time()
        comp.forward(xs[0], True)
        sync()
        cold_eval, cpu_eval = time.perf_counter() - t, time.process_time() - c
        comp_eval = timed(lambda: [comp.forward(x, True) for x in xs], 1)
    model.train()

    def step(r, x):
        r.forward(x, True).float().mean().backward()

    eager_train = timed(lambda: [step(eager, x) for x in xs], 1)
    t, c = time.perf_counter(), time.process_time()
    step(comp, xs[0])
    sync()
    cold_train, cpu_train = time.perf_counter() - t, time.process_time() - c
    comp_train = timed(lambda: [step(comp, x) for x in xs], 1)
    out = {"benchmark": "compile_time", "device": str(dev),
           "gpu": torch.cuda.get_device_name(0) if dev.type == "cuda" else None,
           "machine": f"{platform.machine()} {os.cpu_count()} cores",
           "torch": torch.__version__, "threads": torch.get_num_threads(), "batch": batch,
           "arch": arch, "encoder": ENCODER, "horizon": HORIZON,
           "cold_compile_s": {"eval": round(cold_eval, 1), "train": round(cold_train, 1)},
           "cold_compile_cpu_s": {"eval": round(cpu_eval, 1), "train": round(cpu_train, 1)},
           "load_average_1min": round(os.getloadavg()[0], 1),
           "windows_per_s": {"eager_eval": round(eager_eval), "compiled_eval": round(comp_eval),
                             "eager_train": round(eager_train),
                             "compiled_train": round(comp_train)},
           "ratio_compiled_vs_eager": {"eval": round(comp_eval / eager_eval, 2),
                                       "train": round(comp_train / eager_train, 2)},
           "date": time.strftime("%Y-%m-%d")}
    print(f"cold compile: eval {cold_eval:.1f} s ({cpu_eval:.1f} CPU s), train {cold_train:.1f} s "
          f"({cpu_train:.1f} CPU s); windows/s eager "
          f"{eager_eval:.0f} -> compiled {comp_eval:.0f} (eval), {eager_train:.0f} -> "
          f"{comp_train:.0f} (train)")
    print(json.dumps(out))


def _cuda() -> bool:
    try:
        import torch
        return torch.cuda.is_available()
    except ImportError:
        return False


if __name__ == "__main__":
    main()
