"""End to end, in a real headless Chromium (Debian's `chromium`, driven by Playwright; never a
downloaded browser): every page loads with nothing fetched from another site, a dead job is
retried from the page, a running job's progress changes on screen without a reload, and a
`<script>` payload shows as text and never runs; and what an operator acts from: the job-id
search, the jobs list's columns, the "cancel requested" badge, "retry all shown" with its
confirmation, the Metrics page and the chart's y-axis. The overview, jobs list and job
screenshots are taken here: into `build/screenshots/` on every run, and into `docs/images/`
(the README's) with `make screenshots` (TIMECRISIS_SCREENSHOTS_DIR=docs/images), so a test run
never edits tracked files."""

from __future__ import annotations

import os
import pathlib
from collections.abc import Iterator
from datetime import UTC, datetime
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, Dialog, Page, Route, expect, sync_playwright

from tests.dashboard.served import ServedDashboard
from tests.dashboard.showcase import Showcase, fill, start_of_hour_before
from tests.dashboard.support import XSS, claim_one, new_job
from timecrisis.clock import ManualClock
from timecrisis.models import Job, JobStatus
from timecrisis.storage.base import ClaimedJob, Completion, Failure, JobStorage, NewLogEntry
from timecrisis.storage.sqlite import SQLiteJobStorage

CHROMIUM = pathlib.Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ROOT = pathlib.Path(__file__).resolve().parents[2]
IMAGES = ROOT / os.environ.get("TIMECRISIS_SCREENSHOTS_DIR", "build/screenshots")
TOKEN = "browser-test-token"
PAGES = {
    "/": "Overview",
    "/jobs": "Jobs",
    "/dead-letters": "Dead letters",
    "/schedules": "Schedules",
    "/workers": "Workers",
    "/stats": "Metrics",
}


pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServedDashboard, Showcase]]:
    now = datetime.now(UTC).replace(microsecond=0)
    clock = ManualClock(start_of_hour_before(now))
    path = tmp_path_factory.mktemp("browser") / "dashboard.db"
    server = ServedDashboard(
        lambda: SQLiteJobStorage(path, clock=clock),
        actions_enabled=True,
        token=TOKEN,
        refresh_seconds=0.5,
    )
    with server:
        showcase = server.call(lambda storage: fill(storage, clock, now))
        yield server, showcase


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run `make test-deps` (apt-get install chromium)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


class Tab:
    """A fresh browser context and page that records what must never happen: a request to
    another host, a script error, an error in the console, a dialog."""

    def __init__(self, browser: Browser, base: str) -> None:
        self.context = browser.new_context(viewport={"width": 1280, "height": 860})
        self.context.set_default_timeout(15_000)
        self.page: Page = self.context.new_page()
        self.base = base
        self.foreign: list[str] = []
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        self.context.route("**/*", self._only_local)
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.page.on(
            "console", lambda msg: self.errors.append(msg.text) if msg.type == "error" else None
        )
        self.page.on("dialog", self._dialog)

    def _only_local(self, route: Route) -> None:
        if urlsplit(route.request.url).hostname == "127.0.0.1":
            route.continue_()
        else:
            self.foreign.append(route.request.url)
            route.abort()

    def _dialog(self, dialog: Dialog) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def goto(self, path: str) -> Page:
        response = self.page.goto(self.base + path)
        assert response is not None and response.ok, f"{path}: {response and response.status}"
        return self.page

    def log_in(self) -> None:
        self.goto("/login")
        self.page.fill("input[name=token]", TOKEN)
        self.page.get_by_role("button", name="Log in").click()
        expect(self.page.get_by_text("actions enabled")).to_be_visible()

    def close(self) -> None:
        self.context.close()
        assert not self.foreign, f"requests left the machine: {self.foreign}"
        assert not self.errors, f"script or console errors: {self.errors}"


