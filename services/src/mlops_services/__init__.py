"""mlops-metal services: data, drift, training, registry, serving and UI for the house-price model."""

__version__ = "0.1.0"
