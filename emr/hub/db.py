"""The hub's tables and its database engine.

Each resource is kept as the JSON the hub serves (``content``, deflated by
``emr.hub.packed``) plus rows in small index tables that hold only what is searched. The index tables point at the
resource's surrogate key ``pk`` so a search is a join on integers.

SQLite (the default) runs in WAL mode with ``synchronous=FULL``; write transactions start with
``BEGIN IMMEDIATE`` so two writers never deadlock upgrading a read lock, and a busy
writer waits instead of failing. The WAL reaches the database file in background
checkpoints (``emr.hub.walcheckpoint``), not inside a request. PostgreSQL uses row locks (``SELECT … FOR UPDATE``)
where SQLite relies on its single writer, and its planner statistics are refreshed as the
hub writes (``emr.hub.plannerstats``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import BigInteger, Column, Index, Text, UniqueConstraint, event, select, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Field, SQLModel, create_engine

from emr.errors import InvalidInput
from emr.hub import liveness, plannerstats, walcheckpoint
from emr.hub.packed import PackedJSON


class ResourceRow(SQLModel, table=True):
    __tablename__ = "resource"
    __table_args__ = (UniqueConstraint("resource_type", "id", name="uq_resource_type_id"),)

    pk: int | None = Field(default=None, primary_key=True)
    resource_type: str = Field(max_length=64)
    id: str = Field(max_length=64)
    version_id: int
    last_updated: str = Field(max_length=40)
    deleted: bool = False
    content: str = Field(sa_column=Column(PackedJSON, nullable=False))


class VersionRow(SQLModel, table=True):
    """One row per version. ``content`` is empty for the current version, whose JSON is the
    resource row's; a newer version moves it here (``store.CURRENT``)."""

    __tablename__ = "resource_version"

    resource_pk: int = Field(primary_key=True, foreign_key="resource.pk")
    version_id: int = Field(primary_key=True)
    last_updated: str = Field(max_length=40)
    method: str = Field(max_length=8)
    deleted: bool = False
    content: str = Field(sa_column=Column(PackedJSON, nullable=False))


# The index tables and ``access_fact`` are derived rows, written and read only through
# SQLAlchemy Core, and have no primary key in the database. A surrogate key would cost
# PostgreSQL 8 bytes a row and an index of its own (about 300 bytes a resource on B3's
# data) and serve no query; rows are found by ``resource_pk`` or by the lookup index.
# The ORM wants some key to map a class, so ``_core_only`` names one that is not unique.
# (A database from before keeps its ``row`` column, which fills itself.)
def _core_only(*columns: str) -> dict:
    return {"primary_key": list(columns)}


class TokenIndex(SQLModel, table=True):
    __tablename__ = "ix_token"
    __table_args__ = (Index("ix_token_lookup", "resource_type", "param", "code", "system"),)
    __mapper_args__ = _core_only("resource_pk", "param")

    resource_pk: int = Field(foreign_key="resource.pk", index=True)
    resource_type: str = Field(max_length=64)
    param: str = Field(max_length=64)
    system: str = Field(default="", max_length=255)
    code: str = Field(max_length=255)


class StringIndex(SQLModel, table=True):
    __tablename__ = "ix_string"
    __table_args__ = (Index("ix_string_lookup", "resource_type", "param", "value"),)
    __mapper_args__ = _core_only("resource_pk", "param")

    resource_pk: int = Field(foreign_key="resource.pk", index=True)
    resource_type: str = Field(max_length=64)
    param: str = Field(max_length=64)
    value: str = Field(max_length=255)  # normalised: lower case, no accents
    raw: str = Field(max_length=255)  # as written, for :exact


class DateIndex(SQLModel, table=True):
    """A date or period as a half-open range [low, high) in epoch milliseconds (UTC)."""

    __tablename__ = "ix_date"
    __table_args__ = (Index("ix_date_lookup", "resource_type", "param", "low", "high"),)
    __mapper_args__ = _core_only("resource_pk", "param")

    resource_pk: int = Field(foreign_key="resource.pk", index=True)
    resource_type: str = Field(max_length=64)
    param: str = Field(max_length=64)
    low: int = Field(sa_column=Column(BigInteger, nullable=False))
    high: int = Field(sa_column=Column(BigInteger, nullable=False))


class ReferenceIndex(SQLModel, table=True):
    __tablename__ = "ix_reference"
    __table_args__ = (Index("ix_reference_lookup", "resource_type", "param", "target_id", "target_type"),)
    __mapper_args__ = _core_only("resource_pk", "param")

    resource_pk: int = Field(foreign_key="resource.pk", index=True)
    resource_type: str = Field(max_length=64)
    param: str = Field(max_length=64)
    target_type: str = Field(max_length=64)
    target_id: str = Field(max_length=64)