@pytest.fixture
def tab(browser: Browser, served: tuple[ServedDashboard, Showcase]) -> Iterator[Tab]:
    opened = Tab(browser, served[0].url)
    yield opened
    opened.close()


def _job(server: ServedDashboard, job_id: str) -> Job:
    async def get(storage: JobStorage) -> Job:
        job = await storage.get_job(job_id)
        assert job is not None
        return job

    return server.call(get)


def test_every_page_loads_with_nothing_from_another_site(
    tab: Tab, served: tuple[ServedDashboard, Showcase]
) -> None:
    for path, heading in PAGES.items():
        page = tab.goto(path)
        expect(page.locator("h1")).to_contain_text(heading)
    page = tab.goto(f"/jobs/{served[1].report}")
    expect(page.locator("h1")).to_contain_text(served[1].report)
    metrics = tab.context.request.get(f"{tab.base}/metrics")
    assert metrics.ok and "timecrisis_jobs{" in metrics.text()


def test_screenshots_of_the_overview_and_a_job_for_the_docs(
    tab: Tab, served: tuple[ServedDashboard, Showcase]
) -> None:
    IMAGES.mkdir(parents=True, exist_ok=True)
    page = tab.goto("/")
    expect(page.locator("rect.bar-completed").first).to_be_visible()
    page.screenshot(path=str(IMAGES / "dashboard-overview.png"), full_page=True)
    tab.log_in()
    page = tab.goto(f"/jobs/{served[1].report}")
    expect(page.locator("#job-progress")).to_contain_text("65%")
    page.screenshot(path=str(IMAGES / "dashboard-job.png"), full_page=True)
    page = tab.goto("/jobs?type=sync-crm")
    expect(page.locator("td.reason .badge").first).to_be_visible()
    page.screenshot(path=str(IMAGES / "dashboard-jobs.png"))

    for name in ("dashboard-overview.png", "dashboard-job.png", "dashboard-jobs.png"):
        assert (IMAGES / name).stat().st_size > 10_000


def test_a_dead_job_is_retried_from_the_dead_letter_page(
    tab: Tab, served: tuple[ServedDashboard, Showcase]
) -> None:
    server, showcase = served
    tab.log_in()
    page = tab.goto("/dead-letters")
    row = page.locator("tr", has=page.locator(f'a[href="/jobs/{showcase.dead}"]'))
    row.get_by_role("button", name="Retry").click()

    expect(page.get_by_role("status")).to_have_text("job retried")
    expect(page.locator(f'a[href="/jobs/{showcase.dead}"]')).to_have_count(0)
    assert _job(server, showcase.dead).status is JobStatus.PENDING


def test_a_running_jobs_progress_changes_on_screen_without_a_reload(
    tab: Tab, served: tuple[ServedDashboard, Showcase]
) -> None:
    server, _ = served
    job = new_job("render-video", {"frames": 240})

    async def start(storage: JobStorage) -> ClaimedJob:
        await storage.insert_jobs([job])
        claimed = await claim_one(storage, "render-video", worker="batch-1.prod-42d1")
        await storage.update_progress(claimed.ref, 25)
        return claimed

    claimed = server.call(start)
    page = tab.goto(f"/jobs/{job.id}")
    expect(page.locator("#job-progress")).to_contain_text("25%")
    page.evaluate("window.__sameDocument = true")

    server.call(lambda storage: storage.update_progress(claimed.ref, 80))
    expect(page.locator("#job-progress")).to_contain_text("80%")
    server.call(lambda storage: storage.complete_jobs([Completion(claimed.ref)]))
    expect(page.locator("#job-status")).to_contain_text("completed")

    assert page.evaluate("window.__sameDocument") is True  # updated in place, never reloaded
    expect(page.locator("#job-live")).not_to_have_attribute("data-refresh", "/jobs/" + job.id)


