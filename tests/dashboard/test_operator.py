"""What an operator acts from: the frame's job-id search, the jobs list's columns, the
"cancel requested" state, "retry all shown" on the dead letters (confirmed, counted, behind
the token and CSRF like every action) and the Metrics page."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from starlette.applications import Starlette
from starlette.routing import Mount

from tests.dashboard.support import Seeded, claim_one, client, new_job
from tests.dashboard.test_actions import SAME_ORIGIN, TOKEN, login, status_of
from timecrisis.clock import ManualClock
from timecrisis.dashboard import create_app
from timecrisis.dashboard._security import CSRF_FIELD
from timecrisis.models import FailureKind, JobStatus
from timecrisis.storage.base import Failure, JobStorage

BEARER = {"Authorization": f"Bearer {TOKEN}"}
UNKNOWN_ID = "01930000-0000-7000-8000-000000000000"


# ---- search ---------------------------------------------------------------------------------


async def test_every_page_has_the_search_box(storage: JobStorage, seeded: Seeded) -> None:
    async with client(create_app(storage)) as http:
        for path in ("/", "/jobs", "/dead-letters", "/schedules", "/workers", "/stats"):
            page = (await http.get(path)).text
            assert '<form method="get" action="/search" class="search"' in page, path


async def test_an_exact_id_goes_to_the_jobs_page(storage: JobStorage, seeded: Seeded) -> None:
    async with client(create_app(storage)) as http:
        found = await http.get("/search", params={"id": f"  {seeded.dead}\n"})
        page = await http.get(found.headers["location"])

    assert found.status_code == 303 and found.headers["location"] == f"/jobs/{seeded.dead}"
    assert page.status_code == 200 and seeded.dead in page.text


async def test_an_unknown_id_says_so_and_keeps_it_in_the_box(storage: JobStorage) -> None:
    async with client(create_app(storage)) as http:
        response = await http.get("/search", params={"id": UNKNOWN_ID})

    assert response.status_code == 404
    assert f"no job with id &#39;{UNKNOWN_ID}&#39;" in response.text
    assert f'value="{UNKNOWN_ID}"' in response.text  # to correct a typo, not retype it


@pytest.mark.parametrize(
    ("params", "message"),
    [
        pytest.param({}, "type a job id to search for", id="no-id"),
        pytest.param({"id": "   "}, "type a job id to search for", id="blank"),
        pytest.param({"id": "a\x00b"}, "not a job id: it must not contain a NUL", id="nul"),
        pytest.param({"id": "x" * 1025}, "not a job id: it must be at most 1024 bytes", id="long"),
    ],
)
async def test_input_no_job_id_can_be_is_a_clear_400(
    storage: JobStorage, params: dict[str, str], message: str
) -> None:
    async with client(create_app(storage)) as http:
        response = await http.get("/search", params=params)

    assert response.status_code == 400 and message in response.text


async def test_search_stays_under_the_mount_prefix(storage: JobStorage, seeded: Seeded) -> None:
    outer = Starlette(routes=[Mount("/ops", create_app(storage))])
    async with client(outer) as http:
        page = (await http.get("/ops/jobs")).text
        found = await http.get("/ops/search", params={"id": seeded.running})

    assert 'action="/ops/search"' in page
    assert found.headers["location"] == f"/ops/jobs/{seeded.running}"


# ---- the jobs list's columns ----------------------------------------------------------------


def row_of(page: str, job_id: str) -> str:
    start = page.index(f'<a href="/jobs/{job_id}"')
    return page[start : page.index("</tr>", start)]


async def test_the_jobs_list_shows_fail_reason_run_at_worker_and_duration(
    storage: JobStorage, seeded: Seeded, clock: ManualClock
) -> None:
    multi = new_job("verify", {"to": "d@example.com"})
    await storage.insert_jobs([multi])
    claimed = await claim_one(storage, "verify", worker="worker-3")
    clock.advance(125)
    await storage.fail_job(Failure(claimed.ref, "ValueError: bad address\n  more detail\n", False))
    async with client(create_app(storage)) as http:
        page = (await http.get("/jobs")).text

    for header in ("fail reason", "run at", "worker", "duration"):
        assert f">{header}</th>" in page
    done, dead, failed = (row_of(page, i) for i in (seeded.completed, seeded.dead, multi.id))
    assert "worker-1" in done and ">2.0 s<" in done and 'class="reason-line"' not in done
    assert '<span class="badge kind">non_retryable</span>' in dead
    assert "RuntimeError: &lt;b&gt;SMTP down&lt;/b&gt;" in dead  # as text
    # The first line only, the whole text on hover; 125 s as a person reads it.
    assert ">ValueError: bad address</span>" in failed and "more detail</span>" not in failed
    assert ">2 min 05 s<" in failed and "worker-3" in failed
    assert '<span class="badge kind">error</span>' in failed
    running = row_of(page, seeded.running)
    assert "worker-2" in running and ">—<" in running  # no duration until it finishes
    assert '<time datetime="2025-03-03T09:00:33+00:00"' in running  # its run_at


# ---- cancel requested -----------------------------------------------------------------------


async def test_a_running_job_asked_to_cancel_shows_cancel_requested(
    storage: JobStorage, seeded: Seeded
) -> None:
    assert await storage.cancel_job(seeded.running) == "cancel_requested"
    async with client(create_app(storage, actions_enabled=True, token=TOKEN)) as http:
        await login(http)
        listing = (await http.get("/jobs")).text
        page = (await http.get(f"/jobs/{seeded.running}")).text

    badge = '<span class="status status-cancel-requested"'
    assert badge in row_of(listing, seeded.running)
    assert listing.count(badge) == 1  # only that job
    status = page[page.index('<span id="job-status">') :]
    assert status.startswith(f'<span id="job-status">{badge}')
    assert f"/jobs/{seeded.running}/cancel" not in page  # asked once is enough


async def test_a_plain_running_job_is_running(storage: JobStorage, seeded: Seeded) -> None:
    async with client(create_app(storage)) as http:
        page = (await http.get(f"/jobs/{seeded.running}")).text

    assert '<span id="job-status"><span class="status status-running">running</span>' in page


# ---- retry all shown ------------------------------------------------------------------------


async def dead_letters(storage: JobStorage, clock: ManualClock, count: int) -> list[str]:
    """`count` more dead letters, newest last."""
    ids = []
    for i in range(count):
        job = new_job("sync", {"n": i})
        await storage.insert_jobs([job])
        claimed = await claim_one(storage, "sync")
        clock.advance(1)
        await storage.fail_job(Failure(claimed.ref, "boom", False, kind=FailureKind.ERROR))
        ids.append(job.id)
    return ids


FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def encode(fields: list[tuple[str, str]]) -> bytes:
    """A form body with repeated fields (`id=a&id=b`), which httpx's `data=` dict cannot hold."""
    return urlencode(fields).encode()


