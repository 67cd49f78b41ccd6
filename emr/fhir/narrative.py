"""Narrative safety: FHIR's rules txt-1 and txt-2 for ``text.div``, as far as they keep scripts out.

A resource's narrative is XHTML that EMRs and viewers render as is. FHIR allows only
basic formatting there (no scripts, forms, frames or styles, no event handlers, no
``javascript:`` links), so a narrative carrying any of them is refused rather than
stored and later shown to a clinician.
"""

from __future__ import annotations

import re

from emr.errors import Problem

_FORBIDDEN_ELEMENT = re.compile(
    r"<\s*(script|iframe|frame|frameset|object|embed|applet|form|input|button|textarea|select|style|link|meta|base)\b",
    re.IGNORECASE)
_EVENT_ATTRIBUTE = re.compile(r"\son[a-z]+\s*=", re.IGNORECASE)
_SCRIPT_URL = re.compile(r"(javascript|vbscript)\s*:|data\s*:\s*text/html", re.IGNORECASE)


def narrative_problems(resource: dict, where: str | None = None) -> list[Problem]:
    """A problem for each narrative (the resource's and its contained resources') that could run code."""
    where = where or str(resource.get("resourceType", "Resource"))
    problems = []
    text = resource.get("text")
    div = text.get("div") if isinstance(text, dict) else None
    if isinstance(div, str) and (_FORBIDDEN_ELEMENT.search(div) or _EVENT_ATTRIBUTE.search(div)
                                 or _SCRIPT_URL.search(div)):
        problems.append(Problem("the narrative may hold only basic XHTML formatting: no scripts, forms, frames, "
                                "styles, event handlers or script links (FHIR txt-1, txt-2)",
                                f"{where}.text.div", "value"))
    contained_list = resource.get("contained")
    if not isinstance(contained_list, list):
        return problems  # a malformed 'contained' is the structure check's to report
    for i, contained in enumerate(contained_list):
        if isinstance(contained, dict):
            problems += narrative_problems(contained, f"{where}.contained[{i}]")
    return problems
