"""Index tables in the shape an earlier hub created: each row with a surrogate ``row`` key."""

from __future__ import annotations

from sqlalchemy import Column, Integer, MetaData, insert, select

from emr.hub.db import INDEX_TABLES, AccessFact, ResourceRow, create_schema, make_engine


def with_row_keys(url: str) -> None:
    """Create the hub's schema at ``url`` if it is not there, then give the index tables and
    ``access_fact`` back their ``row`` key, keeping the rows they hold."""
    older = MetaData()
    ResourceRow.__table__.to_metadata(older)  # for the foreign keys
    models = (*INDEX_TABLES, AccessFact)
    tables = [model.__table__.to_metadata(older) for model in models]
    for table in tables:
        table.append_column(Column("row", Integer, primary_key=True, autoincrement=True))
    engine = make_engine(url)
    create_schema(engine)
    with engine.begin() as conn:
        held = {model.__tablename__: [dict(r._mapping) for r in conn.execute(select(model.__table__))]
                for model in models}
        for table in tables:
            conn.exec_driver_sql(f'DROP TABLE "{table.name}"')
        older.create_all(conn, tables=tables)
        for table in tables:
            if held[table.name]:
                conn.execute(insert(table), held[table.name])
    engine.dispose()
