"""`complete_and_claim` on SQLite: one write transaction for a worker's completions and its
next claim. The cases are PostgreSQL's (tests/postgres/test_complete_and_claim.py), collected
here again so they run on this directory's `make_store`."""

from __future__ import annotations

from tests.postgres.test_complete_and_claim import (
    test_a_job_listed_twice_completes_once,
    test_a_stale_token_completes_nothing_but_the_claim_still_happens,
    test_completions_and_the_next_claim_are_written_together,
    test_the_claim_takes_the_slots_its_completions_free,
)

__all__ = [
    "test_a_job_listed_twice_completes_once",
    "test_a_stale_token_completes_nothing_but_the_claim_still_happens",
    "test_completions_and_the_next_claim_are_written_together",
    "test_the_claim_takes_the_slots_its_completions_free",
]
