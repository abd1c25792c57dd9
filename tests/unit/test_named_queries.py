"""The named-query loader shared by the SQL stores (`storage/_queries.py`)."""

from __future__ import annotations

import pytest

from timecrisis.storage._queries import QueryFileError, load_queries, parse_queries

_FILE = """\
-- A file comment before the first header belongs to no statement.

-- first --
-- Its description, dropped from the statement.
SELECT 1  -- a comment at the end of a line stays
FROM t

-- second_2 --
UPDATE t SET x = ?
"""


def test_statements_are_read_by_name_in_file_order_without_their_comment_lines() -> None:
    queries = parse_queries(_FILE, "test.sql")

    assert list(queries) == ["first", "second_2"]
    assert queries["first"] == "SELECT 1  -- a comment at the end of a line stays\nFROM t"
    assert queries["second_2"] == "UPDATE t SET x = ?"


def test_a_missing_name_is_a_key_error_that_names_the_file() -> None:
    queries = parse_queries(_FILE, "test.sql")

    with pytest.raises(KeyError, match=r"test.sql has no query named 'third'"):
        queries["third"]


def test_a_name_given_twice_is_refused() -> None:
    with pytest.raises(QueryFileError, match=r"test.sql defines 'first' twice"):
        parse_queries(_FILE + "\n-- first --\nSELECT 2\n", "test.sql")


def test_a_header_without_a_statement_is_refused() -> None:
    with pytest.raises(QueryFileError, match=r"test.sql: 'empty' has no statement"):
        parse_queries(_FILE + "\n-- empty --\n-- only a description\n", "test.sql")


@pytest.mark.parametrize("package", ["timecrisis.storage.sqlite", "timecrisis.storage.postgres"])
def test_each_store_file_is_parsed_once(package: str) -> None:
    assert load_queries(package) is load_queries(package)
    assert len(load_queries(package)) > 30
