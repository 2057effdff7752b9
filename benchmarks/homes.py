"""Homes the benchmarks share: built once at a scale, reused while their build stands."""

from __future__ import annotations

import json
import shutil
from pathlib import Path


def trained_home(home: Path, customers: int) -> dict[str, bool]:
    """A home at the requested scale with a model of every task, trained as the demo
    trains (its sparse split, 2 trials, at most 500 rounds). A home whose build finished
    (its ``ready.json`` written last) is reused; an unfinished one is built afresh.

    Returns:
        Per task, whether its model was promoted to champion.
    """
    from custlab import pipeline
    from custlab.settings import Settings
    from features.simulate import WorldSpec
    from training.tune import TuneSpec

    ready = home / "ready.json"
    if ready.exists():
        return json.loads(ready.read_text())["champions"]
    if home.exists():
        shutil.rmtree(home)
    settings = Settings(home=home)
    pipeline.quiet_libraries()
    pipeline.simulate(settings, WorldSpec(customers=customers))
    pipeline.build_features(settings)
    outcomes = pipeline.train_all(
        settings, TuneSpec(n_trials=2, max_rounds=500), pipeline.DEMO_SPLIT
    )
    champions = {outcome.task: outcome.promoted for outcome in outcomes}
    ready.write_text(json.dumps({"customers": customers, "champions": champions}, indent=2))
    return champions
