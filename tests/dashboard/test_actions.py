"""Actions: read-only by default; with actions enabled every action needs the token (a login
cookie plus a CSRF field from the same origin, or a bearer header); what each action does."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import httpx
import pytest

from tests.dashboard.support import ORIGIN, Seeded, client
from timecrisis.dashboard import create_app
from timecrisis.dashboard._security import CSRF_FIELD, SESSION_COOKIE
from timecrisis.models import JobStatus
from timecrisis.storage.base import JobStorage, ScheduleSpec

TOKEN = "correct-horse-battery-staple"
SAME_ORIGIN = {"Origin": ORIGIN, "Sec-Fetch-Site": "same-origin"}


async def login(http: httpx.AsyncClient) -> str:
    """Log in like a browser; return the CSRF value the pages then carry."""
    response = await http.post("/login", data={"token": TOKEN, "next": "/"}, headers=SAME_ORIGIN)
    assert response.status_code == 303
    page = (await http.get("/dead-letters")).text
    match = re.search(rf'name="{CSRF_FIELD}" value="([0-9a-f]+)"', page)
    assert match is not None, "a logged-in page carries the CSRF field"
    return match.group(1)


async def status_of(storage: JobStorage, job_id: str) -> JobStatus:
    job = await storage.get_job(job_id)
    assert job is not None
    return job.status


async def test_a_read_only_dashboard_offers_no_action_and_refuses_every_one(
    storage: JobStorage, seeded: Seeded
) -> None:
    async with client(create_app(storage)) as http:
        page = (await http.get(f"/jobs/{seeded.dead}")).text
        retry = await http.post(f"/jobs/{seeded.dead}/retry", headers=SAME_ORIGIN)
        bearer = await http.post(
            f"/jobs/{seeded.dead}/retry", headers={"Authorization": f"Bearer {TOKEN}"}
        )
        login_page = await http.get("/login")

    assert "/retry" not in page and "read-only" in page
    assert retry.status_code == 403 and bearer.status_code == 403
    assert login_page.status_code == 404
    assert await status_of(storage, seeded.dead) is JobStatus.FAILED


def test_actions_without_a_token_are_refused_at_creation(storage: JobStorage) -> None:
    with pytest.raises(ValueError, match="token"):
        create_app(storage, actions_enabled=True)


async def test_before_logging_in_the_buttons_are_hidden_and_actions_refused(
    storage: JobStorage, seeded: Seeded
) -> None:
    async with client(create_app(storage, actions_enabled=True, token=TOKEN)) as http:
        page = (await http.get(f"/jobs/{seeded.dead}")).text
        retry = await http.post(f"/jobs/{seeded.dead}/retry", headers=SAME_ORIGIN)

    assert "/retry" not in page and "log in to act" in page
    assert retry.status_code == 401
    assert await status_of(storage, seeded.dead) is JobStatus.FAILED


async def test_a_wrong_token_does_not_log_in(storage: JobStorage) -> None:
    async with client(create_app(storage, actions_enabled=True, token=TOKEN)) as http:
        response = await http.post("/login", data={"token": "guess"}, headers=SAME_ORIGIN)

    assert response.status_code == 403 and "Wrong token" in response.text
    assert SESSION_COOKIE not in response.cookies


async def test_the_session_cookie_is_http_only_and_same_site_strict(storage: JobStorage) -> None:
    async with client(create_app(storage, actions_enabled=True, token=TOKEN)) as http:
        response = await http.post("/login", data={"token": TOKEN}, headers=SAME_ORIGIN)

    cookie = response.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    assert TOKEN not in response.headers["set-cookie"]


async def test_a_logged_in_browser_retries_a_dead_job(storage: JobStorage, seeded: Seeded) -> None:
    async with client(create_app(storage, actions_enabled=True, token=TOKEN)) as http:
        csrf = await login(http)
        response = await http.post(
            f"/jobs/{seeded.dead}/retry",
            data={CSRF_FIELD: csrf, "next": "/dead-letters"},
            headers=SAME_ORIGIN,
        )
        after = await http.get(response.headers["location"])

    assert response.status_code == 303
    assert response.headers["location"] == "/dead-letters?notice=retried"
    assert "job retried" in after.text and seeded.dead not in after.text
    assert await status_of(storage, seeded.dead) is JobStatus.PENDING


@pytest.mark.parametrize(
    ("headers", "with_csrf"),
    [
        pytest.param(SAME_ORIGIN, False, id="no-csrf-field"),
        pytest.param({"Origin": "https://evil.example"}, True, id="other-origin"),
        pytest.param({"Sec-Fetch-Site": "cross-site"}, True, id="cross-site-fetch"),
        pytest.param({"Referer": "https://evil.example/page"}, True, id="other-referer"),
        pytest.param({}, True, id="no-origin-at-all"),
    ],
)
async def test_a_forged_cross_site_action_is_refused(
    storage: JobStorage, seeded: Seeded, headers: dict[str, str], with_csrf: bool
) -> None:
    async with client(create_app(storage, actions_enabled=True, token=TOKEN)) as http:
        csrf = await login(http)
        data = {CSRF_FIELD: csrf} if with_csrf else {}
        response = await http.post(f"/jobs/{seeded.dead}/retry", data=data, headers=headers)

    assert response.status_code == 403
    assert await status_of(storage, seeded.dead) is JobStatus.FAILED


async def test_a_script_acts_with_the_bearer_token(storage: JobStorage, seeded: Seeded) -> None:
    async with client(create_app(storage, actions_enabled=True, token=TOKEN)) as http:
        wrong = await http.post(
            f"/jobs/{seeded.pending[0]}/cancel", headers={"Authorization": "Bearer nope"}
        )
        right = await http.post(
            f"/jobs/{seeded.pending[0]}/cancel", headers={"Authorization": f"Bearer {TOKEN}"}
        )
        again = await http.post(
            f"/jobs/{seeded.pending[0]}/cancel", headers={"Authorization": f"Bearer {TOKEN}"}
        )

    assert wrong.status_code == 401 and wrong.json()["ok"] is False
    assert right.status_code == 200 and right.json() == {"ok": True, "message": "cancel requested"}
    assert again.status_code == 409  # already canceled: finished
    assert await status_of(storage, seeded.pending[0]) is JobStatus.CANCELED


async def test_schedules_are_disabled_and_enabled(storage: JobStorage, seeded: Seeded) -> None:
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    async with client(create_app(storage, actions_enabled=True, token=TOKEN)) as http:
        disabled = await http.post("/schedules/nightly-report/disable", headers=bearer)
        enabled = await http.post("/schedules/heartbeat/enable", headers=bearer)
        missing = await http.post("/schedules/nope/enable", headers=bearer)
        csrf = await login(http)
        page = (await http.get("/schedules")).text

    nightly = await storage.get_schedule("nightly-report")
    heartbeat = await storage.get_schedule("heartbeat")
    assert disabled.status_code == enabled.status_code == 200 and missing.status_code == 404
    assert nightly is not None and not nightly.enabled
    assert heartbeat is not None and heartbeat.enabled
    assert "/schedules/nightly-report/enable" in page and csrf in page


async def test_a_redirect_after_an_action_never_leaves_the_dashboard(
    storage: JobStorage, seeded: Seeded
) -> None:
    async with client(create_app(storage, actions_enabled=True, token=TOKEN)) as http:
        csrf = await login(http)
        response = await http.post(
            f"/jobs/{seeded.pending[1]}/cancel",
            data={CSRF_FIELD: csrf, "next": "//evil.example/x"},
            headers=SAME_ORIGIN,
        )

    assert response.status_code == 303
    assert response.headers["location"].startswith("/?notice=")


async def test_a_notice_shows_only_the_dashboards_own_words(storage: JobStorage) -> None:
    async with client(create_app(storage)) as http:
        known = await http.get("/", params={"notice": "retried"})
        crafted = await http.get("/", params={"notice": "Your token expired: visit evil.example"})

    assert '<p class="notice" role="status">job retried</p>' in known.text
    assert "evil.example" not in crafted.text and 'class="notice"' not in crafted.text


async def test_an_action_is_post_only(storage: JobStorage, seeded: Seeded) -> None:
    async with client(create_app(storage, actions_enabled=True, token=TOKEN)) as http:
        await login(http)
        response = await http.get(f"/jobs/{seeded.dead}/retry")

    assert response.status_code == 405
    assert await status_of(storage, seeded.dead) is JobStatus.FAILED


async def test_logging_out_drops_the_session(storage: JobStorage, seeded: Seeded) -> None:
    async with client(create_app(storage, actions_enabled=True, token=TOKEN)) as http:
        csrf = await login(http)
        await http.post("/logout", headers=SAME_ORIGIN)
        response = await http.post(
            f"/jobs/{seeded.dead}/retry", data={CSRF_FIELD: csrf}, headers=SAME_ORIGIN
        )

    assert response.status_code == 401


UNKNOWN_ID = "01930000-0000-7000-8000-000000000000"


@pytest.mark.parametrize("action", ["retry", "cancel"])
async def test_an_action_on_an_unknown_job_is_a_404_not_a_conflict(
    storage: JobStorage, seeded: Seeded, action: str
) -> None:
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    async with client(create_app(storage, actions_enabled=True, token=TOKEN)) as http:
        unknown = await http.post(f"/jobs/{UNKNOWN_ID}/{action}", headers=bearer)
        nul = await http.post(f"/jobs/a%00b/{action}", headers=bearer)
        finished = await http.post(f"/jobs/{seeded.completed}/{action}", headers=bearer)

    assert unknown.status_code == 404 and unknown.json() == {"ok": False, "message": "no such job"}
    assert nul.status_code == 404
    assert finished.status_code == 409  # it exists: the refusal is about its state


async def test_an_id_no_store_can_hold_is_a_missing_job_not_an_unavailable_store(
    storage: JobStorage, seeded: Seeded
) -> None:
    async with client(create_app(storage)) as http:
        page = await http.get("/jobs/a%00b")
        surrogate = await http.get("/jobs/%ED%A0%80")  # not UTF-8: no id can be it
        listing = await http.get("/jobs", params={"cursor": "a\x00b", "entity_id": "x\x00"})
        dead = await http.get("/dead-letters", params={"cursor": "a\x00b"})

    assert page.status_code == 404 and "no job with this id" in page.text
    assert surrogate.status_code == 404
    assert listing.status_code == 200 and dead.status_code == 200


async def test_a_schedule_whose_name_has_a_slash_is_disabled_and_enabled(
    storage: JobStorage, seeded: Seeded
) -> None:
    await storage.upsert_schedule(
        ScheduleSpec(
            name="reports/nightly",
            type="report",
            data={"pages": 1},
            schedule_type="interval",
            schedule_value="1h",
            time_zone=None,
            next_run_at=datetime(2025, 3, 4, tzinfo=UTC),
        )
    )
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    async with client(create_app(storage, actions_enabled=True, token=TOKEN)) as http:
        await login(http)
        page = (await http.get("/schedules")).text
        disabled = await http.post("/schedules/reports/nightly/disable", headers=bearer)
        after_disable = await storage.get_schedule("reports/nightly")
        enabled = await http.post("/schedules/reports/nightly/enable", headers=bearer)

    after_enable = await storage.get_schedule("reports/nightly")
    assert "/schedules/reports/nightly/disable" in page  # the form posts where the route listens
    assert disabled.status_code == 200 and enabled.status_code == 200, (disabled, enabled)
    assert after_disable is not None and not after_disable.enabled
    assert after_enable is not None and after_enable.enabled