def hidden_ids(form: str) -> list[str]:
    return re.findall(r'<input type="hidden" name="id" value="([^"]+)">', form)


def bulk_form(page: str) -> str:
    start = page.index('<form method="post" action="/dead-letters/retry"')
    return page[start : page.index("</form>", start)]


async def test_retry_all_shown_asks_first_then_retries_exactly_the_page(
    storage: JobStorage, seeded: Seeded, clock: ManualClock
) -> None:
    extra = await dead_letters(storage, clock, 4)
    async with client(create_app(storage, actions_enabled=True, token=TOKEN, page_size=3)) as http:
        csrf = await login(http)
        older = (await http.get("/dead-letters")).text
        [next_url] = re.findall(r'<a href="([^"]+)" rel="next">', older)
        page = (await http.get(next_url.replace("&amp;", "&"))).text  # the second page
        shown = hidden_ids(bulk_form(page))
        assert shown == [extra[0], seeded.dead] and "Retry all 2 shown" in page
        fields = [(CSRF_FIELD, csrf), ("next", next_url), *(("id", i) for i in shown)]

        question = await http.post(
            "/dead-letters/retry", content=encode(fields), headers=FORM | SAME_ORIGIN
        )
        unchanged = [await status_of(storage, i) for i in shown]
        confirmed = await http.post(
            "/dead-letters/retry",
            content=encode([*fields, ("confirm", "yes")]),
            headers=FORM | SAME_ORIGIN,
        )
        after = await http.get(confirmed.headers["location"])

    assert question.status_code == 200 and "Retry 2 jobs?" in question.text
    assert hidden_ids(bulk_form(question.text)) == shown
    assert 'name="confirm" value="yes"' in question.text
    assert unchanged == [JobStatus.FAILED, JobStatus.FAILED]  # asking changed nothing
    assert confirmed.status_code == 303
    location = urlsplit(confirmed.headers["location"])
    assert location.path == "/dead-letters"
    assert parse_qs(location.query)["notice"] == ["bulk-retried"]
    assert "2 jobs retried" in after.text
    assert [await status_of(storage, i) for i in shown] == [JobStatus.PENDING] * 2
    # The first page was not shown, so it was not retried.
    assert [await status_of(storage, i) for i in extra[1:]] == [JobStatus.FAILED] * 3