def test_a_script_in_a_payload_a_log_or_an_error_shows_as_text_and_never_runs(
    tab: Tab, served: tuple[ServedDashboard, Showcase]
) -> None:
    server, _ = served
    hostile = XSS + "<script>alert('xss')</script>"
    job = new_job("send-email", {"to": "x@example.com", "subject": hostile})

    async def create(storage: JobStorage) -> None:
        await storage.insert_jobs([job])
        claimed = await claim_one(storage, "send-email", worker="web-1.prod-7f9c")
        await storage.append_logs([NewLogEntry(job.id, claimed.run_id, "error", hostile)])
        await storage.fail_job(Failure(claimed.ref, f"ValueError: {hostile}", False))

    server.call(create)
    for path in (f"/jobs/{job.id}", "/dead-letters", "/jobs?type=send-email"):
        page = tab.goto(path)
        page.wait_for_load_state("load")  # every image and script of the page had its chance
        assert page.evaluate("typeof window.__xss") == "undefined", path
    page = tab.goto(f"/jobs/{job.id}")
    expect(page.locator("#payload")).to_contain_text("<script>window.__xss = 1</script>")
    expect(page.locator("#fail-reason")).to_contain_text("<img src=x onerror=")
    expect(page.locator("table.logs")).to_contain_text("<script>alert('xss')</script>")
    assert page.locator("#payload script, #payload img, table.logs script").count() == 0
    assert tab.dialogs == []


def test_the_search_box_finds_a_job_by_its_id_and_says_when_there_is_none(
    tab: Tab, served: tuple[ServedDashboard, Showcase]
) -> None:
    page = tab.goto("/schedules")
    box = page.get_by_role("searchbox", name="job id")
    box.fill(served[1].report)
    box.press("Enter")

    expect(page.locator("h1")).to_contain_text(served[1].report)
    assert page.url == f"{tab.base}/jobs/{served[1].report}"

    box = page.get_by_role("searchbox", name="job id")
    box.fill("no-such-job")
    box.press("Enter")  # a 404 page: the browser shows it, the test reads it
    expect(page.locator("h1")).to_have_text("no job with id 'no-such-job'")
    expect(page.get_by_role("searchbox", name="job id")).to_have_value("no-such-job")
    # The page came with a 404, which Chromium notes in the console: expected here, and only it.
    assert tab.errors == [
        "Failed to load resource: the server responded with a status of 404 (Not Found)"
    ]
    tab.errors.clear()


def test_the_jobs_list_shows_fail_reason_run_at_worker_and_duration(
    tab: Tab, served: tuple[ServedDashboard, Showcase]
) -> None:
    page = tab.goto("/jobs?type=sync-crm&status=failed")
    for header in ("fail reason", "run at", "worker", "duration"):
        expect(page.locator("table.jobs th", has_text=header)).to_be_visible()
    # The oldest failure: minute 4 of the showcase's hour, on web-1, 24 s from claim to fail.
    row = page.locator("table.jobs tbody tr").last
    expect(row.locator("td.reason .badge")).to_have_text("error")
    expect(row.locator("td.reason")).to_contain_text("HTTPError: 503 Service Unavailable")
    expect(row).to_contain_text("web-1.prod-7f9c")
    expect(row.locator("td.num").last).to_have_text("24.0 s")


def test_a_running_job_asked_to_cancel_shows_cancel_requested(
    tab: Tab, served: tuple[ServedDashboard, Showcase]
) -> None:
    server, _ = served
    job = new_job("render-video", {"frames": 24})

    async def start(storage: JobStorage) -> None:
        await storage.insert_jobs([job])
        await claim_one(storage, "render-video", worker="batch-1.prod-42d1")

    server.call(start)
    tab.log_in()
    page = tab.goto(f"/jobs/{job.id}")
    expect(page.locator("#job-status")).to_have_text("running")
    expect(page.get_by_role("button", name="Cancel")).to_be_visible()

    server.call(lambda storage: storage.cancel_job(job.id))  # as another node would
    expect(page.locator("#job-status")).to_have_text("cancel requested")  # live, no reload
    expect(page.get_by_role("button", name="Cancel")).to_have_count(0)
    page = tab.goto("/jobs?type=render-video&status=running")
    row = page.locator("table.jobs tbody tr", has=page.locator(f'a[href="/jobs/{job.id}"]'))
    expect(row.locator(".status-cancel-requested")).to_have_text("cancel requested")


