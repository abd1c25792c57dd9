"""Pause and resume from the dashboard's Metrics page: each job type and queue with its state
and a button, behind the login and CSRF like every action (docs/flow-control.md)."""

from __future__ import annotations

import re

from tests.dashboard.support import Seeded, client
from tests.dashboard.test_actions import SAME_ORIGIN, TOKEN, login
from tests.dashboard.test_operator import BEARER, FORM, encode
from timecrisis.dashboard import create_app
from timecrisis.dashboard._security import CSRF_FIELD
from timecrisis.storage.base import JobStorage


def flow_row(page: str, name: str) -> str:
    match = re.search(rf'<tr data-flow="{re.escape(name)}">(.*?)</tr>', page, re.S)
    assert match is not None, f"no pause row for {name!r}"
    return match.group(1)


async def test_the_metrics_page_lists_types_and_queues_with_their_state(
    storage: JobStorage, seeded: Seeded
) -> None:
    assert await storage.pause("report")
    async with client(create_app(storage)) as http:
        page = (await http.get("/stats")).text

    email, report, default = (
        flow_row(page, "email"),
        flow_row(page, "report"),
        flow_row(page, "default"),
    )
    assert "type" in email and "active" in email
    assert "paused" in report
    assert "queue" in default and "active" in default
    assert "/flow/" not in page  # read-only: state shown, no button


async def test_pause_then_resume_from_the_page(storage: JobStorage, seeded: Seeded) -> None:
    async with client(create_app(storage, actions_enabled=True, token=TOKEN)) as http:
        csrf = await login(http)
        page = (await http.get("/stats")).text
        assert 'action="/flow/email/pause"' in flow_row(page, "email")
        fields = [(CSRF_FIELD, csrf), ("next", "/stats")]
        paused = await http.post(
            "/flow/email/pause", content=encode(fields), headers=FORM | SAME_ORIGIN
        )
        after_pause = (await http.get(paused.headers["location"])).text
        listed = await storage.list_paused()
        resumed = await http.post(
            "/flow/email/resume", content=encode(fields), headers=FORM | SAME_ORIGIN
        )
        after_resume = (await http.get(resumed.headers["location"])).text

    assert paused.status_code == 303 and listed == ["email"]
    assert "paused" in flow_row(after_pause, "email")
    assert 'action="/flow/email/resume"' in flow_row(after_pause, "email")
    assert "no node claims its jobs until it is resumed" in after_pause
    assert resumed.status_code == 303 and await storage.list_paused() == []
    assert "active" in flow_row(after_resume, "email") and "its due jobs start now" in after_resume


async def test_a_forged_or_anonymous_pause_is_refused_and_pauses_nothing(
    storage: JobStorage, seeded: Seeded
) -> None:
    async with client(create_app(storage, actions_enabled=True, token=TOKEN)) as http:
        await login(http)
        no_csrf = await http.post("/flow/email/pause", content=b"", headers=FORM | SAME_ORIGIN)
    async with client(create_app(storage, actions_enabled=True, token=TOKEN)) as http:
        anonymous = await http.post("/flow/email/pause", content=b"", headers=FORM | SAME_ORIGIN)
    async with client(create_app(storage)) as http:
        read_only = await http.post("/flow/email/pause", content=b"", headers=FORM | BEARER)

    assert (no_csrf.status_code, anonymous.status_code, read_only.status_code) == (403, 401, 403)
    assert await storage.list_paused() == []


async def test_a_script_pauses_with_the_token_and_gets_json(storage: JobStorage) -> None:
    async with client(create_app(storage, actions_enabled=True, token=TOKEN)) as http:
        first = await http.post("/flow/reports/pause", content=b"", headers=FORM | BEARER)
        again = await http.post("/flow/reports/pause", content=b"", headers=FORM | BEARER)
        bad = await http.post("/flow/a%00b/pause", content=b"", headers=FORM | BEARER)
        not_paused = await http.post("/flow/other/resume", content=b"", headers=FORM | BEARER)

    assert first.status_code == 200 and first.json()["ok"] is True
    assert again.status_code == 409 and again.json()["message"] == "already paused"
    assert bad.status_code == 404 and bad.json()["ok"] is False
    assert not_paused.status_code == 409 and not_paused.json()["message"] == "not paused"
    assert await storage.list_paused() == ["reports"]
