"""The data contract and the synthetic generator (no services needed)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlops_services import synth
from mlops_services.contract import FEATURES, RAW_COLUMNS, validate_batch
from mlops_services.train import split_holdout


def test_generator_is_seeded_and_has_the_public_columns() -> None:
    a, b = synth.generate(2_000, seed=7), synth.generate(2_000, seed=7)
    pd.testing.assert_frame_equal(a, b)
    assert list(a.columns) == list(RAW_COLUMNS)
    assert not a.equals(synth.generate(2_000, seed=8))


def test_generator_marginals_and_correlations_are_plausible() -> None:
    frame = synth.generate(50_000, seed=1)
    assert 250_000 < frame["price"].median() < 400_000
    assert 1_500 < frame["house_size"].median() < 2_100
    assert frame["house_size"].corr(frame["bed"]) > 0.5
    assert frame["house_size"].corr(frame["price"]) > 0.4
    assert frame["state"].value_counts().index[0] in {"Florida", "Texas", "California"}
    california = frame.loc[frame.state == "California", "price"].median()
    ohio = frame.loc[frame.state == "Ohio", "price"].median()
    assert california > 2.5 * ohio


def test_drift_knob_moves_sizes_prices_and_state_mix() -> None:
    base, drifted = synth.generate(30_000, seed=1), synth.generate(30_000, seed=2, drift=1.0)
    assert drifted["house_size"].median() > 1.25 * base["house_size"].median()
    assert drifted["price"].median() > 1.2 * base["price"].median()
    share = lambda f, s: (f["state"] == s).mean()  # noqa: E731
    assert share(drifted, "Arizona") > 1.8 * share(base, "Arizona")


@pytest.mark.parametrize("rows, drift", [(-1, 0.0), (10, 1.5), (10, -0.1)])
def test_generator_refuses_bad_arguments(rows: int, drift: float) -> None:
    with pytest.raises(ValueError):
        synth.generate(rows, drift=drift)


def test_bad_rows_are_quarantined_with_reasons_never_dropped() -> None:
    frame = synth.generate(10, seed=3)
    frame["bed"] = frame["bed"].astype(object)
    frame.loc[1, "bed"] = "three"
    frame.loc[2, "house_size"] = 20  # below the 100 sq ft floor
    frame.loc[3, "state"] = "Atlantis"
    frame.loc[4, "price"] = np.nan
    frame.loc[5, "acre_lot"] = np.inf
    result = validate_batch(frame)
    assert result.counts == {"valid": 5, "quarantined": 5}
    reasons = dict(zip(result.quarantined["brokered_by"], result.quarantined["reason"], strict=True))
    assert reasons[frame.loc[1, "brokered_by"]] == "bed: not a number"
    assert reasons[frame.loc[2, "brokered_by"]].startswith("house_size: outside [100")
    assert reasons[frame.loc[3, "brokered_by"]] == "state: not a known US state or territory"
    assert reasons[frame.loc[4, "brokered_by"]] == "price: missing"
    assert reasons[frame.loc[5, "brokered_by"]].startswith("acre_lot: outside")
    assert len(result.valid) + len(result.quarantined) == len(frame)


def test_missing_columns_are_named() -> None:
    with pytest.raises(ValueError, match="house_size"):
        validate_batch(synth.generate(5).drop(columns=["house_size"]))


def test_holdout_is_fixed_by_row_content() -> None:
    frame = validate_batch(synth.generate(5_000, seed=4)).valid
    _, holdout = split_holdout(frame, 20)
    assert 0.17 < len(holdout) / len(frame) < 0.23
    # Shuffled and extended with new rows, the same rows land in the holdout again.
    bigger = pd.concat([frame.sample(frac=1, random_state=1), validate_batch(synth.generate(2_000, seed=5)).valid])
    _, holdout_again = split_holdout(bigger, 20)
    key = [*list(FEATURES), "price"]
    old = set(map(tuple, holdout[key].to_numpy()))
    assert old <= set(map(tuple, holdout_again[key].to_numpy()))
