"""Config: TOML and CLI flags map user column names and options; flags win."""
from __future__ import annotations

import pytest

from replenish.jobs.cli import _build_parser, _config_from_args
from replenish.jobs.config import PlanConfig, load_toml

TOML = """
[data]
history = "h.parquet"
negative = "clip"
gaps = "missing"
[columns]
sku = "item_id"
location = "store_id"
known = ["price", "promo", "event"]
categorical = ["event"]
date_format = "%Y%m%d"
[forecast]
horizon = 14
[policy]
target = "fill_rate"
[inventory_defaults]
review_period_days = 7
[cluster]
n_workers = 3
"""


def test_toml_and_flags(tmp_path):
    p = tmp_path / "job.toml"
    p.write_text(TOML)
    args = _build_parser().parse_args(["plan", "--config", str(p), "--location-col", "shop",
                                       "--out", "o", "--horizon", "21", "--static-cols", "cat,fmt"])
    cfg = _config_from_args(args)
    assert cfg.columns.sku == "item_id" and cfg.columns.location == "shop"
    assert cfg.columns.known == ("price", "promo", "event") and cfg.columns.static == ("cat", "fmt")
    assert cfg.columns.categorical == ("event",)
    assert cfg.negative == "clip" and cfg.target == "fill_rate" and cfg.n_workers == 3
    assert cfg.forecast["horizon"] == 21
    assert cfg.inventory_defaults == {"review_period_days": 7}
    assert cfg.history == "h.parquet" and cfg.out == "o"
    assert cfg.columns.date_format == "%Y%m%d"
    args = _build_parser().parse_args(["plan", "--config", str(p), "--date-format", "%d.%m.%Y"])
    assert _config_from_args(args).columns.date_format == "%d.%m.%Y"
    assert cfg.align_end is True
    args = _build_parser().parse_args(["plan", "--config", str(p), "--no-align-end"])
    assert _config_from_args(args).align_end is False
    args = _build_parser().parse_args(["plan", "--config", str(p), "--categorical-cols", "event,promo"])
    assert _config_from_args(args).columns.categorical == ("event", "promo")
    assert cfg.gaps == "missing"
    args = _build_parser().parse_args(["plan", "--config", str(p), "--gaps", "zero"])
    assert _config_from_args(args).gaps == "zero"
    assert PlanConfig.build(None).gaps == "zero"
    args = _build_parser().parse_args(["evaluate", "--run", "r", "--history", "h", "--out", "e",
                                       "--gaps", "missing"])
    assert args.gaps == "missing"


def test_unknown_section_and_default_keys_rejected(tmp_path):
    p = tmp_path / "bad.toml"
    p.write_text("[colums]\nsku='x'\n")
    with pytest.raises(ValueError, match="unknown section"):
        load_toml(p)
    with pytest.raises(Exception, match="unknown keys"):
        PlanConfig.build({"inventory_defaults": {"lead_tme": 3}})


def test_fingerprint_ignores_destination_but_not_options():
    a = PlanConfig.build(history="h", out="x", n_workers=2)
    b = PlanConfig.build(history="h", out="y", n_workers=4)
    c = PlanConfig.build(history="h", out="x", negative="clip")
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()


def test_pandas_ids_of_mixed_python_types_are_read_as_text():
    import pandas as pd
    import pyarrow as pa

    from replenish.jobs._sources import as_source as _as_source
    df = pd.DataFrame({"sku": [101, "A-7", 101, None], "demand": [1.0, 2.0, 3.0, 4.0]})
    t = _as_source(df, name="history")
    assert t.schema.field("sku").type in (pa.string(), pa.large_string())
    assert t.column("sku").to_pylist() == ["101", "A-7", "101", None]
    with pytest.raises(TypeError, match="expected a path, pyarrow.Table, pandas or Dask"):
        _as_source([1, 2], name="history")


@pytest.mark.parametrize("section,key", [("data", "histroy"), ("policy", "targt"),
                                         ("cluster", "n_worker"), ("columns", "skus")])
def test_misspelled_keys_in_a_section_are_errors(tmp_path, section, key):
    (tmp_path / "c.toml").write_text(f"[{section}]\n{key} = 1\n")
    with pytest.raises(ValueError, match=rf"unknown key\(s\) \['{key}'\] in \[{section}\]"):
        PlanConfig.build(load_toml(tmp_path / "c.toml"))


def test_misspelled_forecast_setting_fails_before_any_work(tmp_path):
    from replenish.jobs.plan import run_plan
    cfg = PlanConfig(history=str(tmp_path / "h.parquet"), out=str(tmp_path / "o"),
                     forecast={"max_step": 20})
    with pytest.raises(ValueError, match=r"forecast settings: unknown key\(s\) \['max_step'\]"):
        run_plan(cfg, stages=("train",))
    assert not (tmp_path / "o").exists()


def test_real_feed_options_in_toml_and_flags(tmp_path):
    p = tmp_path / "job.toml"
    p.write_text('[data]\nmissing_static = "impute"\ngap_fill = { Open = 0, price = "interpolate" }\n'
                 '[columns]\nlocation = "Store"\n')
    cfg = _config_from_args(_build_parser().parse_args(
        ["plan", "--config", str(p), "--gap-fill", "Open=1, promo=0", "--out", "o"]))
    assert cfg.missing_static == "impute"
    # the flag's pairs win over and add to the file's
    assert cfg.gap_fill == {"Open": "1", "price": "interpolate", "promo": "0"}
    assert cfg.columns.location == "Store" and cfg.columns.sku == "sku"   # no sku: one key
    assert PlanConfig.build(None, gap_fill="a=0").gap_fill == {"a": "0"}
    with pytest.raises(ValueError, match="COLUMN=VALUE pairs"):
        PlanConfig.build(None, gap_fill="Open")
    with pytest.raises(SystemExit):   # argparse: impute or error only
        _build_parser().parse_args(["plan", "--missing-static", "median"])
    # they change the results: a different fingerprint
    assert PlanConfig(gap_fill={"Open": 0}).fingerprint() != PlanConfig().fingerprint()
    assert PlanConfig(missing_static="impute").fingerprint() != PlanConfig().fingerprint()
