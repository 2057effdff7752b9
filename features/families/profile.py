"""Who the customer is, from the customers table: tenure since sign-up, acquisition
channel, region and age band. Categories stay categories all the way to the model.

The customers table is a current export, not a history: a region or channel is read as
it is now for every as-of date (they rarely change, and never because of the label).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.families.base import Feature, FeatureFamily, SnapshotGrid, Tables

# Lower edges of the age bands, in years at the as-of date.
AGE_BAND_EDGES: tuple[int, ...] = (18, 25, 35, 45, 55, 65)
AGE_BANDS: tuple[str, ...] = ("under_18", "18_24", "25_34", "35_44", "45_54", "55_64", "65_plus")

FEATURES = (
    Feature("tenure_days", "Days since sign-up; empty for a customer the customers table lacks."),
    Feature("acquisition_channel", "How the customer was acquired.", "category"),
    Feature("region", "The customer's region.", "category"),
    Feature(
        "age_band",
        "Age at the as-of date, banded: " + ", ".join(AGE_BANDS) + ".",
        "category",
    ),
)


def _per_row(grid: SnapshotGrid, codes: np.ndarray, values: np.ndarray, fill: object) -> np.ndarray:
    """Customer-level ``values`` spread onto grid rows; ``fill`` for a customer without one."""
    per_customer = np.full(grid.customers, fill, dtype=values.dtype if fill is not None else object)
    keep = codes >= 0
    per_customer[codes[keep]] = values[keep]
    return per_customer[grid.row_customer]


def _categories(column: pd.Series) -> np.ndarray:
    return column.astype(object).where(column.notna(), None).to_numpy()


def compute(grid: SnapshotGrid, tables: Tables) -> dict[str, np.ndarray]:
    customers = tables["customers"]
    codes = grid.customer_codes(customers["customer_id"])
    signup = grid.days(customers["signup_ts"])
    out = {"tenure_days": grid.row_day - _per_row(grid, codes, signup, np.nan)}
    for name in ("acquisition_channel", "region"):
        out[name] = (
            _per_row(grid, codes, _categories(customers[name]), None)
            if name in customers
            else np.full(grid.rows, None, dtype=object)
        )
    if "birth_year" in customers:
        birth = _per_row(
            grid, codes, customers["birth_year"].to_numpy(dtype=np.float64, na_value=np.nan), np.nan
        )
        age = grid.row_as_of.year.to_numpy() - birth
        band = np.searchsorted(np.asarray(AGE_BAND_EDGES), age, side="right")
        labels = np.asarray(AGE_BANDS, dtype=object)[np.minimum(band, len(AGE_BANDS) - 1)]
        out["age_band"] = np.where(np.isfinite(age), labels, None)
    else:
        out["age_band"] = np.full(grid.rows, None, dtype=object)
    return out


FAMILY = FeatureFamily(
    name="profile",
    source="customers",
    features=FEATURES,
    compute=compute,
    description="Tenure, acquisition channel, region and age band of the customer.",
)