def test_the_metrics_page_is_inside_the_frame_and_raw_metrics_stay_at_metrics(
    tab: Tab, served: tuple[ServedDashboard, Showcase]
) -> None:
    page = tab.goto("/")
    page.get_by_role("link", name="Metrics", exact=True).click()

    expect(page.locator("h1")).to_contain_text("Metrics")
    expect(page.locator("nav a[aria-current=page]")).to_have_text("Metrics")
    pending = served[0].call(lambda storage: storage.get_metrics()).pending
    expect(page.locator('[data-stat="queue_depth"]')).to_have_text(str(pending))
    expect(page.locator('[data-stat="workers"]')).to_have_text("3")
    expect(page.locator("#stats-types")).to_contain_text("send-email")
    page.get_by_role("link", name="/metrics").click()
    expect(page.locator("body")).to_contain_text("timecrisis_jobs{")


def test_the_overview_chart_has_a_labelled_y_axis(
    tab: Tab, served: tuple[ServedDashboard, Showcase]
) -> None:
    page = tab.goto("/")
    ticks = page.locator("svg.chart-axis text.tick")
    expect(ticks.first).to_be_visible()
    values = [int(text) for text in ticks.all_text_contents()]
    peak = int(page.locator(".chart-scale").inner_text().split("peak ")[1].split("/")[0])

    assert values[0] == 0 and values == sorted(values) and len(values) >= 2
    assert values[-1] >= peak > values[-2]  # the top tick is the first at or over the peak
    assert page.locator("svg.chart line.grid").count() == len(values) - 1
    # The labels are not stretched with the plot: as tall as they are in the page's font.
    box = ticks.last.bounding_box()
    assert box is not None and 8 < box["height"] < 20 and box["width"] < 40


def test_retry_all_shown_asks_with_the_count_then_says_how_many(
    tab: Tab, served: tuple[ServedDashboard, Showcase]
) -> None:
    server, _ = served
    tab.log_in()
    page = tab.goto("/dead-letters")
    shown = page.locator("table.jobs tbody a[href^='/jobs/']").all_text_contents()
    assert len(shown) >= 2
    page.get_by_role("button", name=f"Retry all {len(shown)} shown").click()

    expect(page.locator("h1")).to_have_text(f"Retry {len(shown)} jobs?")
    assert all(_job(server, job_id).status is JobStatus.FAILED for job_id in shown)
    page.get_by_role("button", name=f"Yes, retry {len(shown)} jobs").click()

    expect(page.get_by_role("status")).to_have_text(f"{len(shown)} jobs retried")
    assert page.url.startswith(f"{tab.base}/dead-letters?")
    expect(page.locator("table.jobs tbody")).to_contain_text("No jobs.")
    assert all(_job(server, job_id).status is JobStatus.PENDING for job_id in shown)


def test_a_type_is_paused_and_resumed_from_the_metrics_page(
    tab: Tab, served: tuple[ServedDashboard, Showcase]
) -> None:
    server, _ = served
    tab.log_in()
    page = tab.goto("/stats")
    row = page.locator('#stats-flow tr[data-flow="send-email"]')
    expect(row).to_contain_text("active")
    row.get_by_role("button", name="Pause").click()

    expect(page.get_by_role("status")).to_contain_text("paused")
    expect(row).to_contain_text("paused")
    assert server.call(lambda storage: storage.list_paused()) == ["send-email"]
    row.get_by_role("button", name="Resume").click()
    expect(page.get_by_role("status")).to_contain_text("resumed")
    expect(row).to_contain_text("active")
    assert server.call(lambda storage: storage.list_paused()) == []
