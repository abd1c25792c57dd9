"""`JobType[Model]` types its payload (DESIGN §4): mypy --strict rejects
`send_email.enqueue(WrongModel(...))` and accepts the right model, a dict, and a direct call."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest
from mypy import api

REPO = Path(__file__).resolve().parents[2]

COMMON = """
    from pydantic import BaseModel
    from timecrisis import InMemoryJobStorage, JobContext, JobScheduler, JobType

    class Email(BaseModel):
        to: str

    class Sms(BaseModel):
        number: str

    scheduler = JobScheduler(InMemoryJobStorage())

    @scheduler.job("send-email", concurrency=None)
    async def send_email(data: Email, ctx: JobContext) -> None:
        return None

    @scheduler.job("send-sms", concurrency=None, schema=Sms)
    def send_sms(data: Sms, ctx: JobContext) -> None:
        return None
"""

GOOD = """
    async def main(ctx: JobContext) -> None:
        handle: JobType[Email] = send_email
        job_id: str = await send_email.enqueue(Email(to="a@b.co"), priority=3)
        ids: list[str] = await send_email.enqueue_many([Email(to="a@b.co"), {"to": "c@d.co"}])
        same: str = send_email.enqueue_sync({"to": "a@b.co"})
        sms: JobType[Sms] = send_sms
        await send_sms.enqueue(Sms(number="1"))
        await send_email(Email(to="a@b.co"), ctx)
        print(handle.type, handle.definition.schema, job_id, ids, same, sms)
"""

BAD = """
    async def main(ctx: JobContext) -> None:
        await send_email.enqueue(Sms(number="1"))  # line A
        send_email.enqueue_sync(Sms(number="1"))  # line B
        await send_sms.enqueue_many([Email(to="a@b.co")])  # line C
        await send_email(Sms(number="1"), ctx)  # line D
"""


@pytest.mark.slow
def test_mypy_rejects_the_wrong_model_and_accepts_the_right_one(tmp_path: Path) -> None:
    good = tmp_path / "good_usage.py"
    bad = tmp_path / "bad_usage.py"
    good.write_text(textwrap.dedent(COMMON) + textwrap.dedent(GOOD))
    bad.write_text(textwrap.dedent(COMMON) + textwrap.dedent(BAD))
    env_path = os.environ.get("MYPYPATH")
    os.environ["MYPYPATH"] = str(REPO / "src")
    try:
        stdout, stderr, _ = api.run(
            [
                "--strict",
                "--config-file",
                str(REPO / "pyproject.toml"),
                "--cache-dir",
                str(REPO / ".mypy_cache"),
                str(good),
                str(bad),
            ]
        )
    finally:
        if env_path is None:
            os.environ.pop("MYPYPATH", None)
        else:
            os.environ["MYPYPATH"] = env_path
    lines = [line for line in stdout.splitlines() if ": error:" in line]
    assert not [line for line in lines if "good_usage.py" in line], stdout + stderr
    bad_lines = bad.read_text().splitlines()
    flagged = {int(line.split(":")[1]) for line in lines if "bad_usage.py" in line}
    for marker in ("line A", "line B", "line C", "line D"):
        number = next(i for i, text in enumerate(bad_lines, 1) if marker in text)
        assert number in flagged, (marker, stdout)
    assert 'incompatible type "Sms"' in stdout
