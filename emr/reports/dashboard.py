"""The hub's live dashboard as HTML, from the figures of ``emr.hub.dashboard.metrics``.

``render_page`` is the whole page; ``render_live`` the part the page's script swaps in
when the figures change. Both take the metrics document (plain JSON data), so this
module knows nothing of the hub's database. Charts are inline SVG from ``charts``;
numbers and dates are written the reader's way (``labels``). Every number that
equals a hub API answer carries ``data-metric`` with its path in the metrics document.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, timedelta
from functools import lru_cache
from threading import Lock
from typing import Any

from jinja2 import Environment, StrictUndefined
from markupsafe import Markup

from emr import adoption
from emr.fhir.dates import VIETNAM_TZ
from emr.reports import charts
from emr.reports.dashboard_page import KNOWS, LIVE, PAGE, WORDS
from emr.reports.province_tiles import ALL_PUBLISHING, NO_FACILITY, NONE_PUBLISHING, SOME_PUBLISHING, \
    province_tiles
from emr.reports.labels import GROUPS, KINDS, TEXT, fmt_date, fmt_int, fmt_share, pick, reason_label

TOP_TESTS = 10
# matplotlib's style context is process-wide: requests served in parallel draw one at a time.
_DRAWING = Lock()


class _Words:
    """``w.key`` (dashboard words) and ``t.key`` (report words) in the page's language."""

    def __init__(self, table: dict[str, tuple[str, str]], lang: str):
        self._table, self._lang = table, lang

    def __getattr__(self, key: str) -> str:
        if key.startswith("_") or key not in self._table:
            raise AttributeError(key)
        return pick(self._table[key], self._lang)


def render_page(metrics: dict[str, Any], *, lang: str, refresh: int, deadlines: Sequence[adoption.Deadline],
                updated: datetime) -> str:
    words = _Words(WORDS, lang)
    return _environment().from_string(PAGE).render(
        lang=lang, w=words, intro=words.intro.format(n=refresh), refresh=refresh,
        other_lang="en" if lang == "vi" else "vi", refresh_query=f"&refresh={refresh}",
        offline=words.offline, css=Markup(charts.CHART_CSS),
        live=Markup(render_live(metrics, lang=lang, deadlines=deadlines, updated=updated)))


def render_live(metrics: dict[str, Any], *, lang: str, deadlines: Sequence[adoption.Deadline],
                updated: datetime) -> str:
    words = _Words(WORDS, lang)
    as_of = metrics["as_of"]
    return _environment().from_string(LIVE).render(
        w=words, t=_Words(TEXT, lang), version=metrics["version"],
        as_of=fmt_date(date.fromisoformat(as_of), lang) if as_of else words.no_records,
        updated=updated.astimezone(VIETNAM_TZ).strftime("%H:%M:%S"),
        cards=_cards(metrics, lang), adoption=_adoption(metrics, deadlines, lang),
        facilities=[_facility(row, lang) for row in metrics["facilities"]],
        provinces=[_province(row, lang) for row in metrics["provinces"]],
        decisions=_decisions(metrics, lang), tests=_tests(metrics, lang),
        legend=_legend(lang),
        knows=[Markup(pick(line, lang)) for line in KNOWS])


def _legend(lang: str) -> list[dict[str, str]]:
    """The colours of the province schematic and what they mean."""
    keyed = (("legend_none", NO_FACILITY), ("legend_zero", NONE_PUBLISHING), ("legend_some", SOME_PUBLISHING),
             ("legend_all", ALL_PUBLISHING))
    return [{"colour": fill, "label": pick(WORDS[key], lang)} for key, (fill, _ink) in keyed]


