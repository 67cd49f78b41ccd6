"""CDS Hooks 2.0 services for order entry: ``order-select`` and ``order-sign``.

A hook request names the patient (the hub's Patient id) and carries the draft
ServiceRequests, coded with LOINC. The hub answers with one card per draft order
for which a reusable result exists — summary in Vietnamese, detail in English, the
source facility and the age of the result, a suggestion that deletes the draft
order, a link to the result, and the reasons a doctor may give for ordering anyway.
No card when nothing is reusable.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from emr.errors import InvalidInput
from emr.fhir import LOINC_SYSTEM
from emr.hub.ordering import Catalogue, CheckRequest
from emr.identity import FACILITY_CODE_SYSTEM, NATIONAL_ID_SYSTEM
from emr.reuse import OVERRIDE_REASONS, Decision

HOOKS = ("order-select", "order-sign")
OVERRIDE_SYSTEM = "urn:emr:code:reuse-override"
SOURCE_LABEL = "Hệ thống điều phối dữ liệu y tế"


def discovery() -> dict:
    return {"services": [{
        "hook": hook,
        "id": f"reuse-check-{hook}",
        "title": "Kiểm tra kết quả cận lâm sàng có thể dùng lại",
        "description": ("Offers recent results from any connected facility that the ordering "
                        "facility may recognise instead of repeating the test."),
        "prefetch": {"patient": "Patient/{{context.patientId}}"},
        "usageRequirements": "Draft ServiceRequests must be coded with LOINC and name the ordering facility as requester.",
    } for hook in HOOKS]}


@dataclass(frozen=True)
class HookOrders:
    patient_id: str
    facility_code: str | None
    orders: list[tuple[str, str]]  # (ServiceRequest reference, LOINC code)


def parse_hook_request(service_id: str, body: object) -> HookOrders:
    if service_id not in {f"reuse-check-{h}" for h in HOOKS}:
        raise InvalidInput(f"no CDS service '{service_id}'", location="id")
    if not isinstance(body, dict) or not isinstance(body.get("context"), dict):
        raise InvalidInput("a hook request needs a 'context' object", location="context")
    context = body["context"]
    if body.get("hook") not in HOOKS or not isinstance(context.get("patientId"), str):
        raise InvalidInput("the request needs hook order-select/order-sign and context.patientId", location="hook")
    draft = context.get("draftOrders") if isinstance(context.get("draftOrders"), dict) else {}
    requests = [e.get("resource") for e in draft.get("entry") or [] if isinstance(e, dict)]
    requests = [r for r in requests if isinstance(r, dict) and r.get("resourceType") == "ServiceRequest"]
    orders = [(f"ServiceRequest/{r.get('id', '')}", code) for r in requests for code in _loincs(r)]
    facility = next((code for r in requests if (code := _facility(r.get("requester")))), None)
    return HookOrders(context["patientId"], facility or _facility({"reference": context.get("userId") or ""}), orders)


def _loincs(request: dict) -> list[str]:
    return [c["code"] for c in (request.get("code") or {}).get("coding") or []
            if isinstance(c, dict) and c.get("system") == LOINC_SYSTEM and c.get("code")]


def _facility(reference: object) -> str | None:
    if not isinstance(reference, dict):
        return None
    identifier = reference.get("identifier") or {}
    if identifier.get("system") == FACILITY_CODE_SYSTEM:
        return identifier.get("value")
    ref = reference.get("reference") or ""
    return ref.split("/", 1)[1] if ref.startswith("Organization/") else None


def check_request(orders: HookOrders, patient: dict, catalogue: Catalogue, *, now: datetime) -> CheckRequest | None:
    """The `$check-reuse` question behind a hook call; None when the patient has no national ID."""
    national_id = next((i.get("value") for i in patient.get("identifier") or []
                        if i.get("system") == NATIONAL_ID_SYSTEM), None)
    if not national_id or not orders.orders:
        return None
    facility = orders.facility_code if orders.facility_code in catalogue.facilities else None
    loincs = list(dict.fromkeys(code for _, code in orders.orders))
    return CheckRequest(national_id, facility or "", loincs, now)


def cards(orders: HookOrders, decisions: list[Decision], catalogue: Catalogue, *, base_url: str,
          now: datetime) -> dict:
    by_code = {d.loinc: d for d in decisions if d.decision == "reuse" and d.result}
    out = [_card(ref, by_code[code], catalogue, base_url=base_url, now=now)
           for ref, code in orders.orders if code in by_code]
    return {"cards": out}


def _card(order_ref: str, d: Decision, catalogue: Catalogue, *, base_url: str, now: datetime) -> dict:
    result = d.result
    test = catalogue.tests.get(d.loinc)
    facility = catalogue.facilities.get(result.performer_code or "")
    test_vi, test_en = (test.name_vi, test.name_en) if test else (d.loinc, d.loinc)
    where_vi, where_en = (facility.name_vi, facility.name_en) if facility else (result.performer_code, result.performer_code)
    age_days = max(0, (now - result.collected).days)
    return {
        "uuid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{order_ref}|{result.observation_id}")),
        "summary": f"Đã có kết quả {test_vi} tại {where_vi} ({age_days} ngày trước): có thể dùng lại"[:140],
        "detail": (f"A {test_en} result from {where_en}, collected {result.collected:%Y-%m-%d %H:%M} UTC "
                   f"({age_days} days ago), is valid until {d.expires:%Y-%m-%d %H:%M} UTC and comes from a lab "
                   f"this facility recognises. Reusing it avoids a repeat test costing {d.price_vnd:,} VND."),
        "indicator": "info",
        "source": {"label": SOURCE_LABEL},
        "suggestions": [{
            "label": "Dùng lại kết quả, huỷ chỉ định (reuse the result, cancel the order)",
            "uuid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"suggest|{order_ref}|{result.observation_id}")),
            "isRecommended": True,
            "actions": [{"type": "delete", "description": f"Cancel {order_ref}", "resourceId": [order_ref]}],
        }],
        "selectionBehavior": "at-most-one",
        "overrideReasons": [{"code": code, "system": OVERRIDE_SYSTEM, "display": vi}
                            for code, (vi, _en) in OVERRIDE_REASONS.items()],
        "links": [{"label": f"Xem kết quả (view result) {test_en}", "type": "absolute",
                   "url": f"{base_url}/Observation/{result.observation_id}"}],
    }