async def test_a_script_retries_with_the_bearer_token_and_confirm_yes(
    storage: JobStorage, seeded: Seeded, clock: ManualClock
) -> None:
    ids = await dead_letters(storage, clock, 2)
    assert await storage.retry_job(ids[0])  # someone else was quicker
    body = encode([("id", i) for i in [*ids, seeded.dead]])
    async with client(create_app(storage, actions_enabled=True, token=TOKEN)) as http:
        unconfirmed = await http.post("/dead-letters/retry", content=body, headers=FORM | BEARER)
        done = await http.post(
            "/dead-letters/retry",
            content=body + b"&confirm=yes",
            headers=FORM | BEARER,
        )

    assert unconfirmed.status_code == 400 and "confirm=yes" in unconfirmed.json()["message"]
    assert done.status_code == 200
    assert done.json() == {
        "ok": True,
        "message": "2 of 3 jobs retried: the other 1 were no longer failed or canceled "
        "(retried or purged meanwhile)",
        "retried": [ids[1], seeded.dead],
        "not_retried": [ids[0]],
    }


@pytest.mark.parametrize(
    ("headers", "with_csrf", "status"),
    [
        pytest.param(SAME_ORIGIN, False, 403, id="no-csrf-field"),
        pytest.param({"Origin": "https://evil.example"}, True, 403, id="other-origin"),
        pytest.param({"Sec-Fetch-Site": "cross-site"}, True, 403, id="cross-site-fetch"),
        pytest.param({}, True, 403, id="no-origin-at-all"),
    ],
)
async def test_a_forged_bulk_retry_is_refused(
    storage: JobStorage, seeded: Seeded, headers: dict[str, str], with_csrf: bool, status: int
) -> None:
    async with client(create_app(storage, actions_enabled=True, token=TOKEN)) as http:
        csrf = await login(http)
        fields = [("id", seeded.dead), ("confirm", "yes")]
        if with_csrf:
            fields.append((CSRF_FIELD, csrf))
        response = await http.post(
            "/dead-letters/retry", content=encode(fields), headers=FORM | headers
        )

    assert response.status_code == status
    assert await status_of(storage, seeded.dead) is JobStatus.FAILED


