"""The FastAPI and Flask recipes of docs/recipes.md, run as the doc shows them: the code is
tests/recipes/*.py, which the doc must quote exactly, driven in-process (FastAPI through httpx's
ASGI transport, inside the app's lifespan; Flask through its test client) on SQLite and
PostgreSQL."""

from __future__ import annotations

import importlib.util
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

from tests.pg_support import drop_schema, fresh_schema, require_postgres
from tests.waiting import eventually

REPO = Path(__file__).resolve().parents[2]
RECIPES = REPO / "tests" / "recipes"
DOC = REPO / "docs" / "recipes.md"
WAIT = 30.0


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def storage_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'jobs.db'}"
        return
    url, schema = require_postgres(), fresh_schema()
    try:
        yield f"{url}?schema={schema}"
    finally:
        drop_schema(url, schema)


def load(name: str, monkeypatch: pytest.MonkeyPatch, storage_url: str, **env: str) -> Any:
    """A fresh import of the recipe (its scheduler is made at import, from the environment)."""
    monkeypatch.setenv("TIMECRISIS_STORAGE", storage_url)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    spec = importlib.util.spec_from_file_location(f"recipe_{uuid.uuid4().hex}", RECIPES / name)
    assert spec is not None and spec.loader is not None
    module: ModuleType = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", ["fastapi_app.py", "flask_app.py"])
def test_the_doc_quotes_the_recipe(name: str) -> None:
    blocks = re.findall(
        rf"<!-- tests/recipes/{re.escape(name)} -->\n```python\n(.*?)```", DOC.read_text(), re.S
    )
    assert blocks == [(RECIPES / name).read_text()], f"docs/recipes.md must quote {name} as is"


@asynccontextmanager
async def serving(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    """The app as uvicorn runs it: its lifespan around the requests."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            yield client


EMAIL = {"to": "ada@example.com", "subject": "Hi"}


async def test_fastapi_enqueues(monkeypatch: pytest.MonkeyPatch, storage_url: str) -> None:
    recipe = load("fastapi_app.py", monkeypatch, storage_url)
    async with serving(recipe.app) as client:
        job_id = (await client.post("/emails", json=EMAIL)).json()["job_id"]
        assert (await client.get(f"/jobs/{job_id}")).json()["status"] == "pending"
        assert (await client.get("/jobs/nope")).status_code == 404
        assert (await client.post("/emails", json={"to": "x@example.com"})).status_code == 422


async def test_fastapi_with_the_worker_in_process(
    monkeypatch: pytest.MonkeyPatch, storage_url: str
) -> None:
    recipe = load("fastapi_app.py", monkeypatch, storage_url, RUN_WORKER="1")
    async with serving(recipe.app) as client:
        job_id = (await client.post("/emails", json=EMAIL)).json()["job_id"]

        async def completed() -> bool:
            status: dict[str, str] = (await client.get(f"/jobs/{job_id}")).json()
            return status["status"] == "completed"

        await eventually(completed, timeout=WAIT)
        result = (await client.get(f"/jobs/{job_id}")).json()["result"]
    assert result == "sent 'Hi' to ada@example.com"
    assert not recipe.scheduler.is_running


def test_flask_enqueues(monkeypatch: pytest.MonkeyPatch, storage_url: str) -> None:
    recipe = load("flask_app.py", monkeypatch, storage_url)
    client = recipe.create_app().test_client()
    try:
        job_id = client.post("/emails", json=EMAIL).json
        assert client.get(f"/jobs/{job_id['job_id']}").json["status"] == "pending"
        assert client.get("/jobs/nope").status_code == 404
        job = recipe.scheduler.get_job_sync(job_id["job_id"])
        assert job is not None and job.data == EMAIL
    finally:
        recipe.scheduler.close_sync()
