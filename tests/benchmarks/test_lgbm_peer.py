"""The accuracy benchmark's LightGBM peer gives sorted, non-negative quantiles for every
series and period, also with unknown periods and short series."""
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "engine"))
from forecast_helpers import toy_panel  # noqa: E402
from lgbm_peer import LGBMPeer, PeerConfig  # noqa: E402


def test_peer_quantiles_are_sorted_and_non_negative():
    levels = (0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99)
    for freq, h in (("W", 6), ("D", 7)):
        panel = toy_panel(lengths=[80, 80, 50, 80, 12], freq=freq, with_future=h)
        panel.demand[panel.indptr[2] + np.array([5, 6, 40])] = np.nan
        peer = LGBMPeer(levels, h, PeerConfig(max_rounds=15, min_data_in_leaf=5,
                                              num_leaves=7, threads=1)).fit(panel)
        q = peer.predict(panel)
        assert q.shape == (5, h, len(levels))
        assert np.isfinite(q).all() and (q >= 0).all() and (np.diff(q, axis=-1) >= 0).all()
        assert q[..., 4].mean() > 0
