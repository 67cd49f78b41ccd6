"""Read and write transactions: what a read costs on PostgreSQL, and what the pool hands back after it."""

from __future__ import annotations

import pytest
from psycopg.pq import TransactionStatus
from sqlalchemy import func, select

from emr.hub import memo
from emr.hub.db import ResourceRow, read_transaction, write_transaction
from emr.hub.rowcopy import write_rows

R = ResourceRow.__table__


def basic(pk: int) -> dict:
    return {"pk": pk, "resource_type": "Basic", "id": f"b{pk}", "version_id": 1,
            "last_updated": "2025-09-01T01:00:00.000Z", "deleted": False, "content": '{"resourceType":"Basic"}'}


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_a_read_on_postgresql_opens_no_transaction_on_the_server(engine):
    with read_transaction(engine) as conn:
        conn.execute(select(func.count()).select_from(R)).scalar_one()
        status = conn.connection.dbapi_connection.info.transaction_status
    assert status == TransactionStatus.IDLE  # no BEGIN went out, so no COMMIT is owed


def test_a_failed_write_leaves_nothing_on_a_connection_that_served_a_read(engine):
    with read_transaction(engine) as conn:
        conn.execute(select(func.count()).select_from(R)).scalar_one()
    with pytest.raises(RuntimeError):
        with write_transaction(engine) as conn:
            write_rows(conn, R, [basic(1)])
            raise RuntimeError("the request failed after its first row")
    with write_transaction(engine) as conn:
        write_rows(conn, R, [basic(2)])
    with read_transaction(engine) as conn:
        assert conn.execute(select(R.c.pk)).scalars().all() == [2]


def test_what_a_read_looks_up_is_remembered_for_the_rest_of_it(engine):
    asked = []

    def lookup() -> int:
        asked.append(1)
        return 42

    with read_transaction(engine) as conn:
        answers = [memo.remembered(conn, "Organization", "27001", lookup) for _ in range(3)]
    with read_transaction(engine) as conn:
        answers.append(memo.remembered(conn, "Organization", "27001", lookup))
    assert answers == [42] * 4 and len(asked) == 2  # once per read, not once per question
