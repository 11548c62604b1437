"""A real browser (Debian's chromium, driven by playwright) logs in to Airflow and sees what a user sees: the
Fleet page in the navigation, and the nightly run's extra links, the Report one opening the run's report.

Never skipped: without chromium it fails and says how to install it (``make test`` installs it: see
scripts/chromium.sh). ``playwright install`` is not used (its browser CDN is unreachable). With
``EDGEOPS_SCREENSHOTS=<dir>`` it saves the pictures docs/ui.md shows.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.integration.airflow_ui import ADMIN, PASSWORDS

pytestmark = pytest.mark.integration
TIMEOUT_MS = 30_000


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    """pytest-playwright's launch arguments, on the system chromium."""
    chromium = shutil.which("chromium")
    if not chromium:
        pytest.fail("chromium is missing: `apt-get install -y chromium` (make test runs scripts/chromium.sh)")
    return {**browser_type_launch_args, "executable_path": chromium, "args": ["--no-sandbox"]}


@pytest.fixture
def logged_in(page, airflow_ui):
    page.set_default_timeout(TIMEOUT_MS)
    page.set_viewport_size({"width": 1440, "height": 900})
    page.goto(f"{airflow_ui.url}/")
    page.locator("input[name=username]").fill(ADMIN)
    page.locator("input[name=password]").fill(PASSWORDS[ADMIN])
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(lambda url: "/auth/login" not in url)
    return page


def shot(page, name: str) -> None:
    if target := os.environ.get("EDGEOPS_SCREENSHOTS"):
        Path(target).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(target) / name))


def test_fleet_page_in_the_airflow_ui(logged_in, airflow_ui):
    page = logged_in
    page.goto(f"{airflow_ui.url}/plugin/edgeops-fleet")
    fleet = page.frame_locator("iframe").first
    rows = fleet.locator("#devices tbody tr")
    rows.first.wait_for()
    assert fleet.locator("h1").inner_text() == "Fleet"
    devices = {rows.nth(i).locator("td").first.inner_text() for i in range(rows.count())}
    assert {"pi1", "pi2"} <= devices, devices
    status = rows.first.locator(".status").inner_text()
    assert status in ("ok", "stale", "never deployed"), status
    shot(page, "fleet.png")


def test_nightly_extra_links_in_the_airflow_ui(nightly_run, logged_in, airflow_ui):
    page = logged_in
    run = quote(nightly_run.run_id, safe="")
    page.goto(f"{airflow_ui.url}/dags/edgeops_nightly/runs/{run}/tasks/publish/details")  # links: Details tab
    report = page.get_by_role("link", name="Report", exact=True)
    artifacts = page.get_by_role("link", name="Artifacts", exact=True)
    report.wait_for()
    assert re.search(r"/edgeops/report/[^/]+$", report.get_attribute("href"))
    assert "/browser/artifacts/runs%2F" in artifacts.get_attribute("href")
    shot(page, "nightly-extra-links.png")
    if report.get_attribute("target") == "_blank":  # the UI opens other origins in a new tab, its own in place
        with page.context.expect_page() as opened:
            report.click()
        tab = opened.value
    else:
        report.click()
        tab = page
    tab.wait_for_url(re.compile(r"/edgeops/report/"))  # the run's report, served by the plugin after the login
    assert "Rolled out" in tab.locator("body").inner_text(), tab.url
