"""The read-only pages against real SQLite and PostgreSQL stores: what each shows, the job
list's filters and keyset paging, escaping, live regions, and mounting under a prefix."""

from __future__ import annotations

import html
import json
import re

from markupsafe import escape
from starlette.applications import Starlette
from starlette.routing import Mount

from tests.dashboard.support import XSS, Seeded, client, new_job
from timecrisis.clock import ManualClock
from timecrisis.dashboard import create_app
from timecrisis.schedules import preview_schedule
from timecrisis.storage.base import JobStorage

JOB_LINK = re.compile(r'href="/jobs/([0-9a-f-]{36})"')


def job_links(page: str) -> list[str]:
    return JOB_LINK.findall(page)


async def test_the_overview_shows_counts_the_chart_the_leader_and_running_jobs(
    storage: JobStorage, seeded: Seeded
) -> None:
    async with client(create_app(storage)) as http:
        response = await http.get("/")

    assert response.status_code == 200
    page = response.text
    for status, count in [("pending", 4), ("running", 1), ("completed", 1), ("failed", 1)]:
        assert f'data-count="{status}">{count}<' in page
    assert 'data-count="dead_letter">1<' in page
    assert "worker-1" in page  # the leader card
    assert "1 completed" in page and "1 failed" in page  # the last hour, per the chart
    assert job_links(page).count(seeded.running) == 1  # running jobs, with progress
    assert '<progress max="100" value="40.0">' in page
    assert 'data-refresh="/"' in page


async def test_the_jobs_page_lists_newest_first_and_filters(
    storage: JobStorage, seeded: Seeded
) -> None:
    async with client(create_app(storage)) as http:
        everything = (await http.get("/jobs")).text
        pending = (await http.get("/jobs", params={"status": "pending"})).text
        reports = (await http.get("/jobs", params={"type": "report"})).text
        customer = (await http.get("/jobs", params={"entity_id": "customer-7"})).text
        both = (await http.get("/jobs", params={"type": "email", "status": "failed"})).text

    assert job_links(everything) == [
        *reversed(seeded.pending),
        seeded.pending_xss,
        seeded.running,
        seeded.dead,
        seeded.completed,
    ]
    assert job_links(pending) == [*reversed(seeded.pending), seeded.pending_xss]
    assert job_links(reports) == [seeded.running]
    assert job_links(customer) == [seeded.pending_xss, seeded.completed]
    assert job_links(both) == [seeded.dead]
    assert 'option value="pending" selected' in pending


async def test_the_jobs_page_pages_with_a_cursor_until_the_oldest_job(
    storage: JobStorage, seeded: Seeded
) -> None:
    newest_first = [
        *reversed(seeded.pending),
        seeded.pending_xss,
        seeded.running,
        seeded.dead,
        seeded.completed,
    ]
    seen: list[str] = []
    url: str | None = "/jobs"
    async with client(create_app(storage, page_size=3)) as http:
        while url is not None:
            page = (await http.get(url)).text
            seen.extend(job_links(page))
            match = re.search(r'<a href="([^"]+)" rel="next">', page)
            url = html.unescape(match.group(1)) if match else None
            assert len(seen) <= len(newest_first), "paging never ends"

    assert seen == newest_first


async def test_paging_keeps_the_filters(storage: JobStorage, seeded: Seeded) -> None:
    async with client(create_app(storage, page_size=2)) as http:
        first = (await http.get("/jobs", params={"status": "pending"})).text
        [next_url] = re.findall(r'<a href="([^"]+)" rel="next">', first)
        second = (await http.get(html.unescape(next_url))).text

    assert "status=pending" in html.unescape(next_url)
    assert job_links(second) == [seeded.pending[0], seeded.pending_xss]
    assert 'rel="next"' not in second
    assert "« newest" in second


async def test_an_unknown_status_is_refused(storage: JobStorage) -> None:
    async with client(create_app(storage)) as http:
        response = await http.get("/jobs", params={"status": "exploded"})

    assert response.status_code == 400
    assert "unknown status" in response.text


async def test_the_job_page_shows_payload_runs_errors_logs_and_result(
    storage: JobStorage, seeded: Seeded
) -> None:
    async with client(create_app(storage)) as http:
        completed = (await http.get(f"/jobs/{seeded.completed}")).text
        dead = (await http.get(f"/jobs/{seeded.dead}")).text

    assert "a@example.com" in completed
    assert "&#34;sent&#34;: true" in completed  # the result, as escaped JSON
    assert "2.0 s" in completed  # the run's duration
    assert "sending to &lt;b&gt;a@example.com&lt;/b&gt;" in completed  # the log line, as text
    assert "RuntimeError: &lt;b&gt;SMTP down&lt;/b&gt;" in dead  # the run's error, as text
    assert "<b>SMTP down</b>" not in dead
    assert "dead letter" in dead


async def test_the_job_page_shows_the_failure_kind_and_the_traceback_escaped(
    storage: JobStorage, seeded: Seeded
) -> None:
    async with client(create_app(storage)) as http:
        dead = (await http.get(f"/jobs/{seeded.dead}")).text

    assert '<span class="badge kind" id="failure-kind">non_retryable</span>' in dead
    # The traceback, in full and as text, unfolded (the latest one a reader came for).
    assert '<details class="traceback" open><summary>traceback</summary>' in dead
    assert '<pre class="traceback" id="traceback-1">Traceback (most recent call last):' in dead
    assert "in send_email\n    raise RuntimeError(&#39;&lt;b&gt;SMTP down&lt;/b&gt;&#39;)" in dead
    assert "RuntimeError('<b>SMTP down</b>')" not in dead


