from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError
from sklearn.metrics import roc_auc_score

from features.contract import RAW_SCHEMAS, validate_table
from features.errors import CustlabError
from features.history import History
from features.labels import churn_labels
from features.simulate import (
    CHURNED,
    STATES,
    Effects,
    Scenario,
    World,
    WorldSpec,
    oracle,
    parse_scenario,
    simulate_world,
)
from features.snapshots import build_snapshots

WEEK = pd.Timedelta(days=7)
# Large enough for the behavioural effects to stand well clear of sampling noise, still
# well under a second to simulate.
EFFECT_WORLD = WorldSpec(customers=20_000, weeks=70, seed=5)


@pytest.fixture(scope="module")
def world() -> World:
    return simulate_world(EFFECT_WORLD)


def _week_start(world: World, ts: pd.Series) -> pd.Series:
    start = pd.Timestamp(world.spec.start)
    return start + ((ts - start) // WEEK) * WEEK


def _per_customer_week(world: World, table: pd.DataFrame, ts: str, name: str) -> pd.DataFrame:
    """The latent states with the count of ``table`` rows in each customer-week."""
    counts = (
        table.assign(week_start=_week_start(world, table[ts]))
        .groupby(["customer_id", "week_start"])
        .size()
        .rename(name)
        .reset_index()
    )
    return world.latent_states.merge(counts, how="left", on=["customer_id", "week_start"]).fillna(
        {name: 0}
    )


def _state_matrix(world: World) -> np.ndarray:
    """Latent state codes as customers x weeks, -1 before sign-up."""
    latent = world.latent_states
    cust = latent["customer_id"].str.slice(1).astype(int).to_numpy()
    week = ((latent["week_start"] - pd.Timestamp(world.spec.start)) // WEEK).to_numpy()
    states = np.full((world.spec.customers, world.spec.weeks), -1, dtype=np.int8)
    states[cust, week] = latent["state"].cat.codes.to_numpy()
    return states


def test_same_seed_same_world():
    spec = WorldSpec(customers=300, weeks=40, seed=3)
    first, second = simulate_world(spec), simulate_world(spec)
    for name, table in (first.tables() | first.truth_tables()).items():
        pd.testing.assert_frame_equal(table, (second.tables() | second.truth_tables())[name])
    other = simulate_world(spec.model_copy(update={"seed": 4}))
    assert not first.orders["amount"].equals(other.orders["amount"])


def test_tables_meet_the_contract(small_world: World):
    tables = small_world.tables()
    assert set(tables) == set(RAW_SCHEMAS)
    for name, table in tables.items():
        validate_table(name, table)


def test_a_tiny_world_leaves_out_its_empty_tables():
    """The contract refuses an empty table, so a table without rows is not offered."""
    world = simulate_world(
        WorldSpec(customers=10, weeks=30, seed=1, effects=Effects(campaign_share=1e-6))
    )
    assert world.campaigns.empty
    assert "campaigns" not in world.tables()
    for name, table in world.tables().items():
        validate_table(name, table)


def test_no_activity_before_signup(small_world: World):
    signup = small_world.customers.set_index("customer_id")["signup_ts"]
    for name, ts in [
        ("orders", "order_ts"),
        ("events", "event_ts"),
        ("tickets", "ticket_ts"),
        ("campaigns", "sent_ts"),
    ]:
        table = small_world.tables()[name]
        assert (table[ts] >= signup.loc[table["customer_id"]].to_numpy()).all(), name


def test_churned_customers_do_not_order(small_world: World):
    per_state = _per_customer_week(small_world, small_world.orders, "order_ts", "n")
    assert per_state.loc[per_state["state"] == STATES[CHURNED], "n"].sum() == 0


def test_state_drives_behaviour(small_world: World):
    """Growing customers order more often than customers at risk."""
    per_state = _per_customer_week(small_world, small_world.orders, "order_ts", "n")
    rate = per_state.groupby("state", observed=True)["n"].mean()
    assert rate["growing"] > 2 * rate["at_risk"]
    assert np.isclose(rate["churned"], 0.0)


def test_event_volume_stays_modest(world: World):
    """About one to two events per active customer-week keeps a million customers in memory."""
    per_state = _per_customer_week(world, world.events, "event_ts", "n")
    rate = per_state.groupby("state", observed=True)["n"].mean()
    assert 1.0 <= rate["active"] <= 2.0


def test_engagement_falls_before_churn(world: World):
    """Sessions thin out in the four weeks before a customer enters 'churned'."""
    states = _state_matrix(world)
    events = world.events
    cust = events["customer_id"].str.slice(1).astype(int).to_numpy()
    week = ((events["event_ts"] - pd.Timestamp(world.spec.start)) // WEEK).to_numpy()
    keep = week < world.spec.weeks  # a session may run past the last week's end
    counts = np.zeros(states.shape)
    np.add.at(counts, (cust[keep], week[keep]), 1)

    entered = (states[:, 1:] == CHURNED) & (states[:, :-1] >= 0) & (states[:, :-1] != CHURNED)
    rows, cols = np.nonzero(entered)
    cols = cols + 1  # the first churned week
    lead = cols >= 4
    before = np.stack([counts[rows[lead], cols[lead] - lag] for lag in range(1, 5)])
    active = counts[states == STATES.index("active")].mean()
    assert lead.sum() > 500
    assert before.mean() < 0.7 * active
    assert before[0].mean() < 0.5 * active  # the last week before churning is the quietest
    assert before[0].mean() < before[3].mean()
    assert counts[states == CHURNED].mean() < 0.05


def test_complaints_raise_churn(world: World):
    """At risk in the same week, a complaint makes churning within four weeks likelier."""
    states = _state_matrix(world)
    complaints = world.tickets[world.tickets["kind"] == "complaint"]
    cust = complaints["customer_id"].str.slice(1).astype(int).to_numpy()
    week = ((complaints["ticket_ts"] - pd.Timestamp(world.spec.start)) // WEEK).to_numpy()
    complained = np.zeros(states.shape, dtype=bool)
    complained[cust, week] = True

    horizon = 4
    at_risk = states[:, :-horizon] == STATES.index("at_risk")
    ahead = np.stack([states[:, lag : lag + at_risk.shape[1]] for lag in range(1, horizon + 1)])
    churns = (ahead == CHURNED).any(axis=0)
    with_complaint = churns[at_risk & complained[:, :-horizon]]
    without = churns[at_risk & ~complained[:, :-horizon]]
    assert with_complaint.size > 300
    assert with_complaint.mean() > 1.25 * without.mean()


def test_campaign_uplift_matches_its_parameter(world: World):
    """Campaigns are randomized among consenting customers, so treated against untreated
    order rates in the campaign week recover the true uplift."""
    orders = _per_customer_week(world, world.orders, "order_ts", "orders")
    waves = _week_start(world, world.campaigns["sent_ts"]).unique()
    orders = orders[orders["week_start"].isin(waves)].merge(world.customers, on="customer_id")
    eligible = orders[
        orders["marketing_consent"]
        & (orders["state"] != STATES[CHURNED])
        & (orders["signup_ts"] < orders["week_start"])
    ]
    sent = world.campaigns.assign(week_start=_week_start(world, world.campaigns["sent_ts"]))
    treated = eligible.merge(
        sent[["customer_id", "week_start"]],
        how="left",
        on=["customer_id", "week_start"],
        indicator=True,
    )["_merge"].eq("both")
    ratio = (
        eligible.loc[treated.to_numpy(), "orders"].mean()
        / eligible.loc[~treated.to_numpy(), "orders"].mean()
    )
    assert ratio == pytest.approx(1 + world.spec.effects.campaign_order_uplift, abs=0.12)


def test_campaigns_reach_only_consenting_customers(world: World):
    consent = world.customers.set_index("customer_id")["marketing_consent"]
    assert len(world.campaigns) > 1000
    assert consent.loc[world.campaigns["customer_id"]].all()
    assert not consent.all()
    reached = world.campaigns.groupby("campaign_id", observed=True)["customer_id"].nunique()
    assert (reached == world.campaigns.groupby("campaign_id", observed=True).size()).all()


# Scenarios: each changes what it should from its date and nothing before it.

SCENARIO_SPEC = WorldSpec(customers=6000, weeks=50, seed=9)
SCENARIO_DATE = SCENARIO_SPEC.start + 30 * WEEK


@pytest.fixture(scope="module")
def baseline() -> World:
    return simulate_world(SCENARIO_SPEC)


def _with(name: str) -> World:
    scenario = Scenario(name=name, start=SCENARIO_DATE)
    return simulate_world(SCENARIO_SPEC.model_copy(update={"scenarios": (scenario,)}))


def _before(table: pd.DataFrame, ts: str) -> pd.DataFrame:
    return table[table[ts] < SCENARIO_DATE].reset_index(drop=True)


def test_tracking_outage_loses_events_not_orders(baseline: World):
    outage = _with("tracking_outage")
    pd.testing.assert_frame_equal(outage.orders, baseline.orders)
    pd.testing.assert_frame_equal(outage.tickets, baseline.tickets)
    pd.testing.assert_frame_equal(outage.latent_states, baseline.latent_states)
    pd.testing.assert_frame_equal(
        _before(outage.events, "event_ts"), _before(baseline.events, "event_ts")
    )
    after = outage.events[outage.events["event_ts"] >= SCENARIO_DATE]
    base_after = baseline.events[baseline.events["event_ts"] >= SCENARIO_DATE]
    assert (after["channel"] == "app").sum() == 0
    assert len(after) < 0.7 * len(base_after)


def test_price_shock_raises_churn_and_shrinks_baskets(baseline: World):
    shock = _with("price_shock")
    pd.testing.assert_frame_equal(
        _before(shock.orders, "order_ts"), _before(baseline.orders, "order_ts")
    )
    # churn_hazard looks one step ahead, so the week before the shock already carries it.
    states = ["customer_id", "week_start", "state"]
    pd.testing.assert_frame_equal(
        _before(shock.latent_states, "week_start")[states],
        _before(baseline.latent_states, "week_start")[states],
    )
    after = shock.orders[shock.orders["order_ts"] >= SCENARIO_DATE]
    base_after = baseline.orders[baseline.orders["order_ts"] >= SCENARIO_DATE]
    assert after["amount"].mean() < 0.92 * base_after["amount"].mean()

    def churned_share(world: World) -> float:
        latent = world.latent_states
        return (latent.loc[latent["week_start"] >= SCENARIO_DATE, "state"] == "churned").mean()

    assert churned_share(shock) > churned_share(baseline) + 0.03


def test_channel_mix_shifts_new_signups_only(baseline: World):
    mix = _with("channel_mix")
    pd.testing.assert_frame_equal(
        _before(mix.customers, "signup_ts"), _before(baseline.customers, "signup_ts")
    )
    pd.testing.assert_frame_equal(
        _before(mix.orders, "order_ts"), _before(baseline.orders, "order_ts")
    )

    def social_share(world: World) -> float:
        late = world.customers[world.customers["signup_ts"] >= SCENARIO_DATE]
        return late["acquisition_channel"].isin(["social", "affiliate"]).mean()

    assert social_share(mix) > social_share(baseline) + 0.2


def test_scenarios_are_recorded_in_the_truth():
    scenario = parse_scenario("price_shock@2024-03-06")  # a Wednesday
    world = simulate_world(WorldSpec(customers=200, weeks=30, scenarios=(scenario,)))
    recorded = world.truth_tables()["scenarios"].iloc[0]
    assert recorded["name"] == "price_shock"
    assert recorded["effective_from"] == pd.Timestamp("2024-03-11", tz="UTC")


def test_parse_scenario_reads_name_and_date():
    assert parse_scenario(" channel_mix@2025-06-02 ") == Scenario(
        name="channel_mix", start=datetime(2025, 6, 2, tzinfo=UTC)
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("heatwave@2025-06-02", "unknown scenario 'heatwave'"),
        ("price_shock@2025-13-02", "not a date"),
        ("price_shock@soon", "not a date"),
        ("price_shock", "<name>@<YYYY-MM-DD>"),
        ("@2025-06-02", "<name>@<YYYY-MM-DD>"),
    ],
)
def test_parse_scenario_rejects_bad_text(text: str, message: str):
    with pytest.raises(CustlabError, match=message):
        parse_scenario(text)


@pytest.mark.parametrize(
    ("model", "field", "value"),
    [
        (WorldSpec, "customers", 5),
        (WorldSpec, "weeks", 10),
        (WorldSpec, "start", datetime(2024, 1, 2, tzinfo=UTC)),
        (WorldSpec, "surprise", 1),
        (Effects, "complaint_hazard", 0.5),
        (Effects, "complaint_decay", 1.0),
        (Effects, "campaign_share", 0.0),
        (Effects, "price_shock_basket", 1.5),
        (Scenario, "name", "heatwave"),
    ],
)
def test_specs_refuse_what_they_do_not_allow(model: type, field: str, value: object):
    valid = {"name": "price_shock", "start": datetime(2024, 6, 3, tzinfo=UTC)}
    base = valid if model is Scenario else {}
    with pytest.raises(ValidationError):
        model(**(base | {field: value}))


# The oracle.

ORACLE_DATES = pd.DatetimeIndex([EFFECT_WORLD.start + k * WEEK for k in (20, 30, 40, 50)], tz="UTC")


@pytest.fixture(scope="module")
def truth(world: World) -> pd.DataFrame:
    return oracle(world, ORACLE_DATES)


def test_oracle_gives_probabilities(world: World, truth: pd.DataFrame):
    signup = world.customers.set_index("customer_id")["signup_ts"]
    assert (signup.loc[truth["customer_id"]].to_numpy() < truth["event_timestamp"]).all()
    for column in ("true_churn_prob", "true_purchase_prob_30d"):
        assert truth[column].between(0.0, 1.0).all(), column
    assert (truth["true_spend_52w"] >= 0).all()
    assert truth.groupby("event_timestamp").size().is_monotonic_increasing


def test_oracle_is_calibrated(world: World, truth: pd.DataFrame):
    labels = churn_labels(world.tables(), ORACLE_DATES)
    churn = labels.merge(truth, on=["customer_id", "event_timestamp"])
    assert len(churn) == len(labels) > 20_000
    assert churn["true_churn_prob"].mean() == pytest.approx(churn["churned"].mean(), abs=0.015)
    deciles = churn.groupby(pd.qcut(churn["true_churn_prob"], 10), observed=True)
    assert np.allclose(deciles["true_churn_prob"].mean(), deciles["churned"].mean(), atol=0.05)

    index = History.of_purchases(world.orders)
    stamps = truth["event_timestamp"]
    bought = (
        index.count_between(
            index.codes(truth["customer_id"]), stamps, stamps + pd.Timedelta(days=30)
        )
        > 0
    )
    assert truth["true_purchase_prob_30d"].mean() == pytest.approx(bought.mean(), abs=0.015)


def test_oracle_expected_spend_matches_realized_spend(world: World):
    date = ORACLE_DATES[:1]
    expected = oracle(world, date, spend_weeks=13)["true_spend_13w"].sum()
    orders = world.orders
    window = (orders["order_ts"] >= date[0]) & (orders["order_ts"] < date[0] + 13 * WEEK)
    known = orders["customer_id"].isin(
        world.customers.loc[world.customers["signup_ts"] < date[0], "customer_id"]
    )
    assert expected == pytest.approx(orders.loc[window & known, "amount"].sum(), rel=0.04)


def test_churn_hazard_is_calibrated(world: World):
    states = _state_matrix(world)
    at_risk = states[:, :-1] == STATES.index("at_risk")
    entered = states[:, 1:] == CHURNED
    latent = world.latent_states
    cust = latent["customer_id"].str.slice(1).astype(int).to_numpy()
    week = ((latent["week_start"] - pd.Timestamp(world.spec.start)) // WEEK).to_numpy()
    hazard = np.full(states.shape, np.nan)
    hazard[cust, week] = latent["churn_hazard"].to_numpy()
    assert np.isnan(hazard[states == CHURNED]).all()
    assert hazard[:, :-1][at_risk].mean() == pytest.approx(entered[at_risk].mean(), abs=0.01)


def test_oracle_beats_the_recency_rule(world: World, truth: pd.DataFrame):
    labels = churn_labels(world.tables(), ORACLE_DATES).merge(
        truth, on=["customer_id", "event_timestamp"]
    )
    snapshots = build_snapshots(world.tables(), as_of=ORACLE_DATES, families=["orders"])["orders"]
    scored = labels.merge(snapshots, on=["customer_id", "event_timestamp"])
    oracle_auc = roc_auc_score(scored["churned"], scored["true_churn_prob"])
    recency_auc = roc_auc_score(scored["churned"], scored["recency_days"])
    assert oracle_auc > recency_auc + 0.05


@pytest.mark.parametrize(
    "date",
    [
        pd.Timestamp("2024-03-05", tz="UTC"),  # a Tuesday
        pd.Timestamp("2024-01-01", tz="UTC"),  # the first week: nothing known yet
        EFFECT_WORLD.start + (EFFECT_WORLD.weeks + 1) * WEEK,  # past the simulated span
    ],
)
def test_oracle_refuses_dates_off_the_simulated_weeks(world: World, date: pd.Timestamp):
    with pytest.raises(CustlabError, match="as-of date"):
        oracle(world, pd.DatetimeIndex([date]))


def test_oracle_refuses_an_empty_horizon(world: World):
    with pytest.raises(CustlabError, match="horizons must be at least 1"):
        oracle(world, ORACLE_DATES[:1], churn_days=0)


def test_truth_tables_sit_beside_the_raw_tables(small_world: World):
    truth = small_world.truth_tables()
    assert set(truth) == {"latent_states", "customer_traits", "scenarios"}
    assert truth["customer_traits"]["customer_id"].equals(small_world.customers["customer_id"])
    assert (truth["customer_traits"]["frailty"] > 0).all()
    latent = truth["latent_states"]
    assert not latent.duplicated(["customer_id", "week_start"]).any()
    assert latent["state"].notna().all()