def _environment() -> Environment:
    return Environment(autoescape=True, undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def _cards(metrics: dict[str, Any], lang: str) -> list[dict[str, Any]]:
    w, t = _Words(WORDS, lang), _Words(TEXT, lang)
    decisions, avoided, records, share = metrics["decisions"], metrics["avoided"], metrics["records"], \
        metrics["adoption"]
    return [
        _card(t.avoided, "avoided.tests", fmt_int(avoided["tests"], lang), w.reused_of_offered.format(
            r=fmt_int(decisions["reused"], lang), o=fmt_int(decisions["offered"], lang)), main=True),
        _card(t.vnd_saved, "avoided.vnd", fmt_int(avoided["vnd"], lang), t.vnd_note, main=True),
        _card(w.repeated, "decisions.repeated", fmt_int(decisions["repeated"], lang), w.repeated_note),
        _card(t.radiation_exposures_avoided, "avoided.radiation_exposures",
              fmt_int(avoided["radiation_exposures"], lang), ""),
        _card(w.publishing, "adoption.publishing", f"{share['publishing']}/{share['registry']}",
              w.publishing_note.format(share=fmt_share(share["share"], lang))),
        _card(w.results, "records.Observation", fmt_int(records["Observation"], lang),
              w.results_note.format(n=fmt_int(records["DiagnosticReport"], lang))),
        _card(w.performed, "performed", fmt_int(metrics["performed"], lang), w.performed_note),
        _card(w.people, "records.Person", fmt_int(records["Person"], lang),
              w.people_note.format(n=fmt_int(records["Patient"], lang))),
    ]


def _card(label: str, metric: str, value: str, note: str, *, main: bool = False) -> dict[str, Any]:
    return {"label": label, "metric": metric, "value": value, "note": note, "main": main}


def _facility(row: dict[str, Any], lang: str) -> dict[str, Any]:
    w = _Words(WORDS, lang)
    return {"code": row["code"], "name": row[f"name_{lang}"], "kind": pick(KINDS[row["kind"]], lang),
            "province": row["province"], "publishing": row["publishing"],
            "go_live": fmt_date(date.fromisoformat(row["go_live"]), lang) if row["go_live"] else w.never,
            "first_visit": fmt_date(date.fromisoformat(row["first_visit"]), lang) if row["first_visit"]
            else w.not_publishing,
            "numbers": [(key, fmt_int(row[key], lang)) for key in ("patients", "results", "performed", "reused", "vnd")]}


def _province(row: dict[str, Any], lang: str) -> dict[str, Any]:
    return {"province": row["province"], "facilities": f"{row['publishing']}/{row['registry']}",
            "numbers": [fmt_int(row[key], lang) for key in ("results", "performed", "reused", "vnd")]}


def _decisions(metrics: dict[str, Any], lang: str) -> dict[str, Any]:
    decisions = metrics["decisions"]
    if not decisions["offered"]:
        return {"rows": [], "chart": None}
    rows = [{"label": pick(WORDS["decision_reused"], lang), "metric": "decisions.reused",
             "count": decisions["reused"]}]
    rows += [{"label": reason_label(f"override:{r['code']}", lang), "metric": f"decisions.override.{r['code']}",
              "count": r["count"]} for r in decisions["override_reasons"]]
    chart = _bar_chart("decisions", tuple(r["label"] for r in rows), tuple(r["count"] for r in rows),
                       pick(WORDS["decisions_title"], lang))
    return {"rows": [{**r, "count": fmt_int(r["count"], lang)} for r in rows], "chart": Markup(chart)}


def _tests(metrics: dict[str, Any], lang: str) -> dict[str, Any]:
    top = [row for row in metrics["tests"] if row["reused"]][:TOP_TESTS]
    if not top:
        return {"rows": [], "chart": None}
    chart = _bar_chart("tests", tuple(_short(row[f"name_{lang}"]) for row in top),
                       tuple(row["reused"] for row in top), pick(WORDS["tests_title"], lang))
    rows = [{"loinc": row["loinc"], "name": row[f"name_{lang}"],
             "numbers": [("price_vnd", fmt_int(row["price_vnd"] or 0, lang))]
             + [(key, fmt_int(row[key], lang)) for key in ("performed", "reused", "vnd")]} for row in top]
    return {"rows": rows, "chart": Markup(chart)}


@lru_cache(maxsize=16)
def _bar_chart(name: str, labels: tuple[str, ...], values: tuple[int, ...], title: str) -> str:
    """A half-width bar chart; drawing takes a tenth of a second, so the same bars are drawn once."""
    with _DRAWING:
        return charts.bar_chart(name=name, labels=list(labels), values=list(values), title=title, width=5.6)


@lru_cache(maxsize=8)
def _province_map(counts: tuple[tuple[str, int, int], ...], title: str) -> str:
    """The province tiles, coloured by how many registry facilities publish (drawn once per distinct input)."""
    rows = [{"province": name, "registry": registry, "publishing": publishing} for name, registry, publishing in counts]
    with _DRAWING:
        return charts.tile_chart(name="provinces", tiles=province_tiles(rows), title=title)


def _short(name: str, limit: int = 34) -> str:
    return name if len(name) <= limit else name[: limit - 1].rstrip() + "…"


def _adoption(metrics: dict[str, Any], deadlines: Sequence[adoption.Deadline], lang: str) -> dict[str, Any]:
    rows = metrics["facilities"]
    planned = {r["code"]: date.fromisoformat(r["go_live"]) if r["go_live"] else None for r in rows}
    seen = {r["code"]: date.fromisoformat(r["first_visit"]) if r["first_visit"] else None for r in rows}
    kinds = {r["code"]: r["kind"] for r in rows}
    until = adoption.last_day(metrics["as_of"][:7]) if metrics["as_of"] else None  # redrawn once a month
    chart = _adoption_chart(tuple(sorted(planned.items())), tuple(sorted(seen.items())), until, tuple(deadlines), lang)
    counts = tuple((p["province"], p["registry"], p["publishing"]) for p in metrics["provinces"])
    return {"chart": Markup(chart), "map": Markup(_province_map(counts, pick(WORDS["map_title"], lang))),
            "deadlines": [_deadline_line(seen, kinds, d, lang) for d in deadlines]}


def _deadline_line(seen: dict[str, date | None], kinds: dict[str, str], deadline: adoption.Deadline,
                   lang: str) -> str:
    share = adoption.deadline_share(seen, kinds=kinds, deadline=deadline)
    return pick(WORDS["deadline_line"], lang).format(
        group=pick(GROUPS[deadline.group], lang), n=share.numerator, of=share.denominator,
        due=fmt_date(deadline.due, lang))


@lru_cache(maxsize=8)
def _adoption_chart(planned_dates: tuple[tuple[str, date | None], ...], seen_dates: tuple[tuple[str, date | None], ...],
                    until: date | None, deadlines: tuple[adoption.Deadline, ...], lang: str) -> str:
    """Registry go-live dates against the hub's first visits, by month up to ``until`` (drawn
    once per distinct input)."""
    planned, seen = dict(planned_dates), dict(seen_dates)
    first_seen = min((d for d in seen.values() if d), default=None)
    start = date((first_seen or min(d.due for d in deadlines)).year, 1, 1)
    end = max([d.due for d in deadlines] + ([until] if until else []))
    series = [_monthly(pick(WORDS["line_registry"], lang), planned, start, end, charts.PALETTE[3], dashed=True)]
    if until:
        series.append(_monthly(pick(WORDS["line_hub"], lang), seen, start, until, charts.PALETTE[0], width=2.6))
    markers = [charts.Marker(d.due, f"{pick(TEXT['deadline_' + d.group], lang)} {fmt_date(d.due, lang)}",
                             charts.PALETTE[4]) for d in deadlines]
    with _DRAWING:
        return charts.line_chart(name="adoption", series=series, markers=markers,
                                 span=(start - timedelta(days=10), end + timedelta(days=20)),
                                 title=pick(WORDS["adoption_title"], lang), height=3.7,
                                 y_label=pick(WORDS["adoption_axis"], lang))


def _monthly(label: str, go_live: dict[str, date | None], start: date, end: date, color: str, *,
             dashed: bool = False, width: float = 1.8) -> charts.Series:
    months = adoption.adoption_by_month(go_live, start=start, end=end)
    return charts.Series(label, tuple(m.end for m in months), tuple(m.live.value or 0.0 for m in months), color,
                         dashed=dashed, width=width)
