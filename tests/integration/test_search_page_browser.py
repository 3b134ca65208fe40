"""The search page in a real browser (issue 21 #3/#4): Debian's headless ``chromium``, driven
by Playwright (its Python package only: the system browser, no browser download), against a
real ``handwerk serve`` with real projects. A German query shows results; a type and a price
filter are respected; the mode is sent and shown; an estimate shows its number, interval and
neighbours, and a refusal its reason; a 503 and a service that is down give their messages;
with keys enforced (reads protected) the page asks for a key, keeps it in the tab's session
only and sends it as ``Authorization: Bearer``.

Skips, saying why, without chromium or Playwright; ``make test`` installs both and sets
HANDWERK_REQUIRE_BROWSER=1, so there it fails instead. Screenshots: the test's temporary
folder (printed)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Stack
from tests.helpers import wait_until
from tests.integration.server import Server, isolated_env

pytestmark = pytest.mark.integration

REQUIRE_ENV = "HANDWERK_REQUIRE_BROWSER"
CHROMIUM = shutil.which("chromium")
TIMEOUT_MS = 20_000
KITCHENS = [
    ("Landhausküche Eiche", "Landhausküche aus Eiche mit Kochinsel und Quarzarbeitsplatte", 18, 3, 34000),
    ("Wohnküche Buche", "Wohnküche in Buche mit Frühstückstheke und offenen Wandregalen", 14, 2, 21000),
    ("Grifflose Küche Esche", "Grifflose Küche aus Esche mit integrierten Geräten", 20, 4, 45000),
    ("Küchenzeile Kiefer", "Schlichte Küchenzeile aus Kiefer mit Keramikspüle", 8, 1, 9000),
    ("Einbauküche Nussbaum", "Einbauküche in Nussbaum mit Hochschränken bis zur Decke", 22, 5, 62000),
    ("Küche mit Insel Eiche", "Offene Küche aus Eiche, große Kochinsel, geölte Fronten", 25, 4, 52000),
]
STAIRS = [
    ("Wangentreppe Buche", "Wangentreppe aus Buche mit Edelstahlgeländer", 6, 3, 14000),
    ("Faltwerktreppe Eiche", "Faltwerktreppe aus Eiche mit Glasbrüstung", 7, 4, 24000),
    ("Spindeltreppe Esche", "Spindeltreppe aus Esche mit LED-Stufenbeleuchtung", 4, 5, 19000),
]
# no furniture: an estimate for furniture has no comparable projects (422)


def _browser_or_skip() -> tuple[Any, str]:
    reason = None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        reason = "Playwright for Python is not installed (pip install -e '.[test]')"
    if reason is None and CHROMIUM is None:
        reason = ("Debian's chromium is not installed (`make install-test` installs it: "
                  "deploy/install-chromium.sh)")
    if reason is not None:
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{reason}; {REQUIRE_ENV}=1 requires the browser test")
        pytest.skip(reason)
    return sync_playwright, str(CHROMIUM)


def project(name: str, description: str, area: float, complexity: int, price: float,
            project_type: str) -> dict[str, Any]:
    return {"name": name, "description": description, "project_type": project_type,
            "region": "Bayern", "total_area_sqm": area,
            "wood_type": name.rsplit(" ", 1)[1], "complexity": complexity, "final_price": price}


@pytest.fixture(scope="module")
def served(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    _browser_or_skip()
    folder = tmp_path_factory.mktemp("page")
    env = isolated_env(stack.env, folder / "data", HANDWERK_AUTH_CACHE_TTL_S="0.5",
                       HANDWERK_AUTH_PROTECT_READS="true")
    server = Server(env, folder / "serve.log")
    server.start()
    try:
        server.wait_ready()
        projects = [project(*p, project_type="kitchen") for p in KITCHENS] + \
                   [project(*p, project_type="stairs") for p in STAIRS]
        with server.client() as client:
            for body in projects:
                assert client.post("/api/v1/projects/?wait_indexed=20", json=body).status_code == 201
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def browser(served: Server) -> Iterator[Any]:
    sync_playwright, executable = _browser_or_skip()
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable,
                                              args=["--no-sandbox", "--disable-gpu"])
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    phone = "phone" in request.node.name
    context = browser.new_context(locale="de-DE", **(
        {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True}
        if phone else {"viewport": {"width": 1280, "height": 900}}))
    tab = context.new_page()
    tab.set_default_timeout(TIMEOUT_MS)
    external: list[str] = []
    tab.on("request", lambda r: external.append(r.url)
           if not r.url.startswith(("http://127.0.0.1:", "data:")) else None)
    errors: list[str] = []
    tab.on("pageerror", lambda e: errors.append(str(e)))
    try:
        yield tab
        screenshot(tab, request.node.name)
        assert external == [], f"the page fetched from another host: {external}"
        assert errors == [], f"JavaScript errors: {errors}"
    finally:
        context.close()


def screenshot(tab: Any, name: str) -> None:
    folder = Path(tempfile.gettempdir()) / "handwerk-page-screenshots"
    folder.mkdir(exist_ok=True)
    tab.screenshot(path=str(folder / f"{name}.png"), full_page=True)
    print(f"screenshot: {folder / f'{name}.png'}")


def search(tab: Any, query: str) -> list[dict[str, Any]]:
    """Type ``query``, press Enter (the keyboard path), return the results shown."""
    tab.fill("#query", query)
    tab.press("#query", "Enter")
    # functions, not expressions: the page's CSP forbids eval, which a polled expression uses
    tab.wait_for_function("() => !document.getElementById('search-button').disabled && "
                          "!document.getElementById('results-summary').textContent.includes('läuft')")
    return tab.eval_on_selector_all("#results li", """items => items.map(li => ({
        id: li.dataset.id, type: li.dataset.type, price: Number(li.dataset.price),
        name: li.querySelector('h3').textContent,
        fields: Object.fromEntries([...li.querySelectorAll('dd')]
                                   .map(d => [d.dataset.field, d.textContent]))}))""")


def test_a_german_query_shows_results_and_filters_are_respected(served: Server, page: Any) -> None:
    page.goto(served.url + "/")
    assert page.evaluate("document.activeElement.id") == "query"  # ready to type
    results = search(page, "Eichenküche mit Kochinsel")
    assert results, page.inner_text("main")
    assert results[0]["type"] == "kitchen" and "küche" in results[0]["name"].lower()
    first = results[0]["fields"]
    assert set(first) == {"type", "wood", "region", "area", "price", "price-per-sqm", "similarity"}
    assert first["type"] == "Küche" and first["region"] == "Bayern"
    assert "€" in first["price"] and "m²" in first["area"] and "/m²" in first["price-per-sqm"]
    assert page.inner_text("#results li .snippet")

    page.select_option("#filter-type", "stairs")  # type filter
    results = search(page, "Treppe aus Eiche")
    assert results and {r["type"] for r in results} == {"stairs"}

    page.select_option("#filter-type", "")
    page.fill("#filter-max-price", "20000")  # price filter
    results = search(page, "Küche")
    assert results and all(r["price"] <= 20000 for r in results), results

    page.fill("#filter-max-price", "")
    page.select_option("#mode", "keyword")  # the mode is sent and the answer's mode shown
    search(page, "Kochinsel")
    assert page.get_attribute("#results-summary", "data-mode") == "keyword"
    assert "Stichwörter" in page.inner_text("#results-summary")


def test_on_a_phone_nothing_overflows_and_the_keyboard_focus_is_visible(served: Server,
                                                                       page: Any) -> None:
    page.goto(served.url + "/")
    assert search(page, "Wendeltreppe mit Glasbrüstung")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390  # no sideways scrolling
    page.keyboard.press("Tab")  # from the query box to the first filter, in reading order
    assert page.evaluate("document.activeElement.id") == "filter-type"
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline not in ("none", ""), outline


def test_an_estimate_shows_its_number_interval_and_neighbours(served: Server, page: Any) -> None:
    page.goto(served.url + "/")
    page.fill("#query", "Landhausküche aus Eiche mit Kochinsel")
    page.fill("#est-area", "20")
    page.select_option("#est-type", "kitchen")
    page.fill("#est-wood", "Eiche")
    page.select_option("#est-complexity", "3")
    page.press("#est-area", "Enter")  # Enter submits the estimate form
    page.wait_for_selector("#estimate-price")
    assert "Geschätzter Preis" in page.inner_text("#estimate-price")
    assert "€" in page.inner_text("#estimate-result [data-field=interval]")
    assert "80 %" in page.inner_text("#estimate-result")
    rows = page.eval_on_selector_all("#neighbours tbody tr", "rows => rows.map(r => r.dataset.id)")
    assert len(rows) >= 5  # HANDWERK_ESTIMATE_MIN_NEIGHBOURS
    screenshot(page, "estimate")

    page.select_option("#est-type", "furniture")  # no furniture projects: refused, with why
    page.click("#estimate-button")
    page.wait_for_selector("#estimate-refused")
    assert "€" not in page.inner_text("#estimate-result")


def test_with_keys_enforced_the_page_asks_for_a_key_and_keeps_it_in_the_session(
        served: Server, page: Any) -> None:
    key = keys(served, "create", "--name", "page", "--scope", "read")
    wait_until(lambda: httpx.post(f"{served.url}/api/v1/similarity/find-similar",
                                  json={"query": "Küche"}, timeout=10).status_code == 401,
               timeout=10, message="keys enforced")
    page.goto(served.url + "/")
    page.wait_for_selector("#key-panel:not([hidden])")  # the page's first call needed a key
    assert page.evaluate("document.activeElement.id") == "api-key"
    assert "API-Schlüssel nötig" in page.inner_text("#key-panel")

    page.fill("#api-key", "hw_0000000000000000_wrong")
    page.press("#api-key", "Enter")
    page.wait_for_function(
        "() => document.getElementById('key-reason').textContent.includes('abgelehnt')")

    page.fill("#api-key", key)
    page.press("#api-key", "Enter")
    page.wait_for_selector("#key-panel", state="hidden")
    sent: list[str | None] = []
    page.on("request", lambda r: sent.append(r.headers.get("authorization"))
            if r.url.endswith("/find-similar") else None)
    assert search(page, "Eichenküche mit Kochinsel")
    assert sent == [f"Bearer {key}"]
    assert page.evaluate("sessionStorage.getItem('handwerk.apiKey')") == key
    assert page.evaluate("localStorage.length") == 0
    assert key not in str(page.context.cookies())

    other_tab = page.context.new_page()  # another tab: its own session, no key
    other_tab.goto(served.url + "/")
    other_tab.wait_for_selector("#key-panel:not([hidden])")
    other_tab.close()

    page.click("#key-forget")
    assert page.evaluate("sessionStorage.getItem('handwerk.apiKey')") is None


def test_busy_and_down_services_give_a_clear_message(served: Server, page: Any) -> None:
    page.goto(served.url + "/")
    page.fill("#query", "Küche")
    # 503 as the service answers it when its searches are full (made here: the real one
    # needs HANDWERK_MAX_PENDING_SEARCHES searches waiting at once)
    page.route("**/api/v1/similarity/find-similar", lambda route: route.fulfill(
        status=503, headers={"Retry-After": "2", "Content-Type": "application/json"},
        body=json.dumps({"detail": [{"loc": [], "msg": "too many searches waiting",
                                     "type": "service_unavailable"}]})))
    page.press("#query", "Enter")
    page.wait_for_selector("#message[data-kind=busy]")
    assert "ausgelastet" in page.inner_text("#message") and "2 Sekunden" in page.inner_text("#message")
    page.unroute("**/api/v1/similarity/find-similar")

    served.stop()  # the real service goes down
    page.press("#query", "Enter")
    page.wait_for_selector("#message[data-kind=down]")
    assert "nicht erreichbar" in page.inner_text("#message")


def keys(server: Server, *args: str) -> str:
    env = {**server.env, **{k: v for k, v in os.environ.items() if k == "PATH"}}
    done = subprocess.run([sys.executable, "-m", "handwerk", "keys", *args], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()