class ConditionalClaim(SQLModel, table=True):
    """One row per (type, normalised criteria) ever used in a conditional write.

    Its primary key is the constraint that makes concurrent conditional creates
    atomic: every writer inserts-or-ignores the claim, then locks it, then searches.
    """

    __tablename__ = "conditional_claim"

    resource_type: str = Field(primary_key=True, max_length=64)
    criteria: str = Field(primary_key=True, max_length=512)


class PersonRow(SQLModel, table=True):
    """The person behind every facility's Patient that carries one national ID."""

    __tablename__ = "person"

    national_id: str = Field(primary_key=True, max_length=12)
    person_id: str = Field(max_length=64)
    needs_review: bool = False
    review_reasons: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))


class ResultFact(SQLModel, table=True):
    """One row per LOINC coding of an Observation: what the order-time reuse check reads.

    The national ID is copied here from the subject Patient (and kept in step when
    the Patient changes), so "this person's results for these tests" is one range
    scan of ``ix_result_lookup``.
    """

    __tablename__ = "result_fact"
    __table_args__ = (Index("ix_result_lookup", "national_id", "loinc", "collected_ms"),)

    row: int | None = Field(default=None, primary_key=True)
    resource_pk: int = Field(foreign_key="resource.pk", index=True)
    observation_id: str = Field(max_length=64)
    patient_id: str = Field(default="", max_length=64, index=True)
    national_id: str | None = Field(default=None, max_length=12)
    loinc: str = Field(max_length=16)
    status: str = Field(max_length=32)
    collected_ms: int = Field(sa_column=Column(BigInteger, nullable=False))
    performer_code: str | None = Field(default=None, max_length=16)
    positive: bool | None = None
    identity_ok: bool = True  # False when the subject's registration failed identity verification


class PatientIdentity(SQLModel, table=True):
    """What the National Population Database said about one facility's registration."""

    __tablename__ = "patient_identity"
    __table_args__ = (Index("ix_identity_lookup", "national_id", "facility_code"),)

    patient_id: str = Field(primary_key=True, max_length=64)
    national_id: str = Field(max_length=12)
    facility_code: str = Field(default="", max_length=16)
    status: str = Field(max_length=16)  # verified | mismatch | unknown | not-checked


class AccessFact(SQLModel, table=True):
    """Who owns a resource (the facility that performed, authored or requested it) and
    which patient it is about: what the access rules read. One row per owner."""

    __tablename__ = "access_fact"
    __mapper_args__ = _core_only("resource_pk", "owner")

    resource_pk: int = Field(foreign_key="resource.pk", index=True)
    owner: str = Field(default="", max_length=16, index=True)  # facility code; "" for the hub's own
    patient_id: str = Field(default="", max_length=64, index=True)  # "" when about no patient


class CareLink(SQLModel, table=True):
    """A treatment relationship: a registration, encounter, order or referral that
    involves one facility and one patient."""

    __tablename__ = "care_link"
    __table_args__ = (Index("ix_care_link_lookup", "facility_code", "patient_id"),)

    row: int | None = Field(default=None, primary_key=True)
    resource_pk: int = Field(foreign_key="resource.pk", index=True)
    facility_code: str = Field(max_length=16)
    patient_id: str = Field(max_length=64)


class PatientSubject(SQLModel, table=True):
    """The person a Patient is: its national ID, or ``Patient/<id>`` until it has one."""

    __tablename__ = "patient_subject"

    patient_id: str = Field(primary_key=True, max_length=64)
    subject: str = Field(max_length=80, index=True)


class SharingRefusal(SQLModel, table=True):
    """An active Consent whose provision denies sharing, by the patient it is about."""

    __tablename__ = "sharing_refusal"

    resource_pk: int = Field(primary_key=True, foreign_key="resource.pk")
    patient_id: str = Field(max_length=64, index=True)


class UsedAssertion(SQLModel, table=True):
    """Each client assertion's ``jti``, kept until the assertion expires so it is never accepted twice."""

    __tablename__ = "used_assertion"

    client_id: str = Field(primary_key=True, max_length=128)
    jti: str = Field(primary_key=True, max_length=255)
    expires_at: int = Field(sa_column=Column(BigInteger, nullable=False, index=True))  # epoch seconds


INDEX_TABLES = (TokenIndex, StringIndex, DateIndex, ReferenceIndex)


def make_engine(url: str) -> Engine:
    """An engine for ``url`` with the connection settings the hub relies on."""
    if url.startswith("sqlite"):
        return _sqlite_engine(url)
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    engine = create_engine(url, pool_size=10, max_overflow=20, pool_use_lifo=True)
    liveness.attach(engine)  # a connection idle in the pool is asked whether it is alive before use
    if engine.dialect.name == "postgresql":
        plannerstats.attach(engine)
    return engine


