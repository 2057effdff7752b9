"""Open a report page as a reader's browser would and say what went wrong in it.

A report is read on machines that may have no internet, and a customer-analytics page
must not tell third parties who opened it: so a page passes only when it loads nothing
from the network, logs no console error and throws nothing. :func:`check_page` opens a
local HTML file in headless Chromium (Debian's ``/usr/bin/chromium``, driven by
Playwright; ``make test`` installs it) with every request that is not ``file:`` or
``data:`` blocked before it leaves the machine, and recorded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from playwright.sync_api import ConsoleMessage, Error, Route, WebSocketRoute, sync_playwright
from playwright.sync_api import Request as BrowserRequest
from playwright.sync_api import TimeoutError as BrowserTimeout

from features.errors import CustlabError

CHROMIUM = Path("/usr/bin/chromium")
LOCAL_SCHEMES = ("file:", "data:")
# Chromium's console line for a request the route aborted: the request itself is what
# the check reports, so this echo of it is not counted again as a console error.
_BLOCKED_ECHO = "net::ERR_BLOCKED_BY_CLIENT"
_ANY = re.compile(".*")


@dataclass(frozen=True)
class BlockedRequest:
    """A request the page made to the network (blocked, never sent)."""

    url: str
    resource_type: str  # Chromium's: document, stylesheet, image, font, script, fetch, websocket...


@dataclass(frozen=True)
class PageCheck:
    """What a browser saw opening one page.

    Attributes:
        path: The page file.
        title: The document's title ("" when it has none).
        text_length: Characters of visible text in the body (``innerText``, trimmed):
            a page that loads but renders nothing has 0.
        console_errors: Console messages of type error, each ``text (url:line)`` (line
            from 1), leaving out Chromium's echo of a request this check blocked.
        page_errors: Uncaught exceptions and unhandled rejections, ``Name: message``.
        external_requests: Every request whose URL is not ``file:`` or ``data:``, in
            the order the browser routed them (sockets and fetches race).
        settled: The network went idle within the timeout after the load event (False:
            the page kept requesting, and what it asked for later is not listed).
    """

    path: Path
    title: str
    text_length: int
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    external_requests: list[BlockedRequest] = field(default_factory=list)
    settled: bool = True

    @property
    def ok(self) -> bool:
        """Loaded nothing from the network, logged no error, threw nothing."""
        return not (self.console_errors or self.page_errors or self.external_requests)

    @property
    def external_urls(self) -> list[str]:
        return [request.url for request in self.external_requests]


def check_page(path: Path, timeout_seconds: float = 30.0, executable: Path = CHROMIUM) -> PageCheck:
    """Open a local HTML file in headless Chromium and report what went wrong.

    Playwright's synchronous API: call it outside a running asyncio event loop.

    Args:
        path: The HTML file.
        timeout_seconds: How long the load may take, and then how long to wait for the
            network to go idle (scripts that fetch after the load event).
        executable: The Chromium binary.

    Returns:
        The page's title and visible text length, its console errors, uncaught errors
        and the requests it made to the network.

    Raises:
        CustlabError: The file or the browser is missing, or the page did not load
            within the timeout.
    """
    page_file = Path(path).resolve()
    if not page_file.is_file():
        raise CustlabError(f"no page to check at {page_file}")
    if not executable.exists():
        raise CustlabError(
            f"no Chromium at {executable}: 'make test' installs Debian's "
            "(apt-get install -y chromium); Playwright's own download needs the internet"
        )
    timeout_ms = timeout_seconds * 1000
    console_errors: list[ConsoleMessage] = []
    page_errors: list[str] = []
    external: list[BlockedRequest] = []

    def route(route: Route, request: BrowserRequest) -> None:
        if request.url.startswith(LOCAL_SCHEMES):
            route.continue_()
            return
        external.append(BlockedRequest(request.url, request.resource_type))
        route.abort("blockedbyclient")

    def socket(socket: WebSocketRoute) -> None:
        # Never connected to the server: a mocked socket that closes at once.
        external.append(BlockedRequest(socket.url, "websocket"))
        socket.close()

    def console(message: ConsoleMessage) -> None:
        if message.type == "error":
            console_errors.append(message)

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, headless=True)
        try:
            # Service workers fetch outside the page's routes; blocked, none can.
            context = browser.new_context(service_workers="block")
            context.route("**/*", route)
            context.route_web_socket(_ANY, socket)
            page = context.new_page()
            page.set_default_timeout(timeout_ms)
            page.on("console", console)
            page.on("pageerror", lambda error: page_errors.append(_describe(error)))
            try:
                page.goto(page_file.as_uri(), wait_until="load")
            except BrowserTimeout:
                raise CustlabError(
                    f"page {page_file} did not load within {timeout_seconds:g}s"
                ) from None
            try:
                page.wait_for_load_state("networkidle")
                settled = True
            except BrowserTimeout:
                settled = False
            title = page.title()
            text_length = int(
                page.evaluate("document.body ? document.body.innerText.trim().length : 0")
            )
        finally:
            browser.close()

    blocked = {request.url for request in external}
    return PageCheck(
        path=page_file,
        title=title,
        text_length=text_length,
        console_errors=[
            f"{m.text} ({m.location.get('url', '')}:{m.location.get('lineNumber', 0) + 1})"
            for m in console_errors
            if not (_BLOCKED_ECHO in m.text and m.location.get("url") in blocked)
        ],
        page_errors=page_errors,
        external_requests=external,
        settled=settled,
    )


def _describe(error: Error) -> str:
    return f"{error.name}: {error.message}" if error.name else error.message
