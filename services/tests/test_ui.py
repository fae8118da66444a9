"""The Streamlit UI, driven by Streamlit's AppTest against the live API and MLflow server."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

import mlops_services

APP = str(Path(mlops_services.__file__).parent / "ui" / "app.py")


@pytest.fixture
def ui(api, monkeypatch):
    client, _, settings, _ = api
    monkeypatch.setenv("MLOPS_API_URL", str(client.base_url))
    monkeypatch.setenv("MLOPS_MODEL_NAME", settings.model_name)
    monkeypatch.setenv("MLOPS_EXPERIMENT", settings.experiment)
    assert os.environ["MLFLOW_TRACKING_URI"]
    app = AppTest.from_file(APP, default_timeout=60)
    app.run()
    assert not app.exception, app.exception
    return app


def test_prediction_form_shows_price_and_shap_chart(ui):
    ui.button[0].click().run()  # the form's submit button
    assert not ui.exception, ui.exception
    assert ui.metric[0].label == "Predicted price" and ui.metric[0].value.startswith("$")
    assert any("SHAP" in c.value for c in ui.caption)
    assert len(ui.get("vega_lite_chart")) == 1


def test_model_tab_shows_the_champion_and_history(ui, api):
    labels = {m.label: m.value for m in ui.metric}
    assert labels["Champion"] == "v1"
    assert labels["Holdout RMSE"].startswith("$")
    assert len(ui.dataframe) >= 1


def test_drift_tab_says_when_there_is_no_report(ui):
    assert any("No drift report yet" in i.value for i in ui.info)
