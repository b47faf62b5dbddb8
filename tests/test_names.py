"""Names are never paths: safe unique file stems, run directories that stay inside --out."""

from __future__ import annotations

import re

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from conftest import make_prices
from dynafolio.cli import app
from dynafolio.paths import MAX_STEM, file_stem, unique_stems

STEM = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")


def test_file_stem_examples():
    assert file_stem("Hybrid LSTM+PPO Top-5") == "hybrid-lstm-ppo-top-5"
    assert file_stem("Équipondéré") == "equipondere"
    assert file_stem("../../etc/passwd") == "etc-passwd"
    assert file_stem("/abs/path") == "abs-path"
    assert re.fullmatch(r"name-[0-9a-f]{8}", file_stem("等权"))
    assert file_stem("CON") != "con"
    assert len(file_stem("x" * 300)) == MAX_STEM


def test_colliding_names_get_distinct_order_free_stems():
    names = ["a/b", "a-b", "等权", "等权重", "x" * 300, "x" * 300 + "y", "Equal weight"]
    stems = unique_stems(names)
    assert len(set(stems.values())) == len(names)
    assert stems["Equal weight"] == "equal-weight"  # no collision, no suffix
    assert unique_stems(names[::-1]) == stems  # the suffix depends on the name only


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(min_size=1, max_size=120), min_size=1, max_size=12))
def test_unique_stems_are_safe_distinct_and_short(names):
    stems = unique_stems(names)
    assert set(stems) == set(names)
    assert len(set(stems.values())) == len(stems)
    for stem in stems.values():
        assert STEM.fullmatch(stem) and len(stem) <= MAX_STEM + 4, stem


@pytest.fixture
def prices_csv(tmp_path):
    path = tmp_path / "prices.csv"
    make_prices(n_periods=160, n_assets=5, late=0).to_csv(path, index_label="date")
    return path


def _run(tmp_path, prices_csv, config_text: str):
    config = tmp_path / "c.yaml"
    config.write_text(config_text)
    out = tmp_path / "deep" / "runs"
    result = CliRunner().invoke(
        app, ["run", "--data", str(prices_csv), "--config", str(config), "--out", str(out)]
    )
    return result, out


@pytest.mark.parametrize("name", ["../../escaped", "/tmp/absolute", "sub/dir", "a" * 300])
def test_the_experiment_name_never_leaves_out(tmp_path, prices_csv, name):
    result, out = _run(
        tmp_path, prices_csv, f"name: {name!r}\nstrategies:\n  - kind: equal_weight\n"
    )
    assert result.exit_code == 0, result.output
    (run_dir,) = out.iterdir()
    assert run_dir.parent == out and STEM.fullmatch(run_dir.name.rsplit("-", 2)[0])
    assert not (tmp_path / "escaped").exists() and not (tmp_path / "deep" / "escaped").exists()
    assert (run_dir / "report.html").is_file()


@pytest.mark.filterwarnings("ignore:Glyph .* missing from font")
def test_strategy_names_that_collide_as_files_keep_their_own_files(tmp_path, prices_csv):
    names = ["a/b", "a-b", "等权", "等权重", "x" * 300]
    kinds = ["equal_weight", "hrp", "inverse_volatility", "minimum_variance", "herc"]
    entries = "".join(
        f"  - {{kind: {kind}, name: {name!r}}}\n" for kind, name in zip(kinds, names, strict=True)
    )
    result, out = _run(tmp_path, prices_csv, f"benchmark: a/b\nstrategies:\n{entries}")
    assert result.exit_code == 0, result.output
    (run_dir,) = out.iterdir()
    weights = sorted((run_dir / "weights").iterdir())
    ledgers = sorted((run_dir / "ledgers").iterdir())
    assert len(weights) == len(ledgers) == len(names)
    metrics = pd.read_csv(run_dir / "metrics.csv", index_col="strategy")
    assert list(metrics.index) == names  # display names kept for tables
    # Each strategy's file holds its own weights: equal weight is 1/5 everywhere.
    stems = unique_stems(names)
    equal = pd.read_csv(run_dir / "weights" / f"{stems['a/b']}.csv", index_col="date")
    assert (equal.round(6) == 0.2).all().all()


def test_names_with_brackets_are_printed_as_written(tmp_path, prices_csv):
    config = tmp_path / "c.yaml"
    config.write_text(
        "strategies:\n  - {kind: equal_weight, name: 'Equal weight [bold]x[/bold]'}\n"
        "benchmark: 'Equal weight [bold]x[/bold]'\n"
    )
    result = CliRunner().invoke(
        app, ["run", "--config", str(config), "--data", str(prices_csv), "--out", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    assert "Equal weight [bold]x[/bold]" in result.output
