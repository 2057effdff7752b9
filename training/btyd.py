"""Buy-till-you-die baselines for customer value: BG/NBD for the number of future
purchases, Gamma-Gamma for the value of each, both from pymc-marketing.

A customer is summarized by ``frequency`` (repeat purchases), ``recency`` (age at the
last purchase), ``T`` (age at the end of the observation) and ``monetary_value`` (mean
value of the repeat purchases), all in :data:`UNIT_DAYS` units. The expected spend over a
horizon is BG/NBD's conditional expected purchases times Gamma-Gamma's conditional mean
purchase value, undiscounted, as Fader, Hardie & Lee (2005) and Fader & Hardie (2013)
combine them.

Both models are fitted by maximum likelihood: MAP with flat priors on every parameter.
pymc-marketing's default priors pull ``a`` and ``b`` (the dropout process) away from the
likelihood's optimum, and the published CDNOW parameters are maximum-likelihood ones.

pymc-marketing (PyMC, PyTensor, ArviZ) takes seconds to import, so it is imported inside
the functions that fit: importing this module (every task module does) stays cheap.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from features.contract import ENTITY_KEY, EVENT_TIMESTAMP
from features.errors import CustlabError

if TYPE_CHECKING:
    from training.tasks.base import TaskSpec

logger = logging.getLogger(__name__)

# Weeks: the unit of the published CDNOW fits. Only ``alpha`` depends on the unit, but
# the optimizer starts every parameter at 1, nearer the optimum in weeks than in days.
UNIT_DAYS = 7.0
SUMMARY_COLUMNS = ["frequency", "recency", "T", "monetary_value"]
# BG/NBD's likelihood is one vectorized pass, but fitting beyond this many customers
# only sharpens four population parameters already pinned down to three digits.
MAX_FIT_CUSTOMERS = 50_000
BGNBD_PARAMS = ("r", "alpha", "a", "b")
GAMMA_GAMMA_PARAMS = ("p", "q", "v")


def summarize_transactions(
    transactions: pd.DataFrame, calibration_end: pd.Timestamp, unit_days: float = UNIT_DAYS
) -> pd.DataFrame:
    """The BG/NBD and Gamma-Gamma summary of a transaction log up to ``calibration_end``.

    Transactions of one customer on one day merge into one purchase (the papers' rule:
    a day's several lines are one shopping trip). Ages count from the first purchase day
    to ``calibration_end``, the last calibration day, included (CDNOW: a customer who
    first bought on the first day of a 39-week calibration has ``T`` = 272 / 7 weeks).

    Args:
        transactions: ``customer_id``, ``date`` (day timestamps) and ``amount``.
        calibration_end: The last day of the calibration period.
        unit_days: Days per time unit of ``recency`` and ``T``.

    Returns:
        One row per customer who bought by ``calibration_end``: ``customer_id``,
        ``frequency``, ``recency``, ``T`` and ``monetary_value`` (mean value of the repeat
        purchases; 0 without any).
    """
    days = transactions[transactions["date"] <= calibration_end]
    days = days.groupby([ENTITY_KEY, "date"], as_index=False)["amount"].sum()
    first = days.groupby(ENTITY_KEY)["date"].transform("min")
    repeats = days[days["date"] > first]
    by_customer = days.groupby(ENTITY_KEY)["date"]
    start, last = by_customer.min(), by_customer.max()
    summary = pd.DataFrame(
        {
            "frequency": by_customer.size() - 1,
            "recency": (last - start).dt.days / unit_days,
            "T": (calibration_end - start).dt.days / unit_days,
        }
    )
    summary["monetary_value"] = repeats.groupby(ENTITY_KEY)["amount"].mean()
    summary["monetary_value"] = summary["monetary_value"].fillna(0.0)
    return summary.rename_axis(ENTITY_KEY).reset_index()


def summarize_features(rows: pd.DataFrame, unit_days: float = UNIT_DAYS) -> pd.DataFrame:
    """The BG/NBD summary of feature rows (the orders family), one per row, in row order.

    ``frequency`` = ``orders_total`` - 1, ``recency`` = ``days_since_first_order`` -
    ``recency_days`` and ``T`` = ``days_since_first_order``. Two approximations of the
    transaction-log summary: orders are counted as placed, not merged by day, and
    ``monetary_value`` is ``avg_order_value``, the net spend per order including the
    first one, where Gamma-Gamma's is the mean of the repeat purchases alone.

    Returns:
        ``frequency``, ``recency``, ``T`` and ``monetary_value``, NaN where a row lacks
        what they need (a customer without an order, a feature not computed).
    """

    def numbers(column: str) -> np.ndarray:
        if column not in rows:
            return np.full(len(rows), np.nan)
        return pd.to_numeric(rows[column], errors="coerce").to_numpy(dtype=float)

    since_first = numbers("days_since_first_order")
    frequency = numbers("orders_total") - 1.0
    recency = since_first - numbers("recency_days")
    known = (frequency >= 0) & (since_first > 0) & (recency >= 0) & (recency <= since_first)
    known &= (frequency > 0) | (recency == 0)
    summary = pd.DataFrame(
        {
            "frequency": frequency,
            "recency": recency / unit_days,
            "T": since_first / unit_days,
            "monetary_value": numbers("avg_order_value"),
        }
    )
    summary.loc[~known, ["frequency", "recency", "T"]] = np.nan
    return summary


@dataclass(frozen=True)
class BtydFit:
    """Fitted BG/NBD and Gamma-Gamma models and their maximum-likelihood parameters.

    Attributes:
        transactions: The BG/NBD model (pymc-marketing ``BetaGeoModel``).
        spend: The Gamma-Gamma model (``GammaGammaModel``), None without enough repeat
            buyers of positive value to fit it.
        params: ``r``, ``alpha``, ``a``, ``b`` and, with ``spend``, ``p``, ``q``, ``v``.
        mean_spend: The expected value of a purchase of a customer with no usable history
            of repeat purchases (Gamma-Gamma's population mean, else the mean value).
        customers: How many customers the BG/NBD fit saw.
    """

    transactions: Any
    spend: Any
    params: dict[str, float]
    mean_spend: float
    customers: int

    def expected_purchases(self, summary: pd.DataFrame, horizon: float) -> np.ndarray:
        """BG/NBD's expected number of purchases in the next ``horizon`` time units of
        each summarized customer (NaN where the summary is incomplete)."""
        expected = np.full(len(summary), np.nan)
        known = _complete(summary, ["frequency", "recency", "T"])
        if known.any():
            data = _model_data(summary[known]).assign(future_t=float(horizon))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                values = self.transactions.expected_purchases(data)
            expected[known] = _point(values)
        return expected

    def expected_mean_spend(self, summary: pd.DataFrame) -> np.ndarray:
        """Gamma-Gamma's expected value of each customer's future purchases: their own
        mean shrunk towards the population's for repeat buyers of positive value, the
        population mean for everyone else."""
        expected = np.full(len(summary), self.mean_spend)
        frequency = summary["frequency"].to_numpy(dtype=float)
        monetary = summary["monetary_value"].to_numpy(dtype=float)
        repeat = (frequency > 0) & (monetary > 0) & np.isfinite(monetary)
        if self.spend is not None and repeat.any():
            data = _model_data(summary[repeat])
            expected[repeat] = _point(self.spend.expected_customer_spend(data))
        return expected

    def expected_spend(self, summary: pd.DataFrame, horizon: float) -> np.ndarray:
        """Expected purchases over ``horizon`` times their expected value: undiscounted
        spend; customers whose summary is incomplete get the fitted customers' mean."""
        spend = self.expected_purchases(summary, horizon) * self.expected_mean_spend(summary)
        usable = np.isfinite(spend)
        if not usable.all():
            fallback = self.population_spend(horizon)
            logger.info(
                "BG/NBD: %d of %d rows without a usable summary get the population mean spend %.2f",
                (~usable).sum(),
                len(spend),
                fallback,
            )
            spend = np.where(usable, spend, fallback)
        return np.clip(spend, 0.0, None)

    def population_spend(self, horizon: float) -> float:
        """The mean expected spend over ``horizon`` of the customers the model saw."""
        spend = self.expected_purchases(self.transactions.data, horizon) * self.mean_spend
        return float(np.nanmean(spend)) if np.isfinite(spend).any() else 0.0


def _complete(summary: pd.DataFrame, columns: list[str]) -> np.ndarray:
    return np.isfinite(summary[columns].to_numpy(dtype=float)).all(axis=1)


def _model_data(summary: pd.DataFrame) -> pd.DataFrame:
    """pymc-marketing's input: a unique ``customer_id`` per row (positions: feature rows
    repeat customers across as-of dates)."""
    data = summary[SUMMARY_COLUMNS].reset_index(drop=True)
    return data.assign(customer_id=np.arange(len(data)))


def _point(values: Any) -> np.ndarray:
    """A MAP fit's single chain and draw, as one value per customer."""
    return np.asarray(values.mean(("chain", "draw")).to_numpy(), dtype=float)


def _map_params(model: Any, names: tuple[str, ...]) -> dict[str, float]:
    return {name: float(model.fit_result[name].mean()) for name in names}


def fit_btyd(
    summary: pd.DataFrame, max_customers: int | None = MAX_FIT_CUSTOMERS, seed: int = 0
) -> BtydFit:
    """Fit BG/NBD on every summarized customer and Gamma-Gamma on the repeat buyers of
    positive mean value, both by maximum likelihood (MAP under flat priors).

    Args:
        summary: One row per customer: ``frequency``, ``recency``, ``T``,
            ``monetary_value`` (from :func:`summarize_transactions` or
            :func:`summarize_features`); incomplete rows are left out.
        max_customers: Fit on a random sample of at most this many customers (None: all).
        seed: Seeds that sample.

    Raises:
        CustlabError: No customer has a complete summary, or BG/NBD's fit is not finite.
    """
    from pymc_extras.prior import Prior
    from pymc_marketing.clv import BetaGeoModel, GammaGammaModel

    usable = summary[_complete(summary, ["frequency", "recency", "T"])]
    usable = usable[usable["T"] > 0]
    if usable.empty:
        raise CustlabError("BG/NBD: no customer has a purchase history to fit on")
    if max_customers is not None and len(usable) > max_customers:
        usable = usable.sample(max_customers, random_state=seed)
    data = _model_data(usable)

    flat = Prior("HalfFlat")
    transactions = BetaGeoModel(model_config={name: flat for name in BGNBD_PARAMS})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        transactions.fit(data, method="map", progressbar=False)
    params = _map_params(transactions, BGNBD_PARAMS)
    if not all(np.isfinite(value) and value > 0 for value in params.values()):
        raise CustlabError(f"BG/NBD: the fit did not converge ({params})")

    valued = data[(data["monetary_value"] > 0) & np.isfinite(data["monetary_value"])]
    repeat = valued[valued["frequency"] > 0]
    spend = None
    mean_spend = float(valued["monetary_value"].mean()) if len(valued) else 0.0
    # Gamma-Gamma's three parameters need more than a handful of repeat buyers; its mean
    # purchase value p v / (q - 1) exists only for q > 1.
    if len(repeat) >= 10:
        model = GammaGammaModel(model_config={name: flat for name in GAMMA_GAMMA_PARAMS})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.fit(repeat, method="map", progressbar=False)
        fitted = _map_params(model, GAMMA_GAMMA_PARAMS)
        if all(np.isfinite(v) for v in fitted.values()) and fitted["q"] > 1:
            spend, mean_spend = model, float(model.expected_new_customer_spend().mean())
            params |= fitted
        else:
            logger.info("Gamma-Gamma: no finite mean purchase value (%s); the mean is used", fitted)
    return BtydFit(transactions, spend, params, mean_spend, customers=len(data))


def bgnbd_gamma_gamma(train: pd.DataFrame, test: pd.DataFrame, task: TaskSpec) -> np.ndarray:
    """Expected net spend over the task's horizon: BG/NBD purchases times Gamma-Gamma
    value, fitted on the training customers' order features.

    Each customer enters the fit once, at their newest as-of date in ``train``: the
    models take one history per customer, and a customer's earlier rows are prefixes of
    that history, not independent draws (fitting them all would weigh customers by how
    many as-of dates they span). Test rows without a purchase predict 0; rows whose
    order features are incomplete predict the fitted customers' mean.
    """
    latest = train
    if ENTITY_KEY in train and EVENT_TIMESTAMP in train:
        latest = train.sort_values(EVENT_TIMESTAMP, kind="stable")
        latest = latest.drop_duplicates(ENTITY_KEY, keep="last")
    fitted = fit_btyd(summarize_features(latest))
    summary = summarize_features(test)
    spend = fitted.expected_spend(summary, task.horizon_days / UNIT_DAYS)
    never_bought = ~(pd.to_numeric(test["recency_days"], errors="coerce").notna().to_numpy())
    return np.where(never_bought, 0.0, spend)
