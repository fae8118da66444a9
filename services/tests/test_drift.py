"""Drift tests: quiet on the same population, loud on a drifted one, never on the target."""

from __future__ import annotations

import pytest

from mlops_services import drift, synth


def test_no_drift_between_samples_of_one_population() -> None:
    result = drift.detect(synth.generate(20_000, seed=1), synth.generate(20_000, seed=2))
    assert result.drifted_features == []
    assert {f.feature for f in result.features} == {"bed", "bath", "acre_lot", "house_size", "state"}


def test_drifted_batch_is_flagged_per_feature() -> None:
    result = drift.detect(synth.generate(20_000, seed=1), synth.generate(20_000, seed=2, drift=1.0))
    assert {"house_size", "state", "acre_lot"} <= set(result.drifted_features)
    assert result.dataset_drift


def test_target_is_never_tested() -> None:
    with pytest.raises(ValueError, match="target"):
        drift.detect(synth.generate(100), synth.generate(100), numeric=("price",))


def test_report_is_self_contained_html_with_a_plot_per_feature() -> None:
    reference, current = synth.generate(3_000, seed=1), synth.generate(3_000, seed=2, drift=1.0)
    result = drift.detect(reference, current)
    page = drift.html_report(result, reference, current, "t")
    assert page.count("data:image/png;base64,") == len(result.features)
    assert "Drift detected in:" in page and "house_size" in page
