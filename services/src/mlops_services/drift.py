"""Per-feature drift between the champion's training snapshot and a new batch (features only, never the target).

Numeric features: two-sample Kolmogorov-Smirnov. Categorical features: population stability index
(PSI) with a chi-square test beside it. With large batches every p-value is tiny, so a numeric
feature counts as drifted only when the KS statistic also exceeds an effect-size floor.
"""

from __future__ import annotations

import base64
import html
import io
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from .contract import CATEGORICAL_FEATURES, NUMERIC_FEATURES, TARGET


@dataclass(frozen=True)
class DriftThresholds:
    ks_alpha: float = 0.01
    ks_min_statistic: float = 0.1
    psi_threshold: float = 0.2


@dataclass(frozen=True)
class FeatureDrift:
    feature: str
    test: str
    statistic: float
    p_value: float
    drifted: bool


@dataclass
class DriftResult:
    features: list[FeatureDrift]
    reference_rows: int
    current_rows: int
    thresholds: DriftThresholds = field(default_factory=DriftThresholds)

    @property
    def drifted_features(self) -> list[str]:
        return [f.feature for f in self.features if f.drifted]

    @property
    def dataset_drift(self) -> bool:
        return bool(self.drifted_features)

    def as_dict(self) -> dict:
        return {
            "dataset_drift": self.dataset_drift,
            "drifted_features": self.drifted_features,
            "reference_rows": self.reference_rows,
            "current_rows": self.current_rows,
            "thresholds": asdict(self.thresholds),
            "features": [asdict(f) for f in self.features],
        }


def _ks(name: str, reference: np.ndarray, current: np.ndarray, t: DriftThresholds) -> FeatureDrift:
    # method="asymp": the exact distribution is needless (and slow) at these sample sizes.
    result = stats.ks_2samp(reference, current, method="asymp")
    drifted = result.pvalue < t.ks_alpha and result.statistic >= t.ks_min_statistic
    return FeatureDrift(name, "ks", float(result.statistic), float(result.pvalue), bool(drifted))


def population_stability_index(ref_counts: np.ndarray, cur_counts: np.ndarray, floor: float = 1e-4) -> float:
    ref = np.maximum(ref_counts / max(ref_counts.sum(), 1), floor)
    cur = np.maximum(cur_counts / max(cur_counts.sum(), 1), floor)
    return float(np.sum((cur - ref) * np.log(cur / ref)))


def _categorical(name: str, reference: pd.Series, current: pd.Series, t: DriftThresholds) -> FeatureDrift:
    categories = pd.Index(reference.astype("string").unique()).union(pd.Index(current.astype("string").unique()))
    ref_codes = pd.Categorical(reference.astype("string"), categories=categories).codes
    cur_codes = pd.Categorical(current.astype("string"), categories=categories).codes
    ref_counts = np.bincount(ref_codes[ref_codes >= 0], minlength=len(categories)).astype(float)
    cur_counts = np.bincount(cur_codes[cur_codes >= 0], minlength=len(categories)).astype(float)
    psi = population_stability_index(ref_counts, cur_counts)
    seen = (ref_counts + cur_counts) > 0
    _, p_value, _, _ = stats.chi2_contingency(np.vstack([ref_counts[seen], cur_counts[seen]]))
    return FeatureDrift(name, "psi", psi, float(p_value), bool(psi >= t.psi_threshold))


def detect(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    *,
    numeric: tuple[str, ...] = tuple(f.name for f in NUMERIC_FEATURES),
    categorical: tuple[str, ...] = CATEGORICAL_FEATURES,
    thresholds: DriftThresholds | None = None,
) -> DriftResult:
    """Test every feature; columns are tested in parallel threads (sorting releases the GIL)."""
    t = thresholds or DriftThresholds()
    if TARGET in numeric or TARGET in categorical:
        raise ValueError("drift is measured on features only, never on the target")
    with ThreadPoolExecutor(max_workers=2) as pool:
        jobs = [pool.submit(_ks, n, reference[n].to_numpy(np.float64), current[n].to_numpy(np.float64), t) for n in numeric]
        jobs += [pool.submit(_categorical, n, reference[n], current[n], t) for n in categorical]
        results = [j.result() for j in jobs]
    return DriftResult(results, len(reference), len(current), t)


def _plot(reference: pd.Series, current: pd.Series, numeric: bool) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 2.6))
    if numeric:
        low, high = np.nanpercentile(np.concatenate([reference, current]), [0.5, 99.5])
        bins = np.linspace(low, high, 50)
        ax.hist(reference, bins=bins, alpha=0.55, density=True, label="reference")
        ax.hist(current, bins=bins, alpha=0.55, density=True, label="current")
    else:
        shares = pd.DataFrame(
            {"reference": reference.value_counts(normalize=True), "current": current.value_counts(normalize=True)}
        ).fillna(0)
        shares = shares.sort_values("reference", ascending=False).head(15)
        shares.plot.bar(ax=ax, alpha=0.8)
        ax.tick_params(axis="x", labelsize=7)
    ax.legend()
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80)
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode()


def html_report(result: DriftResult, reference: pd.DataFrame, current: pd.DataFrame, title: str) -> str:
    """A self-contained HTML page: the verdict, a table of tests and one plot per feature."""
    rows, plots = [], []
    for f in result.features:
        verdict = "DRIFT" if f.drifted else "ok"
        rows.append(
            f"<tr><td>{html.escape(f.feature)}</td><td>{f.test}</td><td>{f.statistic:.4f}</td>"
            f"<td>{f.p_value:.3g}</td><td class='{verdict.lower()}'>{verdict}</td></tr>"
        )
        image = _plot(reference[f.feature], current[f.feature], numeric=f.test == "ks")
        plots.append(f"<h3>{html.escape(f.feature)}</h3><img alt='{html.escape(f.feature)}' src='data:image/png;base64,{image}'>")
    verdict = "Drift detected in: " + ", ".join(result.drifted_features) if result.dataset_drift else "No drift detected"
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>body{{font-family:sans-serif;margin:2em}}"
        "td,th{padding:4px 10px;border-bottom:1px solid #ddd}.drift{color:#b00;font-weight:bold}</style></head><body>"
        f"<h1>{html.escape(title)}</h1><p><b>{html.escape(verdict)}</b> (reference {result.reference_rows} rows, "
        f"current {result.current_rows} rows; KS alpha {result.thresholds.ks_alpha}, KS floor "
        f"{result.thresholds.ks_min_statistic}, PSI threshold {result.thresholds.psi_threshold})</p>"
        "<table><tr><th>feature</th><th>test</th><th>statistic</th><th>p-value</th><th>verdict</th></tr>"
        + "".join(rows)
        + "</table>"
        + "".join(plots)
        + "</body></html>"
    )
