"""The plain-BentoML anchor of the serving benchmark: BentoML's ordinary service, with
its defaults, over the same booster and dict of rows as the ceiling
(:mod:`benchmarks.anchor_scoring`).

    ANCHOR_MODEL=... ANCHOR_FEATURES=... python -m bentoml serve \\
        benchmarks.anchor_bentoml:PlainScoring --port 3001 --working-dir .

``POST /score`` takes ``{"customer_ids": [...]}`` and answers ``{"scores": [...]}``;
BentoML's own ``GET /readyz`` answers 200 once the service has started.
"""

from __future__ import annotations

import bentoml

from benchmarks.anchor_scoring import AnchorModel, load_from_environment


@bentoml.service(workers=1)
class PlainScoring:
    """One booster, features from memory, nothing else."""

    def __init__(self) -> None:
        self.anchor: AnchorModel = load_from_environment()

    @bentoml.api
    async def score(self, customer_ids: list[str]) -> dict[str, list[float]]:
        return {"scores": self.anchor.score(customer_ids)}
