"""Plain rows at the driver's speed: what goes in comes back, whichever way it went in."""

from __future__ import annotations

import pytest
from psycopg import Error as PsycopgError
from sqlalchemy import select
from sqlalchemy.exc import DBAPIError

from emr.hub.db import ResourceRow, TokenIndex, before_commit, set_for_commit, write_transaction
from emr.hub.packed import pack
from emr.hub.rowcopy import COPY_FROM, reserve_pks, write_tables

R = ResourceRow.__table__
TK = TokenIndex.__table__
WHEN = "2025-09-01T01:00:00.000Z"


def resource_rows(pks: list[int], *, packed_already: bool = False) -> list[dict]:
    rows = []
    for pk in pks:
        text = f'{{"resourceType":"Basic","id":"b{pk}"}}'
        rows.append({"pk": pk, "resource_type": "Basic", "id": f"b{pk}", "version_id": 1, "last_updated": WHEN,
                     "deleted": False, "content": pack(text) if packed_already else text})
    return rows


def token_rows(pks: list[int], per_resource: int) -> list[dict]:
    return [{"resource_pk": pk, "resource_type": "Basic", "param": "identifier", "system": "urn:test", "code": f"{pk}-{n}"}
            for pk in pks for n in range(per_resource)]


def stored(engine) -> tuple[list[tuple], list[str]]:
    with engine.connect() as conn:
        resources = conn.execute(select(R.c.id, R.c.content).order_by(R.c.pk)).all()
        codes = conn.execute(select(TK.c.code).order_by(TK.c.resource_pk, TK.c.code)).scalars().all()
    return resources, codes


@pytest.mark.parametrize("per_resource", [1, COPY_FROM], ids=["few rows a table", "many rows a table"])
def test_tables_written_together_read_back_as_written(engine, per_resource):
    """A handful of rows per table (on PostgreSQL, one pipeline for all tables) and many
    (``COPY``) store the same; JSON given as text or already packed is stored alike."""
    with write_transaction(engine) as conn:
        pks = reserve_pks(conn, R, 3)
        rows = resource_rows(pks[:2]) + resource_rows(pks[2:], packed_already=True)
        write_tables(conn, [(R, rows), (TK, token_rows(pks, per_resource))])
    resources, codes = stored(engine)
    assert resources == [(f"b{pk}", f'{{"resourceType":"Basic","id":"b{pk}"}}') for pk in pks]
    assert codes == sorted(f"{pk}-{n}" for pk in pks for n in range(per_resource))


def test_a_refused_row_among_tables_written_together_leaves_nothing_behind(engine):
    """A duplicate key in the last table fails the whole write and its transaction: the
    earlier tables' rows, sent in the same round trip, are not kept."""
    with write_transaction(engine) as conn:
        pks = reserve_pks(conn, R, 1)
        write_tables(conn, [(R, resource_rows(pks))])
    with pytest.raises((DBAPIError, PsycopgError)):
        with write_transaction(engine) as conn:
            fresh = reserve_pks(conn, R, 1)
            write_tables(conn, [(R, resource_rows(fresh)), (TK, token_rows(fresh, 1)), (R, resource_rows(pks))])
    resources, codes = stored(engine)
    assert resources == [(f"b{pks[0]}", f'{{"resourceType":"Basic","id":"b{pks[0]}"}}')] and codes == []
    with write_transaction(engine) as conn:  # the connection it failed on is fit to write again
        write_tables(conn, [(R, resource_rows(reserve_pks(conn, R, 1)))])
    assert len(stored(engine)[0]) == 2


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
@pytest.mark.parametrize("per_resource", [0, 1, COPY_FROM], ids=["no rows", "few rows a table", "many rows a table"])
def test_a_setting_for_the_commit_holds_at_its_commit_and_not_after(engine, per_resource):
    """``set_for_commit`` rides with the transaction's pipeline of rows when there is one,
    and goes on its own before the commit otherwise; the next transaction is untouched."""
    seen: list[str] = []

    def show(conn) -> None:  # noqa: ANN001
        seen.append(conn.exec_driver_sql("SHOW synchronous_commit").scalar())

    with write_transaction(engine) as conn:
        set_for_commit(conn, "SET LOCAL synchronous_commit TO OFF")
        if per_resource:
            pks = reserve_pks(conn, R, 2)
            write_tables(conn, [(R, resource_rows(pks)), (TK, token_rows(pks, per_resource))])
            if per_resource < COPY_FROM:  # went with the rows' pipeline: no round trip of its own
                show(conn)
        before_commit(conn, show)
    with write_transaction(engine) as conn:
        before_commit(conn, show)
    assert seen == ["off"] * (2 if 0 < per_resource < COPY_FROM else 1) + ["on"]
    assert len(stored(engine)[0]) == (2 if per_resource else 0)
