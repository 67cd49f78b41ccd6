"""``emr audit``: who accessed one person's data, read from the hub's audit trail.

The answer to a data subject's question under Decree 13/2023/NĐ-CP: every AuditEvent
about any of the person's registrations (found by national ID, directly or through
the Patients that carry it), oldest first, as a table in Vietnamese or English.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import orjson
from rich.console import Console
from rich.table import Table
from sqlalchemy import or_, select
from sqlalchemy.engine import Engine

from emr.hub.audit import OPERATION_SYSTEM, RESTFUL
from emr.hub.db import ReferenceIndex, ResourceRow, TokenIndex, read_transaction
from emr.identity import NATIONAL_ID_SYSTEM

R = ResourceRow.__table__
TK = TokenIndex.__table__
RF = ReferenceIndex.__table__
VIETNAM = timezone(timedelta(hours=7))

ACTIONS = {
    "read": ("Xem", "Read"), "vread": ("Xem phiên bản", "Read a version"),
    "history-instance": ("Xem lịch sử", "Read history"), "search-type": ("Tìm kiếm", "Search"),
    "create": ("Tạo", "Create"), "update": ("Cập nhật", "Update"), "delete": ("Xoá", "Delete"),
    "transaction": ("Giao dịch", "Transaction"), "operation": ("Thao tác", "Operation"),
}
OPERATIONS = {
    "check-reuse": ("kiểm tra dùng lại kết quả", "reuse check"), "ihe-pix": ("tra cứu mã định danh", "identifier lookup"),
    "cds-reuse-check-order-select": ("gợi ý khi chỉ định", "order-entry hint"),
    "cds-reuse-check-order-sign": ("gợi ý khi ký chỉ định", "order-signing hint"),
}
PURPOSES = {"TREAT": ("Điều trị", "Treatment"), "ETREAT": ("CẤP CỨU (phá kính)", "EMERGENCY (break-glass)"),
            "BTG": ("CẤP CỨU (phá kính)", "EMERGENCY (break-glass)")}
OUTCOMES = {"0": ("Cho phép", "Allowed"), "4": ("Bị từ chối", "Refused"), "8": ("Lỗi", "Failed")}
HEADINGS = {
    "title": ("Ai đã truy cập dữ liệu của người có số định danh {nid}", "Who accessed the data of national ID {nid}"),
    "columns": (("Thời gian (UTC+7)", "Cơ sở", "Hệ thống", "Thao tác", "Dữ liệu", "Mục đích", "Kết quả"),
                ("Time (UTC+7)", "Facility", "Client", "Action", "Data", "Purpose", "Outcome")),
    "none": ("Không có lượt truy cập nào được ghi lại.", "No access has been recorded."),
    "count": ("{n} lượt truy cập", "{n} accesses"),
}


@dataclass(frozen=True)
class AuditEntry:
    recorded: datetime
    facility: str | None
    client: str
    interaction: str
    operation: str | None
    resources: tuple[str, ...]
    purpose: str
    outcome: str
    description: str | None


def entries_for(engine: Engine, national_id: str) -> list[AuditEntry]:
    """Every audit entry about the person with ``national_id``, oldest first."""
    patients = select(R.c.id).where(R.c.resource_type == "Patient", R.c.pk.in_(
        select(TK.c.resource_pk).where(TK.c.resource_type == "Patient", TK.c.param == "identifier",
                                       TK.c.system == NATIONAL_ID_SYSTEM, TK.c.code == national_id)))
    by_identifier = select(TK.c.resource_pk).where(
        TK.c.resource_type == "AuditEvent", TK.c.param == "patient:identifier",
        TK.c.system == NATIONAL_ID_SYSTEM, TK.c.code == national_id)
    by_patient = select(RF.c.resource_pk).where(
        RF.c.resource_type == "AuditEvent", RF.c.param == "patient", RF.c.target_type == "Patient",
        RF.c.target_id.in_(patients))
    query = (select(R.c.content).where(R.c.resource_type == "AuditEvent",
                                       or_(R.c.pk.in_(by_identifier), R.c.pk.in_(by_patient)))
             .order_by(R.c.pk))
    with read_transaction(engine) as conn:
        events = [orjson.loads(content) for content in conn.execute(query).scalars()]
    return sorted((_entry(e) for e in events), key=lambda e: e.recorded)


def _entry(event: dict) -> AuditEntry:
    subtype = {c.get("system"): c.get("code") for c in event.get("subtype") or []}
    agents = event.get("agent") or []
    facility = next((a["who"]["reference"].split("/")[-1] for a in agents
                     if (a.get("who") or {}).get("reference", "").startswith("Organization/")), None)
    client = next(((a.get("who") or {}).get("display") for a in agents if a.get("requestor")), "") or ""
    purpose = next((c.get("code") for p in event.get("purposeOfEvent") or [] for c in p.get("coding") or []), "TREAT")
    resources = tuple(e["what"]["reference"] for e in event.get("entity") or []
                      if (e.get("what") or {}).get("reference") and (e.get("role") or {}).get("code") == "4")
    queries = [base64.b64decode(e["query"]).decode("utf-8", "replace") for e in event.get("entity") or []
               if e.get("query")]
    return AuditEntry(datetime.fromisoformat(event["recorded"].replace("Z", "+00:00")), facility, client,
                      subtype.get(RESTFUL, ""), subtype.get(OPERATION_SYSTEM), resources or tuple(queries),
                      purpose, event.get("outcome", ""), event.get("outcomeDesc"))


def print_audit(entries: list[AuditEntry], *, national_id: str, facility_names: dict[str, tuple[str, str]],
                console: Console, lang: str) -> None:
    """The entries as one table; break-glass rows and refusals stand out."""
    i = 0 if lang == "vi" else 1
    if not entries:
        console.print(HEADINGS["none"][i])
        return
    table = Table(title=HEADINGS["title"][i].format(nid=national_id), show_lines=False)
    for column in HEADINGS["columns"][i]:
        table.add_column(column, overflow="fold")
    for entry in entries:
        table.add_row(*_row(entry, facility_names, i), style=_style(entry))
    console.print(table)
    console.print(HEADINGS["count"][i].format(n=len(entries)))


def _row(entry: AuditEntry, facility_names: dict[str, tuple[str, str]], i: int) -> tuple[str, ...]:
    action = ACTIONS.get(entry.interaction, (entry.interaction, entry.interaction))[i]
    if entry.operation:
        action = f"{action}: {OPERATIONS.get(entry.operation, (entry.operation, entry.operation))[i]}"
    facility = facility_names.get(entry.facility or "", (entry.facility or "—",) * 2)[i]
    outcome = OUTCOMES.get(entry.outcome, (entry.outcome, entry.outcome))[i]
    if entry.description and entry.outcome != "0":
        outcome = f"{outcome}: {entry.description}"
    resources = _data(entry.resources)
    return (entry.recorded.astimezone(VIETNAM).strftime("%Y-%m-%d %H:%M:%S"), facility, entry.client, action,
            resources, PURPOSES.get(entry.purpose, (entry.purpose, entry.purpose))[i], outcome)


def _data(resources: tuple[str, ...]) -> str:
    """``Observation ×3, Patient`` for resource references; a search's query as it was asked."""
    counts: dict[str, int] = {}
    for ref in resources:
        if "/" not in ref or "?" in ref:
            return ref[:80]
        kind = ref.split("/")[0]
        counts[kind] = counts.get(kind, 0) + 1
    return ", ".join(f"{kind} ×{n}" if n > 1 else kind for kind, n in counts.items())


def _style(entry: AuditEntry) -> str | None:
    if entry.purpose in ("ETREAT", "BTG"):
        return "bold red"
    return "yellow" if entry.outcome != "0" else None
