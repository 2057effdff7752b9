import json
from pathlib import Path

from monitoring.audit import append_record, read_records


def test_records_are_appended_never_rewritten(tmp_path: Path) -> None:
    path = tmp_path / "reports" / "audit.jsonl"
    append_record(path, {"kind": "decision", "week": "2025-W01", "score": float("nan")})
    first = path.read_bytes()
    append_record(path, {"kind": "review", "week": "2025-W01"})
    assert path.read_bytes().startswith(first)
    records = read_records(path)
    assert [r["kind"] for r in records] == ["decision", "review"]
    assert records[0]["score"] is None  # NaN has no JSON form
    assert [r["kind"] for r in read_records(path, "review")] == ["review"]


def test_a_torn_last_line_is_left_out(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    append_record(path, {"kind": "decision"})
    with path.open("a") as out:
        out.write('{"kind": "deci')  # a crash mid-write
    assert len(read_records(path)) == 1
    assert json.loads(path.read_text().splitlines()[0])["kind"] == "decision"
