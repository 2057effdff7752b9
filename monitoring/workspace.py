"""What a week's folder holds of its Evidently reports, for the reader and for the
Evidently workspace.

Each report is written three ways (:func:`save_report`): ``<name>.html`` to read,
``<name>.json`` (Evidently's ``save_json``: the metrics and test results alone, which
Evidently 0.7 cannot load back as a snapshot) and ``<name>.snapshot.json``, the whole
snapshot, which loads back. The names are ``drift`` and ``quality``
(:func:`monitoring.drift.drift_report`) and ``performance``
(:func:`monitoring.performance.performance_report`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from evidently.core.report import Snapshot

SNAPSHOT_SUFFIX = ".snapshot.json"
# The metric of a performance report that holds the task's own metric
# (:mod:`monitoring.performance`).
TASK_METRIC = "CustlabMetric"


def save_report(snapshot: Snapshot, out_dir: Path, name: str) -> None:
    """Write ``snapshot`` as ``<name>.html``, ``<name>.json`` and ``<name>.snapshot.json``.

    The snapshot file leaves out the copy of each widget that Evidently keeps beside
    every metric result as well as in the report: nothing renders it (the HTML and the
    UI render the report's widgets), and it is half to three quarters of the file.
    """
    from evidently.core.report import Snapshot

    snapshot.save_html(str(out_dir / f"{name}.html"))
    snapshot.save_json(str(out_dir / f"{name}.json"))
    model = snapshot.to_snapshot_model()
    model.metric_results = {
        metric_id: result.copy(update={"widget": None})
        for metric_id, result in model.metric_results.items()
    }
    (out_dir / f"{name}{SNAPSHOT_SUFFIX}").write_text(Snapshot.load_model(model).dumps())