async def test_a_script_in_a_payload_is_escaped(storage: JobStorage, seeded: Seeded) -> None:
    async with client(create_app(storage)) as http:
        page = (await http.get(f"/jobs/{seeded.pending_xss}")).text
        listing = (await http.get("/jobs")).text

    assert "<script>window" not in page and "<img src=x" not in page
    assert str(escape(json.dumps(XSS, ensure_ascii=False))) in page  # shown, as text
    assert "<script>window" not in listing


async def test_only_an_unfinished_job_refreshes_itself(storage: JobStorage, seeded: Seeded) -> None:
    async with client(create_app(storage)) as http:
        running = (await http.get(f"/jobs/{seeded.running}")).text
        completed = (await http.get(f"/jobs/{seeded.completed}")).text

    assert f'data-refresh="/jobs/{seeded.running}"' in running
    assert "data-refresh" not in completed


async def test_a_refresh_request_gets_the_live_region_only(
    storage: JobStorage, seeded: Seeded
) -> None:
    async with client(create_app(storage)) as http:
        fragment = await http.get(f"/jobs/{seeded.running}", headers={"X-Timecrisis-Fragment": "1"})

    assert fragment.status_code == 200
    assert fragment.text.lstrip().startswith('<div id="job-live"')
    assert "<html" not in fragment.text and "Payload" not in fragment.text
    assert '<progress max="100" value="40.0">' in fragment.text


async def test_an_unknown_job_or_page_is_a_404(storage: JobStorage) -> None:
    async with client(create_app(storage)) as http:
        job = await http.get("/jobs/0f8c0a3e-5d7b-4a43-9e43-2f1f4c9e3b52")
        page = await http.get("/nowhere")

    assert job.status_code == 404 and "no job with this id" in job.text
    assert page.status_code == 404


async def test_dead_letters_list_jobs_that_failed_for_good_with_their_reason(
    storage: JobStorage, seeded: Seeded
) -> None:
    async with client(create_app(storage)) as http:
        page = (await http.get("/dead-letters")).text

    assert job_links(page) == [seeded.dead]
    assert "RuntimeError: &lt;b&gt;SMTP down&lt;/b&gt;" in page


async def test_schedules_show_their_next_fire_times_as_the_scheduler_computes_them(
    storage: JobStorage, seeded: Seeded
) -> None:
    nightly = await storage.get_schedule("nightly-report")
    assert nightly is not None and nightly.next_run_at is not None
    expected = [
        nightly.next_run_at,
        *preview_schedule(
            "cron", "30 2 * * *", time_zone="Europe/Paris", after=nightly.next_run_at, count=4
        ),
    ]

    async with client(create_app(storage)) as http:
        page = (await http.get("/schedules")).text

    for fire in expected:
        assert f'<time datetime="{fire.isoformat()}"' in page
    assert "Europe/Paris" in page
    assert "disabled" in page  # heartbeat
    assert page.index("heartbeat") < page.index("nightly-report")  # by name


async def test_workers_show_the_leader_heartbeats_and_running_jobs(
    storage: JobStorage, seeded: Seeded
) -> None:
    async with client(create_app(storage)) as http:
        page = (await http.get("/workers")).text

    worker_2 = page[page.index('<td class="name">worker-2</td>') :]
    assert seeded.running in worker_2  # its running job, with progress
    assert "Leader: <strong>worker-1</strong>" in page


async def test_an_empty_store_renders_every_page(storage: JobStorage) -> None:
    async with client(create_app(storage)) as http:
        for path in ("/", "/jobs", "/dead-letters", "/schedules", "/workers", "/stats", "/metrics"):
            response = await http.get(path)
            assert response.status_code == 200, path


async def test_every_page_sends_a_strict_content_security_policy(storage: JobStorage) -> None:
    async with client(create_app(storage)) as http:
        response = await http.get("/")
        script = await http.get("/static/dashboard.js")

    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "default-src 'none'" in policy
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["cache-control"] == "no-store"
    assert script.status_code == 200 and "public" in script.headers["cache-control"]


async def test_mounted_under_a_prefix_every_link_stays_under_it(
    storage: JobStorage, seeded: Seeded
) -> None:
    outer = Starlette(routes=[Mount("/admin/queue", create_app(storage))])
    async with client(outer) as http:
        overview = (await http.get("/admin/queue/")).text
        job = await http.get(f"/admin/queue/jobs/{seeded.running}")
        script = await http.get("/admin/queue/static/dashboard.js")

    links = re.findall(r'(?:href|src|action|data-refresh)="(/[^"]*)"', overview)
    assert links and all(link.startswith("/admin/queue/") for link in links)
    assert (
        job.status_code == 200 and f'data-refresh="/admin/queue/jobs/{seeded.running}"' in job.text
    )
    assert script.status_code == 200


async def test_a_scheduler_can_be_passed_instead_of_a_store(
    storage: JobStorage, clock: ManualClock
) -> None:
    from timecrisis import JobScheduler

    await storage.insert_jobs([new_job("email", {"n": 1})])
    async with client(create_app(JobScheduler(storage))) as http:
        response = await http.get("/jobs")

    assert len(job_links(response.text)) == 1
