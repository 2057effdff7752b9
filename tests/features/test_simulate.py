import numpy as np
import pandas as pd

from features.contract import validate_table
from features.simulate import CHURNED, STATES, World, WorldSpec, simulate_world


def test_same_seed_same_world():
    spec = WorldSpec(customers=300, weeks=40, seed=3)
    first, second = simulate_world(spec), simulate_world(spec)
    pd.testing.assert_frame_equal(first.orders, second.orders)
    other = simulate_world(spec.model_copy(update={"seed": 4}))
    assert not first.orders["amount"].equals(other.orders["amount"])


def test_tables_meet_the_contract(small_world: World):
    for name, table in small_world.tables().items():
        validate_table(name, table)


def test_no_order_before_signup(small_world: World):
    signup = small_world.customers.set_index("customer_id")["signup_ts"]
    orders = small_world.orders
    assert (orders["order_ts"] >= signup.loc[orders["customer_id"]].to_numpy()).all()


def _orders_per_customer_week(world: World) -> pd.DataFrame:
    start = WorldSpec().start
    weeks = (world.orders["order_ts"] - start).dt.days // 7
    orders = world.orders.assign(week_start=start + pd.to_timedelta(weeks * 7, unit="D"))
    counts = orders.groupby(["customer_id", "week_start"]).size().rename("n").reset_index()
    return world.latent_states.merge(counts, how="left", on=["customer_id", "week_start"]).fillna(
        {"n": 0}
    )


def test_churned_customers_do_not_order(small_world: World):
    per_state = _orders_per_customer_week(small_world)
    assert per_state.loc[per_state["state"] == STATES[CHURNED], "n"].sum() == 0


def test_state_drives_behaviour(small_world: World):
    """Growing customers order more often than customers at risk."""
    per_state = _orders_per_customer_week(small_world)
    rate = per_state.groupby("state", observed=True)["n"].mean()
    assert rate["growing"] > 2 * rate["at_risk"]
    assert np.isclose(rate["churned"], 0.0)
