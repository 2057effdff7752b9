"""The static pages a reviewer opens: ``reports/index.html`` lists every monitored week with
each task's verdict, the retrain it led to and the reviews of past decisions; each
week's task folder gets an ``index.html`` with the evidence in words. Built from the
audit trail alone; self-contained (no script, style sheet or font from elsewhere)."""

from __future__ import annotations

import html
from collections import defaultdict
from pathlib import Path
from typing import Any

from monitoring.audit import read_records

_STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
.retrain { background: #fde2e1; } .alert { background: #fff3cd; } .nothing { background: #e6f4ea; }
small { color: #666; }
"""


_JUDGED = {True: "right", False: "wrong"}


def page(title: str, body: str) -> str:
    """A whole self-contained page around ``body``."""
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body><h1>{html.escape(title)}</h1>{body}</body></html>\n"
    )


def _e(value: Any) -> str:
    return html.escape(str(value))


def _number(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else "none"


def _cell(decision: dict[str, Any]) -> str:
    verdict = decision["verdict"]
    evidence = decision["evidence"]
    parts = [
        f"<a href='{_e(decision['report'])}/index.html'><b>{_e(verdict['action'])}</b></a>",
        f"<small>v{_e(decision['champion'])}, {evidence['rows']:,} rows, "
        f"{100 * evidence['drift_share']:.0f}% features drifted</small>",
    ]
    if retrained := decision.get("retrained"):
        moved = "promoted" if retrained["promoted"] else "not promoted"
        parts.append(f"<small>retrained: v{_e(retrained['version'])} {moved}</small>")
    return f"<td class='{_e(verdict['action'])}'>" + "<br>".join(parts) + "</td>"


def write_index(reports_dir: Path, audit: Path) -> Path:
    """``index.html`` of every week in the audit trail, and each week's evidence page."""
    decisions = read_records(audit, "decision")
    reviews = read_records(audit, "review")
    latest: dict[tuple[str, str], dict[str, Any]] = {}
    for decision in decisions:  # a week run again shows its newest decision
        latest[(decision["week"], decision["task"])] = decision
    tasks = sorted({task for _, task in latest})
    by_week: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    for (week, task), decision in latest.items():
        by_week[week][task] = decision
        write_week_page(reports_dir / decision["report"], decision)

    rows = []
    for week in sorted(by_week, reverse=True):
        business = reports_dir / week / "business.html"
        label = _e(week) + (
            f"<br><small><a href='{_e(week)}/business.html'>business view</a></small>"
            if business.exists()
            else ""
        )
        cells = "".join(
            _cell(by_week[week][t]) if t in by_week[week] else "<td>not run</td>" for t in tasks
        )
        rows.append(f"<tr><th>{label}</th>{cells}</tr>")
    header = "<tr><th>week</th>" + "".join(f"<th>{_e(t)}</th>" for t in tasks) + "</tr>"
    weeks_table = (
        f"<table>{header}{''.join(rows)}</table>" if rows else "<p>No week monitored yet.</p>"
    )
    review_rows = "".join(
        f"<tr><td>{_e(r['task'])}</td><td>{_e(r['reviewed_week'])}</td><td>{_e(r['action'])}</td>"
        f"<td>{_JUDGED.get(r['right'], 'not judged')}</td><td>{_e(r['note'])}</td></tr>"
        for r in reversed(reviews)
    )
    reviews_table = (
        "<table><tr><th>task</th><th>week</th><th>decision</th><th>judged</th><th>why</th></tr>"
        f"{review_rows}</table>"
        if reviews
        else "<p>No decision has matured labels yet.</p>"
    )
    body = (
        "<p>Each week's verdict per task: <b>retrain</b> (the model no longer holds; the "
        "retrain and its gate result follow), <b>alert</b> (something changed that a person "
        "should look at), <b>nothing</b>. Click a verdict for its evidence.</p>"
        f"<h2>Weeks</h2>{weeks_table}<h2>Past decisions, once their labels matured</h2>"
        f"{reviews_table}"
    )
    path = reports_dir / "index.html"
    path.write_text(page("custlab monitoring", body))
    return path


def write_week_page(folder: Path, decision: dict[str, Any]) -> Path:
    """One task's week: verdict, reasons and the evidence behind them."""
    evidence = decision["evidence"]
    verdict = decision["verdict"]
    items = "".join(f"<li>{_e(reason)}</li>" for reason in verdict["reasons"])
    facts = [
        ("champion", f"v{decision['champion']}"),
        ("rows scored", f"{evidence['rows']:,} ({evidence['source']})"),
        (
            "features drifted",
            f"{100 * evidence['drift_share']:.0f}%: "
            + (", ".join(evidence["drifted_features"]) or "none"),
        ),
        ("key features drifted", ", ".join(evidence["key_features_drifted"]) or "none"),
        (
            "prediction drift",
            f"{evidence['prediction_drift']['method']} "
            f"{_number(evidence['prediction_drift']['score'])}: "
            + ("drifted" if evidence["prediction_drift"]["drifted"] else "held"),
        ),
        ("no drift verdict", ", ".join(evidence["unjudged_features"]) or "none"),
    ]
    for outcome in evidence["outcomes"]:
        facts.append(
            (
                outcome["name"],
                f"{outcome['current']:.4g} against {outcome['reference']:.4g} "
                f"({100 * outcome['change']:+.1f}%, p={outcome['p_value']:.2g})",
            )
        )
    for shift in evidence.get("mix", []):
        moved = ", ".join(
            f"{k} {100 * shift['reference'].get(k, 0):.0f}% -> {100 * v:.0f}%"
            for k, v in shift["current"].items()
        )
        verdict_word = "changed" if shift["shifted"] else "held"
        facts.append(
            (
                f"newest customers' {shift['feature']}",
                f"{verdict_word}: {moved} (p={shift['p_value']:.2g})",
            )
        )
    if shadow := evidence.get("shadow"):
        facts.append(
            (
                "shadow challenger",
                f"v{shadow['challenger']} beside v{shadow['champion']} on "
                f"{shadow['customers']:,} customers: scores {shadow['mean_abs_difference']:.3g} "
                f"apart, rank correlation {shadow['rank_correlation']:.3f}, same tier "
                f"{100 * shadow['same_tier']:.0f}%",
            )
        )
    quality = evidence["quality"]
    facts.append(
        (
            "missing share rose",
            ", ".join(
                f"{m['feature']} {100 * m['reference_share']:.0f}% -> "
                f"{100 * m['current_share']:.0f}%"
                for m in quality["missing"]
            )
            or "none",
        )
    )
    facts.append(
        (
            "feed volume",
            ", ".join(f"{v['table']} {100 * v['change']:+.0f}%" for v in quality["volumes"])
            or "no feed to judge",
        )
    )
    if performance := evidence["performance"]:
        facts.append(
            (
                "matured performance",
                f"{performance['metric']} {performance['value']:.4f} on "
                f"week {performance['week']} against the champion's test "
                f"{performance['champion_test']:.4f}",
            )
        )
    if retrained := decision.get("retrained"):
        facts.append(
            (
                "retrain",
                f"v{retrained['version']} "
                + ("promoted" if retrained["promoted"] else "not promoted")
                + f": {retrained['gate']} (MLflow run {retrained['run_id']})",
            )
        )
    table = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in facts)
    reports = {"drift": "Evidently drift report", "quality": "data quality report"}
    reports["performance"] = "performance on matured labels"
    links = [
        f"<a href='{name}.html'>{label}</a>"
        for name, label in reports.items()
        if (folder / f"{name}.html").exists()
    ]
    body = (
        f"<p class='{_e(verdict['action'])}'><b>{_e(verdict['action'])}</b></p><ul>{items}</ul>"
        f"<table>{table}</table>"
        f"<p>{' · '.join(links)} · "
        "<a href='evidence.json'>evidence (JSON)</a> · <a href='../../index.html'>all weeks</a></p>"
    )
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "index.html"
    path.write_text(page(f"{decision['task']} · week {decision['week']}", body))
    return path
