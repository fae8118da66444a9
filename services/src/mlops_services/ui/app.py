"""Streamlit UI: predict one listing (with its SHAP explanation), score a CSV, see the champion and the latest drift report.

It talks to the API over HTTP and reads the registry from MLflow, like any other client."""

from __future__ import annotations

import io

import httpx
import pandas as pd
import streamlit as st

from mlops_services import registry
from mlops_services.contract import FEATURES, NUMERIC_FEATURES, STATES
from mlops_services.settings import Settings

settings = Settings()
st.set_page_config(page_title="House prices · mlops-metal", layout="wide")
st.title("House-price model")
api = httpx.Client(base_url=settings.api_url, timeout=30)
predict_tab, batch_tab, model_tab, drift_tab = st.tabs(["Predict", "Batch CSV", "Model", "Drift"])

with predict_tab:
    bounds = {f.name: f for f in NUMERIC_FEATURES}
    with st.form("listing"):
        left, right = st.columns(2)
        bed = left.number_input("Bedrooms", float(bounds["bed"].minimum), float(bounds["bed"].maximum), 3.0, step=1.0)
        bath = left.number_input("Bathrooms", float(bounds["bath"].minimum), float(bounds["bath"].maximum), 2.0, step=1.0)
        acre_lot = right.number_input("Lot (acres)", float(bounds["acre_lot"].minimum), float(bounds["acre_lot"].maximum), 0.25, step=0.05)
        house_size = right.number_input(
            "Living area (sq ft)", float(bounds["house_size"].minimum), float(bounds["house_size"].maximum), 1800.0, step=50.0
        )
        state = st.selectbox("State", STATES, index=STATES.index("Texas"))
        submitted = st.form_submit_button("Predict")
    if submitted:
        listing = {"bed": bed, "bath": bath, "acre_lot": acre_lot, "house_size": house_size, "state": state}
        response = api.post("/explain", json=listing)
        if response.status_code != 200:
            st.error(f"The API answered {response.status_code}: {response.text}")
        else:
            body = response.json()
            st.metric("Predicted price", f"${body['price']:,.0f}", help=f"model version {body['model_version']}")
            contributions = pd.DataFrame(
                {"feature": list(body["contributions"]), "dollars": list(body["contributions"].values())}
            ).sort_values("dollars")
            st.caption(f"SHAP: average price ${body['base_value']:,.0f} plus each feature's contribution, in dollars")
            st.bar_chart(contributions, x="feature", y="dollars", horizontal=True)

with batch_tab:
    upload = st.file_uploader("CSV with columns " + ", ".join(FEATURES), type="csv")
    if upload is not None:
        frame = pd.read_csv(upload)
        missing = [c for c in FEATURES if c not in frame.columns]
        if missing:
            st.error(f"Missing columns: {', '.join(missing)}")
        else:
            response = api.post("/predict", json=frame[list(FEATURES)].to_dict(orient="records"))
            if response.status_code != 200:
                st.error(f"The API refused the file ({response.status_code}): {response.json().get('detail')}")
            else:
                frame["predicted_price"] = response.json()["prices"]
                st.dataframe(frame, width="stretch")
                buffer = io.StringIO()
                frame.to_csv(buffer, index=False)
                st.download_button("Download predictions", buffer.getvalue(), "predictions.csv", "text/csv")

with model_tab:
    try:
        versions = registry.history(settings)
    except Exception as error:  # show the failure, keep the other tabs usable
        st.error(f"MLflow is not reachable at {settings.mlflow_tracking_uri}: {error}")
        versions = []
    champion = next((v for v in versions if "champion" in v["aliases"]), None)
    if champion:
        cols = st.columns(3)
        cols[0].metric("Champion", f"v{champion['version']}")
        cols[1].metric("Holdout RMSE", f"${float(champion['holdout_rmse'] or 0):,.0f}")
        cols[2].metric("Holdout R²", f"{float(champion['holdout_r2'] or 0):.3f}")
    else:
        st.info("No champion yet: run the pipeline.")
    if versions:
        st.subheader("History")
        st.dataframe(pd.DataFrame(versions), width="stretch")

with drift_tab:
    try:
        report = registry.latest_drift_report(settings)
    except Exception as error:  # likewise
        st.error(f"Could not read drift reports: {error}")
        report = None
    if report is None:
        st.info("No drift report yet: the pipeline writes one when a batch arrives after the first champion.")
    else:
        run_id, html = report
        st.caption(f"MLflow run {run_id}")
        st.components.v1.html(html, height=900, scrolling=True)