async def test_bulk_retry_needs_a_login_and_actions_enabled(
    storage: JobStorage, seeded: Seeded
) -> None:
    body = encode([("id", seeded.dead), ("confirm", "yes")])
    async with client(create_app(storage, actions_enabled=True, token=TOKEN)) as http:
        page = (await http.get("/dead-letters")).text
        anonymous = await http.post("/dead-letters/retry", content=body, headers=FORM | SAME_ORIGIN)
        wrong = await http.post(
            "/dead-letters/retry", content=body, headers=FORM | {"Authorization": "Bearer nope"}
        )
    async with client(create_app(storage)) as http:
        read_only = await http.post("/dead-letters/retry", content=body, headers=FORM | BEARER)
        read_only_page = (await http.get("/dead-letters")).text

    assert "/dead-letters/retry" not in page and "/dead-letters/retry" not in read_only_page
    assert anonymous.status_code == 401 and wrong.status_code == 401
    assert read_only.status_code == 403
    assert await status_of(storage, seeded.dead) is JobStatus.FAILED


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        pytest.param([("confirm", "yes")], "no job to retry", id="no-id"),
        pytest.param([("id", "a\x00b"), ("confirm", "yes")], "not a job id", id="nul"),
        pytest.param(
            [("id", f"id-{i}") for i in range(4)] + [("confirm", "yes")],
            "at most 3 at once",
            id="more-than-a-page",
        ),
    ],
)
async def test_a_bulk_form_no_page_sends_is_a_clear_400(
    storage: JobStorage, seeded: Seeded, fields: list[tuple[str, str]], message: str
) -> None:
    app = create_app(storage, actions_enabled=True, token=TOKEN, page_size=3)
    async with client(app) as http:
        csrf = await login(http)
        browser = await http.post(
            "/dead-letters/retry",
            content=encode([*fields, (CSRF_FIELD, csrf)]),
            headers=FORM | SAME_ORIGIN,
        )
        script = await http.post(
            "/dead-letters/retry", content=encode(fields), headers=FORM | BEARER
        )

    assert browser.status_code == 400 and message in browser.text
    assert script.status_code == 400 and message in script.json()["message"]
    assert await status_of(storage, seeded.dead) is JobStatus.FAILED


async def test_a_bulk_form_larger_than_a_page_of_ids_is_refused(storage: JobStorage) -> None:
    app = create_app(storage, actions_enabled=True, token=TOKEN, page_size=1)
    async with client(app) as http:
        response = await http.post(
            "/dead-letters/retry", content=b"id=" + b"x" * 40_000, headers=FORM | BEARER
        )

    assert response.status_code == 413


async def test_a_crafted_count_notice_shows_nothing_odd(storage: JobStorage) -> None:
    async with client(create_app(storage)) as http:
        fine = await http.get("/", params={"notice": "bulk-retried", "retried": 1, "of": 1})
        crafted = [
            (await http.get("/", params={"notice": "bulk-retried", **params})).text
            for params in (
                {"retried": "5", "of": "2"},  # more retried than asked
                {"retried": "-1", "of": "2"},
                {"retried": "evil.example", "of": "2"},
                {"retried": "99999", "of": "99999"},
                {"of": "2"},
            )
        ]

    assert '<p class="notice" role="status">1 job retried</p>' in fine.text
    assert all('class="notice"' not in page for page in crafted)


# ---- the Metrics page -----------------------------------------------------------------------


async def test_the_metrics_page_shows_counts_depth_durations_and_workers(
    storage: JobStorage, seeded: Seeded
) -> None:
    async with client(create_app(storage)) as http:
        response = await http.get("/stats")
        raw = await http.get("/metrics")

    page = response.text
    assert response.status_code == 200 and "<h1>Metrics" in page
    assert 'href="/stats" aria-current="page"' in page  # inside the frame, its tab current
    for stat, value in [
        ("queue_depth", "4"),
        ("running", "1"),
        ("completed", "1"),
        ("failed", "1"),
        ("dead_letter", "1"),
        ("average_duration", "2.0 s"),
        ("workers", "2"),
    ]:
        assert f'data-stat="{stat}">{value}<' in page, stat
    assert 'leader <span class="mono">worker-1</span>' in page
    email = page[page.index('<a href="/jobs?type=email">') :]
    email = email[: email.index("</tr>")]
    assert "≤ 2.5 s" in email  # the completed run's bucket (2 s)
    assert "non_retryable 1" in email
    assert raw.headers["content-type"].startswith("text/plain")  # Prometheus keeps its text


async def test_the_metrics_page_of_an_empty_store(storage: JobStorage) -> None:
    async with client(create_app(storage)) as http:
        response = await http.get("/stats")

    assert response.status_code == 200 and "No jobs yet." in response.text