def _sqlite_engine(url: str) -> Engine:
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_connection.cursor()
        if ":memory:" not in url and url not in {"sqlite://", "sqlite:///"}:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA wal_autocheckpoint=0")  # checkpoints run off the request path
            cursor.execute(f"PRAGMA journal_size_limit={walcheckpoint.WAL_SIZE_LIMIT}")
        # FULL: every commit fsyncs the WAL before the hub answers 2xx, so an
        # acknowledged write survives a power cut or an OS crash, not only a killed
        # process (NORMAL, WAL's default, syncs only at checkpoints and may lose the
        # last commits). It costs one fsync per write transaction; see the README's
        # "Things that bite" and tests/test_hub_durability.py.
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")

    if ":memory:" not in url and url not in {"sqlite://", "sqlite:///"}:
        walcheckpoint.attach(engine)
    return engine


def open_existing(url: str) -> Engine:
    """An engine for a hub database that must already exist (for tools that only read it)."""
    if url.startswith("sqlite:///") and url not in ("sqlite:///", "sqlite:///:memory:"):
        path = Path(url.removeprefix("sqlite:///"))
        if not path.is_file():
            raise InvalidInput(f"there is no hub database at {path}; give --db or EMR_DATABASE_URL")
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            conn.execute(select(ResourceRow.__table__.c.pk).limit(1))
    except SQLAlchemyError as error:
        engine.dispose()
        raise InvalidInput(f"{url} is not a hub database it can read ({type(error).__name__})") from error
    return engine


def create_schema(engine: Engine) -> None:
    SQLModel.metadata.create_all(engine)
    if engine.dialect.name == "postgresql":
        _content_as_bytes(engine)


def _content_as_bytes(engine: Engine) -> None:
    """A PostgreSQL hub from before packed content keeps its JSON in ``text`` columns; turn them
    into ``bytea`` holding the same UTF-8, which ``emr.hub.packed`` reads as plain JSON. New
    writes are packed. (SQLite stores either kind in the same column and needs nothing.)"""
    with engine.begin() as conn:
        for table in (ResourceRow.__tablename__, VersionRow.__tablename__):
            kind = conn.execute(text(
                "SELECT data_type FROM information_schema.columns WHERE table_schema = current_schema() "
                "AND table_name = :table AND column_name = 'content'"), {"table": table}).scalar()
            if kind == "text":
                conn.exec_driver_sql(f"ALTER TABLE {table} ALTER COLUMN content TYPE bytea "
                                     "USING convert_to(content, 'UTF8')")


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """A transaction that will write: IMMEDIATE on SQLite, ordinary elsewhere.

    Work registered with ``before_commit`` runs inside the transaction, just before it
    commits (the audit trail of a request's writes); it is dropped when the block fails.
    """
    with walcheckpoint.writing(engine), engine.connect() as conn:
        conn = conn.execution_options(sqlite_begin="IMMEDIATE")
        try:
            with conn.begin():
                yield conn
                for work in conn.info.pop(BEFORE_COMMIT, []):
                    work(conn)
        finally:
            conn.info.pop(BEFORE_COMMIT, None)
            conn.info.pop(TRANSACTION_STATE, None)
    plannerstats.committed(engine)


BEFORE_COMMIT = "emr_before_commit"
TRANSACTION_STATE = "emr_transaction_state"


def before_commit(conn: Connection, work: Callable[[Connection], None]) -> None:
    """Run ``work(conn)`` at the end of the ``write_transaction`` that ``conn`` belongs to."""
    conn.info.setdefault(BEFORE_COMMIT, []).append(work)


def transaction_state(conn: Connection) -> dict:
    """A dict that lives as long as the current ``write_transaction``, for work gathered along it."""
    return conn.info.setdefault(TRANSACTION_STATE, {})


def set_for_commit(conn: Connection, statement: str) -> None:
    """Run ``statement``, a ``SET LOCAL`` that only matters when this ``write_transaction``
    commits, in the transaction: with its next pipeline of rows (``emr.hub.rowcopy``), which
    saves it a round trip of its own, or else just before the commit."""
    settings = transaction_state(conn).setdefault("settings", [])
    if not settings:  # the first since the transaction began or a pipeline took them
        before_commit(conn, _run_settings_left)
    settings.append(statement)


def _run_settings_left(conn: Connection) -> None:
    for statement in settings_for_commit(conn):
        conn.exec_driver_sql(statement)


def settings_for_commit(conn: Connection) -> list[str]:
    """The statements ``set_for_commit`` left for this transaction, taken: the caller runs them."""
    return conn.info.get(TRANSACTION_STATE, {}).pop("settings", [])


@contextmanager
def read_transaction(engine: Engine) -> Iterator[Connection]:
    """A transaction that only reads. On PostgreSQL its statements go without ``BEGIN`` and
    ``COMMIT``: at READ COMMITTED each statement reads its own snapshot either way, so the two
    round trips bought nothing (the pool gives the connection back to the others as it was)."""
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        with conn.begin():  # still a transaction to SQLAlchemy: what ``memo`` remembers lasts for it
            yield conn
