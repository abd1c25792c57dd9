"""`timecrisis dashboard`: the real command in a subprocess, serving a real SQLite store."""

from __future__ import annotations

import asyncio
import pathlib
import re
import signal
import subprocess

import httpx
import pytest

from tests.cli.support import cli_env, command, run_cli
from tests.dashboard.support import new_job
from timecrisis.storage.sqlite import SQLiteJobStorage

READY = re.compile(r"Uvicorn running on http://127\.0\.0\.1:(\d+)")
TOKEN = "a-token-for-the-cli-test"


def test_actions_without_a_token_are_a_usage_error(tmp_path: pathlib.Path) -> None:
    result = run_cli("dashboard", "--storage", f"sqlite:///{tmp_path / 'x.db'}", "--enable-actions")

    assert result.code == 2
    assert "needs a token" in result.stderr


def test_a_missing_sqlite_file_is_refused(tmp_path: pathlib.Path) -> None:
    result = run_cli("dashboard", "--storage", f"sqlite:///{tmp_path / 'missing.db'}")

    assert result.code == 1
    assert "no SQLite database" in result.stderr


def _serve(url: str, *options: str) -> tuple[subprocess.Popen[str], int]:
    process = subprocess.Popen(
        command("dashboard", "--storage", url, "--port", "0", *options),
        env=cli_env(TIMECRISIS_DASHBOARD_TOKEN=TOKEN),
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    assert process.stderr is not None
    seen: list[str] = []
    for line in process.stderr:  # uvicorn says where it listens once it does
        seen.append(line)
        match = READY.search(line)
        if match:
            return process, int(match.group(1))
    process.wait(timeout=10)
    raise AssertionError(f"the dashboard never listened; it said: {''.join(seen)}")


@pytest.mark.slow
def test_the_command_serves_pages_metrics_and_token_guarded_actions_on_loopback(
    tmp_path: pathlib.Path,
) -> None:
    database = tmp_path / "served.db"
    job = new_job("email", {"to": "a@example.com"})

    async def fill() -> None:
        store = SQLiteJobStorage(database)
        try:
            await store.insert_jobs([job])
        finally:
            await store.close()

    asyncio.run(fill())
    process, port = _serve(f"sqlite:///{database}", "--enable-actions")
    try:
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, timeout=10) as http:
            metrics = http.get("/metrics")
            page = http.get(f"/jobs/{job.id}")
            refused = http.post(f"/jobs/{job.id}/cancel", headers={"Authorization": "Bearer x"})
            canceled = http.post(
                f"/jobs/{job.id}/cancel", headers={"Authorization": f"Bearer {TOKEN}"}
            )
    finally:
        process.send_signal(signal.SIGINT)
        code = process.wait(timeout=20)
        assert process.stderr is not None
        process.stderr.close()

    assert 'timecrisis_jobs{status="pending",type="email"} 1.0' in metrics.text
    assert page.status_code == 200 and "a@example.com" in page.text
    assert refused.status_code == 401
    assert canceled.json() == {"ok": True, "message": "cancel requested"}
    assert code == 0
