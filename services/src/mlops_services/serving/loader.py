"""Load `models:/<name>@champion` into memory: the booster for predictions, one TreeExplainer for SHAP."""

from __future__ import annotations

from dataclasses import dataclass

import mlflow
import numpy as np
import shap

from ..model import HousePriceModel
from ..registry import CHAMPION, client_for
from ..schema import FEATURES
from ..settings import Settings


@dataclass(frozen=True)
class LoadedModel:
    name: str
    version: str
    model: HousePriceModel
    explainer: shap.TreeExplainer
    base_value: float

    def predict(self, matrix: np.ndarray) -> np.ndarray:
        return self.model.predict_matrix(matrix)

    def explain(self, matrix: np.ndarray) -> tuple[np.ndarray, float]:
        """SHAP values (rows x features) in dollars and the base value: base + row sum = prediction."""
        # Additivity is exact for trees and tested; checking it per request would double the cost.
        return np.asarray(self.explainer.shap_values(matrix, check_additivity=False)), self.base_value


def load_champion(settings: Settings) -> LoadedModel:
    """Resolve the alias once, then load that exact version: a promotion racing with the load cannot mix versions."""
    client = client_for(settings)
    version = str(client.get_model_version_by_alias(settings.model_name, CHAMPION).version)
    pyfunc = mlflow.pyfunc.load_model(f"models:/{settings.model_name}/{version}")
    model = pyfunc.unwrap_python_model()
    if not isinstance(model, HousePriceModel):
        raise TypeError(f"{settings.model_name} v{version} is a {type(model).__name__}, not a HousePriceModel")
    explainer = shap.TreeExplainer(model.booster, feature_names=list(FEATURES))
    base = float(np.ravel(explainer.expected_value)[0])
    return LoadedModel(settings.model_name, version, model, explainer, base)
