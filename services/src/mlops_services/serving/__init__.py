"""FastAPI serving: predictions, MLflow's scoring protocol, SHAP explanations, metrics, hot reload."""
