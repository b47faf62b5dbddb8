"""The bad-input corpus (tests/bad_inputs/cases.yaml), run through the CLI as a user would.

Each case must give a clear error (exit code 2, the words the case lists — file, key or row and
what to do), print no traceback and leave nothing that looks like a finished run.
"""

from __future__ import annotations

import gzip
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from conftest import make_prices
from dynafolio.cli import app

CASES = yaml.safe_load((Path(__file__).parent / "bad_inputs" / "cases.yaml").read_text())


def _csv(frame: pd.DataFrame) -> bytes:
    return frame.to_csv(index_label="date").encode()


def weekly_csv() -> bytes:
    return _csv(make_prices(n_periods=160, n_assets=5, late=0))


def monthly_day_first_csv() -> bytes:
    """Month starts written day-first: every date also reads month-first (01/02 = 2 Jan?)."""
    prices = make_prices(n_periods=60, n_assets=3, late=0, freq="MS")
    prices.index = prices.index.strftime("%d/%m/%Y")
    return _csv(prices)


def numeric_dates_csv() -> bytes:
    prices = make_prices(n_periods=50, n_assets=3, late=0)
    prices.index = range(len(prices))
    return _csv(prices)


def integer_index_parquet() -> bytes:
    import io

    prices = make_prices(n_periods=200, n_assets=3, late=0).reset_index(drop=True)
    prices.index = range(1000, 1200)
    buffer = io.BytesIO()
    prices.to_parquet(buffer)
    return buffer.getvalue()


def constant_column_csv() -> bytes:
    prices = make_prices(n_periods=160, n_assets=4, late=0)
    prices["A2"] = 1.0
    return _csv(prices)


def huge_price_csv() -> bytes:
    prices = make_prices(n_periods=160, n_assets=4, late=0)
    prices.iloc[40, 1] = 1e308  # line 42 of the file (header = line 1)
    return _csv(prices)


def jump_csv() -> bytes:
    prices = make_prices(n_periods=160, n_assets=4, late=0)
    prices.iloc[60:, 3] *= 1e7  # a unit change from line 62 on
    return _csv(prices)


def binary_bytes() -> bytes:
    return bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8))


def gzip_config() -> bytes:
    return gzip.compress(b"strategies:\n  - kind: equal_weight\n")


BUILDERS: dict[str, Callable[[], bytes]] = {
    f.__name__: f
    for f in (
        weekly_csv,
        monthly_day_first_csv,
        numeric_dates_csv,
        integer_index_parquet,
        constant_column_csv,
        huge_price_csv,
        jump_csv,
        binary_bytes,
        gzip_config,
    )
}


def _fill(text: str, places: dict[str, str]) -> str:
    for key, value in places.items():
        text = text.replace("{" + key + "}", value)
    return text


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_bad_input_gives_a_clear_error_and_no_run(tmp_path, case):
    out = tmp_path / "runs"
    places = {"tmp": str(tmp_path), "out": str(out)}
    places.update({name: str(tmp_path / name) for name in case.get("files", {})})
    for name, spec in case.get("files", {}).items():
        if "make" in spec:
            (tmp_path / name).write_bytes(BUILDERS[spec["make"]]())
        else:
            (tmp_path / name).write_text(_fill(spec["text"], places))
    args = [_fill(str(a), places) for a in case["args"]]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    shown = " ".join(result.output.split())  # the console wraps long lines
    for text in case["expect"]:
        assert text in shown, (text, result.output)
    finished = [p for p in out.iterdir() if not p.name.startswith(".")] if out.is_dir() else []
    assert finished == [], finished
    if out.is_dir():
        assert not any(out.iterdir()), list(out.iterdir())


def test_every_builder_is_used():
    used = {spec["make"] for c in CASES for spec in c.get("files", {}).values() if "make" in spec}
    assert used == set(BUILDERS)
