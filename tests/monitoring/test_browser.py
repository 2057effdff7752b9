"""The browser check: a clean page passes; console errors, uncaught errors and requests
to the network are each reported (and nothing is sent); the reports custlab writes,
Evidently's drift report and the business view, load nothing from the internet."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.errors import CustlabError
from monitoring.browser import BlockedRequest, check_page
from monitoring.business import business_view
from monitoring.drift import drift_report
from tests.monitoring.test_business import WEEK_START, events_table, orders_table, segments_frame


def page(tmp_path: Path, body: str, head: str = "<title>A page</title>") -> Path:
    path = tmp_path / "page.html"
    path.write_text(f"<!doctype html><html><head>{head}</head><body>{body}</body></html>")
    return path


def test_a_clean_page_passes(tmp_path: Path):
    check = check_page(page(tmp_path, "<p>Hello world</p><script>let x = 1;</script>"))
    assert check.ok
    assert check.title == "A page"
    assert check.text_length == len("Hello world")
    assert (check.console_errors, check.page_errors, check.external_requests) == ([], [], [])
    assert check.settled


def test_console_error_thrown_error_and_remote_image_are_each_reported(tmp_path: Path):
    body = (
        '<p>Report</p><img src="https://example.com/x.png">'
        '<script>console.error("boom");</script>'
        '<script>throw new Error("thrown");</script>'
    )
    path = page(tmp_path, body)
    check = check_page(path)
    assert not check.ok
    # The page is one line: the error is on line 1 of the file.
    assert check.console_errors == [f"boom ({path.resolve().as_uri()}:1)"]
    assert check.page_errors == ["Error: thrown"]
    # Blocked and recorded; Chromium's own echo of the block is not a second error.
    assert check.external_requests == [BlockedRequest("https://example.com/x.png", "image")]


def test_scripts_fonts_fetches_and_sockets_to_the_network_are_recorded(tmp_path: Path):
    head = (
        "<title>t</title>"
        '<link rel="stylesheet" href="https://fonts.googleapis.com/css?family=Roboto">'
        '<script src="https://cdn.example.com/lib.js"></script>'
    )
    body = (
        '<img src="data:image/gif;base64,R0lGODlhAQABAAAAACw=">'
        '<script>new WebSocket("wss://example.net/socket");'
        'fetch("http://example.org/api").catch(() => {});</script>'
    )
    check = check_page(page(tmp_path, body, head))
    assert sorted((r.url, r.resource_type) for r in check.external_requests) == [
        ("http://example.org/api", "fetch"),
        ("https://cdn.example.com/lib.js", "script"),
        ("https://fonts.googleapis.com/css?family=Roboto", "stylesheet"),
        ("wss://example.net/socket", "websocket"),
    ]
    assert check.console_errors == [] and check.page_errors == []


def test_a_missing_local_file_is_a_console_error(tmp_path: Path):
    check = check_page(page(tmp_path, '<img src="missing.png">'))
    assert check.external_requests == []
    assert len(check.console_errors) == 1 and "ERR_FILE_NOT_FOUND" in check.console_errors[0]


def test_missing_page_or_browser_is_refused(tmp_path: Path):
    with pytest.raises(CustlabError, match="no page to check at"):
        check_page(tmp_path / "none.html")
    with pytest.raises(CustlabError, match="no Chromium at .*apt-get install -y chromium"):
        check_page(page(tmp_path, "<p>x</p>"), executable=tmp_path / "chromium")


def test_evidently_drift_report_loads_nothing_from_the_internet(tmp_path: Path):
    rng = np.random.default_rng(0)
    reference = pd.DataFrame({"x": rng.normal(0, 1, 2000), "c": rng.choice(["a", "b"], 2000)})
    current = pd.DataFrame({"x": rng.normal(1, 1, 500), "c": rng.choice(["a", "b"], 500)})
    drift_report(reference, current, ["x"], ["c"], tmp_path)
    check = check_page(tmp_path / "drift.html")
    # Evidently 0.7 inlines its scripts and its icon font (a data: URL).
    assert check.external_requests == []
    assert check.console_errors == [] and check.page_errors == []
    assert check.text_length > 100  # it rendered: the summary table is text


def test_business_view_page_loads_nothing_and_shows_its_text(tmp_path: Path):
    view = business_view(
        {"orders": orders_table(), "events": events_table()}, segments_frame(), WEEK_START
    )
    check = check_page(page(tmp_path, view.html()))
    assert check.ok
    assert check.text_length > 500
