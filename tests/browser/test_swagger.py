"""Browser test: Swagger UI at /docs, used as a person would, against the real server.

Headless Debian Chromium (never a browser build that Playwright downloads) opens /docs,
authorizes through the OAuth2 password form, runs GET /auth/me and POST /order with
"Try it out → Execute", checks the answers shown on the page, and saves a screenshot for the
README. The app serves Swagger UI's files itself; any request that would leave the machine
is refused, so the test also proves /docs needs no CDN.
"""

import importlib.util
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import pytest

from conftest import PASSWORD, TEST_SECRET, empty_database
from database import upgrade_to_head
from manage import create_admin
from settings import Settings
from tests.system.conftest import Server

if TYPE_CHECKING:  # imported for real only once we know Playwright is installed
    from playwright.sync_api import Locator, Page, Route

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",  # CI runs as root, where Chromium's sandbox refuses to start
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# `make screenshot` points this at docs/swagger.png, the README's picture; a plain test run
# writes to its temporary directory, so running the tests leaves the work tree clean.
SCREENSHOT_ENV = "SWAGGER_SCREENSHOT"
USER_EMAIL = "ada@example.com"
ORDER_BODY = {"items": [{"product_id": 1, "quantity": 2}]}
TIMEOUT_MS = 15_000


def require_browser() -> None:
    """Skip when the browser tooling is missing, except in CI, which must run this test."""
    missing = []
    if not CHROMIUM.exists():
        missing.append("Chromium not installed: apt-get install chromium")
    if importlib.util.find_spec("playwright") is None:
        missing.append("pip install playwright")
    if not missing:
        return
    message = "; ".join(missing) + " to run the Swagger browser test"
    if os.environ.get("CI"):
        pytest.fail(f"CI must run the browser test: {message}")
    pytest.skip(message)


@dataclass
class OfflineRouter:
    """Lets the browser reach the server under test and nothing else."""

    server_host: str
    refused: list[str]

    def __call__(self, route: "Route") -> None:
        if urlsplit(route.request.url).hostname == self.server_host:
            route.continue_()
        else:
            self.refused.append(route.request.url)
            route.abort()


@pytest.fixture
def api_server(tmp_path: Path) -> Iterator[Server]:
    """The real server (one worker is enough for one browser) with a product and a user."""
    with empty_database("sqlite", tmp_path) as url:
        upgrade_to_head(url)
        settings = Settings(_env_file=None, database_url=url, secret_key=TEST_SECRET)
        create_admin(settings, "admin@example.com", "Admin", password_source=lambda: PASSWORD)
        server = Server(url, tmp_path / "server.log", workers=1).start()
        try:
            admin = server.login("admin@example.com")
            product = {"name": "Coffee", "price": "12.50"}
            response = server.request("POST", "/product", json=product, headers=admin)
            assert response.status_code == 201, response.text
            signup = {"name": "Ada", "email": USER_EMAIL, "password": PASSWORD}
            response = server.request("POST", "/auth/signup", json=signup)
            assert response.status_code == 201, response.text
            yield server
        finally:
            server.stop()
        assert server.problems() == []


@pytest.fixture
def page(api_server: Server) -> Iterator["Page"]:
    """A browser page, started once the server is up: Playwright's sync API runs an event
    loop in this thread, and the server's set-up (manage.create_admin) runs one of its own."""
    require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            context.set_default_timeout(TIMEOUT_MS)
            yield context.new_page()
        finally:
            browser.close()


def authorize(page: "Page", email: str, password: str) -> None:
    """Log in through Swagger's Authorize dialog (OAuth2 password flow), then close it."""
    page.locator(".auth-wrapper button.authorize").click()
    dialog = page.locator(".dialog-ux .modal-ux")
    dialog.get_by_label("username:", exact=True).fill(email)
    dialog.get_by_label("password:", exact=True).fill(password)
    # Its accessible name is an aria-label ("Apply given OAuth2 credentials"), not its text.
    dialog.locator("button.authorize").click()
    # Swagger shows "Authorized" only once /auth/login-form has given it a token; on a
    # refusal it shows an "auth error" box instead, which the assertion then prints.
    authorized = dialog.get_by_role("heading", name="Authorized", exact=True)
    auth_error = dialog.locator(".errors")
    authorized.or_(auth_error).first.wait_for()
    assert auth_error.count() == 0, auth_error.all_inner_texts()
    dialog.get_by_role("button", name="Close").click()
    dialog.wait_for(state="detached")


def operation(page: "Page", method: str, path: str) -> "Locator":
    """The operation block whose summary shows exactly this method and path."""
    return (
        page.locator(".opblock")
        .filter(has=page.locator(".opblock-summary-method", has_text=re.compile(f"^{method}$")))
        .filter(
            has=page.locator(".opblock-summary-path", has_text=re.compile(f"^{re.escape(path)}$"))
        )
    )


def execute(block: "Locator", body: dict | None = None) -> tuple[str, str]:
    """Open the block, "Try it out", replace the example body, Execute: (status, body) shown."""
    block.locator(".opblock-summary-control").click()
    block.get_by_role("button", name="Try it out").click()
    if body is not None:
        block.locator("textarea.body-param__text").fill(json.dumps(body, indent=2))
    block.get_by_role("button", name="Execute").click()
    # The live answer has its own table; the documented responses use the same cell classes.
    live = block.locator(".live-responses-table .response")
    live.wait_for()
    status = live.locator(".response-col_status").inner_text().strip()
    shown = live.locator(".response-col_description .microlight").first.inner_text()
    return status, shown


def fold(block: "Locator") -> None:
    """Close an opened operation block again."""
    block.locator(".opblock-summary-control").click()
    block.locator(".opblock-body").wait_for(state="detached")


def test_swagger_authorize_and_try_out(page: "Page", api_server: Server, tmp_path: Path) -> None:
    router = OfflineRouter(urlsplit(api_server.base_url).hostname or "", refused=[])
    page.route("**/*", router)
    page.goto(f"{api_server.base_url}/docs")
    page.locator(".swagger-ui .information-container .title").wait_for()

    authorize(page, USER_EMAIL, PASSWORD)

    me = operation(page, "GET", "/auth/me")
    status, shown = execute(me)
    assert status == "200", shown
    assert json.loads(shown)["email"] == USER_EMAIL
    fold(me)  # the screenshot is about the order; keep it short enough for the README

    post_order = operation(page, "POST", "/order")
    status, shown = execute(post_order, ORDER_BODY)
    assert status == "201", shown
    order = json.loads(shown)
    assert order["status"] == "pending"
    assert [(i["product_id"], i["quantity"]) for i in order["items"]] == [(1, 2)]

    screenshot = Path(os.environ.get(SCREENSHOT_ENV) or tmp_path / "swagger.png")
    # The executed POST /order block down to the answer the server gave (the documented
    # responses below it would make the picture four times as tall).
    top = post_order.bounding_box()
    answer = post_order.locator(".live-responses-table").bounding_box()
    assert top is not None
    assert answer is not None
    scrolled = page.evaluate("window.scrollY")  # boxes are relative to the viewport
    clip = {
        "x": top["x"],
        "y": top["y"] + scrolled,
        "width": top["width"],
        "height": answer["y"] + answer["height"] - top["y"] + 16,
    }
    page.screenshot(path=screenshot, full_page=True, clip=clip)
    print(f"screenshot: {screenshot}")
    assert router.refused == [], "the docs page reached outside the machine"
