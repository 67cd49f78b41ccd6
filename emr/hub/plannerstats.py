"""The query planner's statistics: after a bulk load, during one, and as the hub writes.

Both databases plan from statistics. ``analyze`` refreshes them after a bulk load;
``PlannerStatistics`` keeps PostgreSQL's in step inside an import's own transaction,
whose rows nothing outside it can count.

And on PostgreSQL the hub keeps them up with its own writes. Without statistics
PostgreSQL plans from table sizes alone. A chained search such as
``Observation?patient.identifier=…|<national ID>`` then walks every Observation's
patient reference and looks each one's Patient up, instead of starting from the one
Patient that carries the national ID: a search that grows with the whole hub. On a fresh
hub under ``emr loadtest`` at 10 requests/s, searches by national ID reached a p99 of
1.4 s within 30 s. Autovacuum would refresh the statistics, but it may be turned off (it
is on the server these tests use) and it looks at most once a minute.

So after every ``CHECK_EVERY`` write transactions of an engine, a background thread asks
``pg_stat_user_tables`` which of the hub's tables changed by more than autovacuum's own
analyze threshold (50 rows plus a tenth of the table) since they were last analyzed, and
ANALYZEs those. ANALYZE reads a sample, so it stays cheap as the hub grows; it takes no
lock that readers or writers wait for.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine
from sqlmodel import SQLModel

from emr.hub.commitcount import EveryNCommits

CHECK_EVERY = 20  # write transactions between two looks at the statistics
BASE_THRESHOLD, SCALE = 50, 0.1  # autovacuum_analyze_threshold and _scale_factor's defaults

_STALE = text(
    "SELECT relname FROM pg_stat_user_tables WHERE schemaname = current_schema() AND relname = ANY(:tables) "
    "AND n_mod_since_analyze > :base + :scale * GREATEST(n_live_tup - n_mod_since_analyze, 0) ORDER BY relname")


def analyze(engine: Engine) -> None:
    """Refresh the query planner's statistics after a bulk load.

    Without them SQLite answers a conditional create (``identifier=system|value``) by
    scanning every resource of the type instead of the identifier index: a cost that
    grows with the data. The statistics are kept in the database file.
    """
    with engine.connect() as conn, conn.begin():
        if conn.dialect.name == "sqlite":
            conn.exec_driver_sql("PRAGMA analysis_limit=1000")
            conn.exec_driver_sql("ANALYZE")
        else:
            _analyze_hub_tables(conn)


def _analyze_hub_tables(conn: Connection) -> None:
    """PostgreSQL: only the hub's own tables; a bare ANALYZE would wait on every schema's locks."""
    conn.exec_driver_sql("ANALYZE " + ", ".join(f'"{name}"' for name in _hub_tables()))


def _hub_tables() -> list[str]:
    return [table.name for table in SQLModel.metadata.sorted_tables]


class PlannerStatistics:
    """Keeps PostgreSQL's statistics in step with the import's own transaction.

    The import's lookups by (type, id) are planned from statistics taken before it began. In
    a hub that started empty those say the tables hold almost nothing, and PostgreSQL
    reads every stored resource of the type for each batch instead of probing the id: the
    import slows as it grows (60,000 resources: half its time in that one lookup). ANALYZE
    inside the transaction counts the rows it has written; it runs whenever the rows
    loaded have doubled, so a few times per import. SQLite probes the index regardless.
    """

    FIRST = 10_000

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.next = self.FIRST

    def keep_up(self, loaded: int) -> None:
        if self.conn.dialect.name != "postgresql" or loaded < self.next:
            return
        _analyze_hub_tables(self.conn)
        self.next = 2 * loaded


def refresh(engine: Engine) -> list[str]:
    """ANALYZE the hub's tables that changed past the threshold; their names."""
    with engine.connect() as conn:
        stale = list(conn.execute(_STALE, {"tables": _hub_tables(), "base": BASE_THRESHOLD, "scale": SCALE})
                     .scalars())
        for name in stale:
            conn.exec_driver_sql(f'ANALYZE "{name}"')
        conn.commit()
    return stale


def committed(engine: Engine) -> None:
    """After a write transaction on ``engine`` commits (nothing on an engine without a keeper)."""
    keeper: EveryNCommits | None = getattr(engine, "emr_statistics", None)
    if keeper is not None:
        keeper.committed()


def attach(engine: Engine) -> None:
    engine.emr_statistics = EveryNCommits(  # type: ignore[attr-defined]
        CHECK_EVERY, lambda: refresh(engine), "emr-planner-statistics")
