"""Seeded synthetic listings shaped like the "USA Real Estate" dataset, with a drift knob.

Marginals follow the public data's broad shape: log-normal living area and lot size, bedrooms
and bathrooms that grow with the living area, a skewed state mix and state price levels.
`drift` (0 = the reference population, 1 = strongly drifted) enlarges houses and lots, raises
prices and moves the state mix towards the South and West, to produce later batches.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .contract import RAW_COLUMNS, STATES

# (share of listings, price level relative to the national median), for the larger markets;
# every other state or territory gets a small share and a level of 1.0.
_MARKETS: dict[str, tuple[float, float]] = {
    "Florida": (9.0, 1.05), "Texas": (8.0, 0.95), "California": (7.5, 2.3), "New York": (5.0, 1.6),
    "Pennsylvania": (4.0, 0.75), "North Carolina": (4.0, 0.9), "Georgia": (3.8, 0.9), "Illinois": (3.5, 0.8),
    "Ohio": (3.5, 0.62), "Virginia": (3.0, 1.1), "Arizona": (3.0, 1.2), "New Jersey": (3.0, 1.45),
    "Washington": (2.8, 1.65), "Michigan": (2.8, 0.7), "Massachusetts": (2.5, 1.8), "Tennessee": (2.5, 0.95),
    "South Carolina": (2.4, 0.9), "Colorado": (2.2, 1.55), "Maryland": (2.0, 1.2), "Missouri": (2.0, 0.7),
    "Alabama": (1.8, 0.65), "Indiana": (1.8, 0.65), "Wisconsin": (1.6, 0.8), "Minnesota": (1.5, 0.95),
    "Oregon": (1.4, 1.45), "Connecticut": (1.4, 1.3), "Louisiana": (1.3, 0.65), "Kentucky": (1.3, 0.62),
    "Nevada": (1.2, 1.3), "Utah": (1.0, 1.5), "Hawaii": (0.5, 2.6), "Mississippi": (0.9, 0.55),
    "West Virginia": (0.7, 0.5), "Arkansas": (0.9, 0.58), "District of Columbia": (0.4, 1.9),
}  # fmt: skip
# Where a drifted batch's listings come from instead (a migration to the South and West).
_DRIFT_MARKETS = {"Texas": 14.0, "Florida": 13.0, "Arizona": 7.0, "Nevada": 4.0, "Utah": 3.0, "California": 4.0}
_NATIONAL_PRICE_PER_SQFT = 165.0


def _state_tables(drift: float) -> tuple[np.ndarray, np.ndarray]:
    weights = np.array([_MARKETS.get(s, (0.3, 1.0))[0] for s in STATES])
    drifted = np.array([_DRIFT_MARKETS.get(s, weights[i] * 0.5) for i, s in enumerate(STATES)])
    mix = (1 - drift) * weights / weights.sum() + drift * drifted / drifted.sum()
    levels = np.array([_MARKETS.get(s, (0.3, 1.0))[1] for s in STATES])
    return mix / mix.sum(), levels


def generate(rows: int, *, seed: int = 0, drift: float = 0.0) -> pd.DataFrame:
    """`rows` listings with every column of the public dataset; the same seed gives the same rows."""
    if rows < 0:
        raise ValueError("rows must be >= 0")
    if not 0.0 <= drift <= 1.0:
        raise ValueError("drift must be within [0, 1]")
    rng = np.random.default_rng(seed)
    mix, levels = _state_tables(drift)
    state_index = rng.choice(len(STATES), size=rows, p=mix)

    house_size = np.clip(np.round(rng.lognormal(np.log(1_750 * (1 + 0.35 * drift)), 0.42, rows)), 350, 15_000)
    bed = np.clip(np.round(house_size / 620 + rng.normal(0.4, 0.8, rows)), 1, 12)
    bath = np.clip(np.round(bed * 0.7 + rng.normal(0.3, 0.6, rows)), 1, 10)
    acre_lot = np.clip(np.round(rng.lognormal(np.log(0.22 * (1 + 0.5 * drift)), 1.1, rows), 2), 0.01, 500)

    price_per_sqft = _NATIONAL_PRICE_PER_SQFT * levels[state_index] * (1 + 0.2 * drift)
    price = (
        price_per_sqft
        * house_size**0.92
        * 1.8  # scale so the national median lands near the data's (~$325k)
        * (1 + 0.04 * (bath - bed * 0.7))
        * (1 + 0.12 * np.log1p(acre_lot))
        * rng.lognormal(0.0, 0.22, rows)
    )
    price = np.clip(np.round(price, -2), 10_000, 25_000_000)

    frame = pd.DataFrame(
        {
            "brokered_by": rng.integers(1, 110_000, rows).astype(float),
            "status": rng.choice(["for_sale", "sold", "ready_to_build"], size=rows, p=[0.6, 0.38, 0.02]),
            "price": price,
            "bed": bed,
            "bath": bath,
            "acre_lot": acre_lot,
            "street": rng.integers(1, 2_000_000, rows).astype(float),
            "city": [f"City {i}" for i in rng.integers(1, 400, rows)],
            "state": np.array(STATES, dtype=object)[state_index],
            "zip_code": rng.integers(1_000, 99_950, rows).astype(float),
            "house_size": house_size,
            "prev_sold_date": pd.Timestamp("2024-01-01") - pd.to_timedelta(rng.integers(30, 9_000, rows), unit="D"),
        }
    )
    frame["prev_sold_date"] = frame["prev_sold_date"].dt.strftime("%Y-%m-%d")
    return frame[list(RAW_COLUMNS)]
