"""The trace context crosses processes through the store: a producer process enqueues inside a
request span and exports its spans; a worker process, sharing only the store (a SQLite file or a
PostgreSQL schema), runs the job and exports its own. Each configures the SDK's global tracer
provider as an application does (`tests/otel/app.py`). The worker's attempt spans are children
of the producer's send span, link to it, and share its trace."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from tests.otel.app import tree
from tests.pg_support import drop_schema, fresh_schema, require_postgres

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'shop.db'}"  # an absolute path: four slashes
        return
    url, schema = require_postgres(), fresh_schema()
    try:
        yield f"{url}?schema={schema}"
    finally:
        drop_schema(url, schema)


def _run(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "tests.otel.app", *args],
        cwd=ROOT,
        env=dict(os.environ),  # PYTHONPATH included: the child imports this tree
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def _load(path: pathlib.Path) -> list[dict[str, Any]]:
    spans: list[dict[str, Any]] = json.loads(path.read_text())
    return spans


def test_the_attempts_in_the_worker_process_join_the_producers_trace(
    store_url: str, tmp_path: pathlib.Path
) -> None:
    produced, worked = tmp_path / "producer.json", tmp_path / "worker.json"

    job_id = _run("produce", store_url, str(produced))
    status = _run("work", store_url, str(worked), job_id)

    assert status == "completed"
    producer, worker = _load(produced), _load(worked)
    [request] = [s for s in producer if s["name"] == "POST /orders"]
    [send] = [s for s in producer if s["name"] == "send checkout"]
    attempts = [s for s in worker if s["name"] == "process checkout"]
    trace_id, send_id = send["context"]["trace_id"], send["context"]["span_id"]
    assert send["parent_id"] == request["context"]["span_id"]
    assert send["attributes"]["messaging.message.id"] == job_id
    assert len(attempts) == 2
    for span in attempts:
        assert span["context"]["trace_id"] == trace_id  # the producer's trace
        assert span["parent_id"] == send_id
        assert [link["context"] for link in span["links"]] == [send["context"]]
        assert span["kind"] == "SpanKind.CONSUMER"
        assert span["attributes"]["messaging.message.id"] == job_id
        assert span["attributes"]["timecrisis.worker"] == "worker-1"
    shown = tree(producer + worker)
    error = "ERROR(ConnectionError: payment gateway timed out)"
    expected = [
        "POST /orders [shop-web] INTERNAL",
        "  send checkout [shop-web] PRODUCER",
        (
            "    process checkout [shop-worker] CONSUMER attempt=1 failure_kind=error "
            f"type=ConnectionError links={send_id} {error}"
        ),
        f"      charge card [shop-worker] INTERNAL {error}",
        f"    process checkout [shop-worker] CONSUMER attempt=2 links={send_id}",
        "      charge card [shop-worker] INTERNAL",
    ]
    assert shown.splitlines() == expected, shown
