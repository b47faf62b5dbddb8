"""Saved forecasters: every registered model round-trips byte for byte through its file, and a
file of another model, other settings, another universe or another fit date is refused."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pandas as pd
import pytest

from dynafolio.data.markets import KnownMarket, MarketSettings, generate_market
from dynafolio.errors import DataError
from dynafolio.forecast.registry import FORECASTERS, discover_forecasters
from dynafolio.forecast.state import load_forecaster, save_forecaster
from dynafolio.history import MarketHistory

discover_forecasters()

MARKET = KnownMarket(kind="momentum", settings=MarketSettings(n_assets=6, n_periods=160, seed=3))
#: Small enough to train in a blink; every model's own shape logic still runs.
SMALL = {"epochs": 2, "hidden": 8, "units": [8, 4], "d_model": 8, "n_heads": 2,
         "dim_feedforward": 8, "lookback": 10, "min_windows": 5}  # fmt: skip


def _build(model: str, **extra):
    entry = FORECASTERS[model]
    spec = entry.params.model_fields
    params = {k: v for k, v in {**SMALL, **extra}.items() if k in spec and k not in entry.fixed}
    market = MARKET if entry.takes_market else None
    kwargs = {"market": market} if market is not None else {}
    return entry.cls(**entry.fixed, **params, seed=1, **kwargs)


def _history(prices: pd.DataFrame, rows: int) -> MarketHistory:
    part = prices.iloc[:rows]
    return MarketHistory(part, part.pct_change(fill_method=None))


@pytest.fixture(scope="module")
def prices() -> pd.DataFrame:
    frame = generate_market(MARKET)
    frame.iloc[:30, 0] = np.nan  # a late listing: some models forecast fewer assets
    return frame


@pytest.mark.parametrize("model", sorted(FORECASTERS))
def test_a_saved_forecaster_forecasts_exactly_what_the_fitted_one_does(model, prices, tmp_path):
    fitted = _build(model).fit(_history(prices, 120))
    universe = list(prices.columns)
    path = save_forecaster(fitted, tmp_path / "f.zip", universe, ("2018-01-05", "x"))
    loaded = load_forecaster(path, _build(model), universe)
    for rows in (121, 140, 160):
        history = _history(prices, rows)
        pd.testing.assert_series_equal(loaded.predict(history), fitted.predict(history))
    with zipfile.ZipFile(path) as archive:  # plain data only: JSON and safetensors
        assert sorted(archive.namelist()) == ["forecaster.json", "state.safetensors"]
        json.loads(archive.read("forecaster.json"))


def test_a_file_of_another_universe_model_settings_or_date_is_refused(prices, tmp_path):
    universe = list(prices.columns)
    fitted = _build("ar").fit(_history(prices, 120))
    path = save_forecaster(fitted, tmp_path / "ar.zip", universe, ("2018-01-05", "2020-03-06"))
    other = [*universe[:-1], "ZZZ"]
    with pytest.raises(
        DataError,
        match=r"another universe.*not in this data: \['A6'\]; in the data but not in the file: "
        r"\['ZZZ'\]",
    ):
        load_forecaster(path, _build("ar"), other)
    with pytest.raises(DataError, match="the same assets in another order"):
        load_forecaster(path, _build("ar"), universe[::-1])
    with pytest.raises(DataError, match="holds a ARForecaster, not the RidgeForecaster"):
        load_forecaster(path, _build("ridge"), universe)
    with pytest.raises(DataError, match=r"other settings.*'p': \(1, 2\)"):
        load_forecaster(path, _build("ar", p=2), universe)
    with pytest.raises(DataError, match="up to 2020-03-06, not up to 2020-03-13"):
        load_forecaster(path, _build("ar"), universe, fit_date="2020-03-13")
    assert load_forecaster(path, _build("ar"), universe, fit_date="2020-03-06").coef_.shape == (
        6,
        2,
    )


def _rewrite(path, header=None, arrays=None):
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    if header is not None:
        members["forecaster.json"] = header(json.loads(members["forecaster.json"]))
    if arrays is not None:
        members["state.safetensors"] = arrays
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data if isinstance(data, bytes) else json.dumps(data))


def test_hostile_forecaster_files_are_refused_with_a_clear_error(prices, tmp_path):
    import safetensors.numpy

    universe = list(prices.columns)
    fitted = _build("univariate_lstm").fit(_history(prices, 120))
    good = save_forecaster(fitted, tmp_path / "good.zip", universe, ("a", "b"))
    template = _build("univariate_lstm")
    cases = {
        "not a zip": (lambda p: p.write_bytes(b"not a zip"), "not a dynafolio forecaster"),
        "format": (lambda p: _rewrite(p, header=lambda h: {**h, "format": "x"}), "format 'x'"),
        "version": (lambda p: _rewrite(p, header=lambda h: {**h, "version": 9}), "version 9"),
        "sizes": (
            lambda p: _rewrite(p, header=lambda h: {**h, "sizes": {"n": "1"}}),
            "header is invalid",
        ),
        "nan weights": (
            lambda p: _rewrite(
                p,
                arrays=safetensors.numpy.save(
                    {**fitted.fitted_state().arrays, "scaler.std": np.full(5, np.nan)}
                ),
            ),
            "NaN or infinite",
        ),  # fmt: skip
        "wrong shape": (
            lambda p: _rewrite(
                p,
                arrays=safetensors.numpy.save(
                    {**fitted.fitted_state().arrays, "scaler.std": np.ones(3)}
                ),
            ),
            r"'scaler.std' has shape \(3,\)",
        ),  # fmt: skip
        "network of another size": (
            lambda p: _rewrite(
                p, arrays=safetensors.numpy.save({"network.x": np.ones((2, 2), dtype=np.float32)})
            ),
            "network tensors do not fit",
        ),  # fmt: skip
        "pickle member": (
            lambda p: zipfile.ZipFile(p, "a").writestr("data.pkl", b"\x80\x04."),
            "not forecaster.json and state.safetensors",
        ),
    }
    for name, (spoil, message) in cases.items():
        path = tmp_path / f"{name}.zip"
        path.write_bytes(good.read_bytes())
        spoil(path)
        with pytest.raises(DataError, match=message):
            load_forecaster(path, template, universe)
