"""``report.html``: one self-contained page for a reviewer, in Vietnamese or English.

The page is rendered from the report document with Jinja2 (autoescape on, so every
name from a data file is escaped); the charts are inline SVG from ``charts``, and the
stylesheet is inline. Nothing on the page points outside it: no script, font, image
or link by URL. Headline figures come first, then why the rest were repeated, then
EMR adoption against the deadlines, then the breakdowns and how each figure is computed.
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path
from typing import Any

from jinja2 import Environment, StrictUndefined
from markupsafe import Markup

from emr import adoption
from emr.reports import charts
from emr.reports.labels import GROUPS, KINDS, TERMS, TEXT, fmt_date, fmt_int, fmt_month, fmt_number, fmt_share, pick

_GROUP_COLORS = {"all": charts.PALETTE[0], "hospitals": charts.PALETTE[1], "other": charts.PALETTE[2]}
_BREAKDOWNS = (("province_pre_2025", "by_province_pre"), ("province_2025", "by_province_post"),
               ("facility", "by_facility"), ("test", "by_test"), ("category", "by_category"), ("month", "by_month"))


def write_html(path: Path, document: dict[str, Any], *, lang: str) -> Path:
    path.write_text(render(document, lang=lang), encoding="utf-8", newline="\n")
    return path


def render(document: dict[str, Any], *, lang: str) -> str:
    environment = Environment(autoescape=True, undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                              keep_trailing_newline=True)
    template = environment.from_string(PAGE)
    return template.render(lang=lang, t=_Words(lang), css=Markup(charts.CHART_CSS), **_view(document, lang))


class _Words:
    """``t.key`` in the template is the label in the page's language."""

    def __init__(self, lang: str):
        self._lang = lang

    def __getattr__(self, key: str) -> str:
        if key not in TEXT:
            raise AttributeError(key)
        return pick(TEXT[key], self._lang)


def _view(document: dict[str, Any], lang: str) -> dict[str, Any]:
    return {"run": _run(document, lang), "cards": _cards(document, lang), "why": _why(document, lang),
            "adoption": _adoption(document, lang), "tables": _tables(document, lang),
            "definitions": [{"term": pick(TERMS.get(key, (key, key)), lang), "text": pick((d["vi"], d["en"]), lang)}
                            for key, d in document["definitions"].items()]}


def _run(document: dict[str, Any], lang: str) -> dict[str, str]:
    run = document["run"]
    start, end = (date.fromisoformat(run["period"][k]) for k in ("start", "end"))
    return {"scenario": run["scenario"], "seed": str(run["seed"]), "patients": fmt_int(run["patients"], lang),
            "period": f"{fmt_date(start, lang)} – {fmt_date(end, lang)}"}


def _cards(document: dict[str, Any], lang: str) -> list[dict[str, Any]]:
    totals, section = document["totals"], document["adoption"]
    live, referrals = section["facilities_live_at_end"], section["referrals_with_shared_results"]
    word = _Words(lang)
    return [
        _card(word.avoided, fmt_int(totals["avoided"], lang),
              word.of_ordered.format(n=fmt_int(totals["ordered"], lang)), main=True),
        _card(word.vnd_saved, fmt_int(totals["vnd_saved"], lang), word.vnd_note, main=True),
        _card(word.blood_draws_avoided, fmt_int(totals["blood_draws_avoided"], lang), "", main=True),
        _card(word.radiation_exposures_avoided, fmt_int(totals["radiation_exposures_avoided"], lang), "", main=True),
        _card(word.turnaround_hours_saved, fmt_number(totals["turnaround_hours_saved"], lang), ""),
        _card(word.repeats_performed, fmt_int(totals["repeats_performed"], lang), word.repeats_note),
        _card(word.emr_live_end, f"{live['numerator']}/{live['denominator']}", fmt_share(live["share"], lang)),
        _card(word.referrals_shared, fmt_share(referrals["share"], lang), _fraction(referrals, lang)),
    ]


def _card(label: str, value: str, note: str, *, main: bool = False) -> dict[str, Any]:
    return {"label": label, "value": value, "note": note, "main": main}


def _fraction(value: dict[str, Any], lang: str) -> str:
    return f"{fmt_int(value['numerator'], lang)}/{fmt_int(value['denominator'], lang)}"


def _why(document: dict[str, Any], lang: str) -> dict[str, Any]:
    repeats = document["repeats"]
    reasons = repeats["by_reason"]
    rows = [{"label": r[f"label_{lang}"], "code": r["reason"], "count": fmt_int(r["count"], lang),
             "share": fmt_share(r["share"], lang)} for r in reasons]
    chart = charts.bar_chart(name="reasons", labels=[r[f"label_{lang}"] for r in reasons],
                             values=[r["count"] for r in reasons], title=pick(TEXT["why_title"], lang))
    what_ifs = [_what_if(repeats["what_if"][key], text, lang)
                for key, text in (("all_labs_recognised", "what_if_labs"), ("all_facilities_on_emr", "what_if_emr"))]
    return {"rows": rows, "chart": Markup(chart) if rows else None, "what_ifs": what_ifs}


def _what_if(value: dict[str, Any], text: str, lang: str) -> dict[str, str]:
    accept = fmt_number(value["doctor_accepts_reuse"], lang, digits=2)
    return {"line": pick(TEXT[text], lang).format(n=fmt_int(value["more_avoided"], lang)),
            "method": pick(TEXT["what_if_method"], lang).format(r=fmt_int(value["repeats"], lang), p=accept)}


def _adoption(document: dict[str, Any], lang: str) -> dict[str, Any]:
    section = document["adoption"]
    projection = section["projected_full_adoption"]
    return {
        "chart": Markup(_adoption_chart(section, lang)),
        "deadlines": [_deadline(d, lang) for d in section["deadlines"]],
        "projection": fmt_month(projection, lang) if projection else pick(TEXT["no_projection"], lang),
        "electronic": _share_text(section["results_electronic"], lang),
        "referrals": _share_text(section["referrals_with_shared_results"], lang),
        "months": [{"month": fmt_month(m["month"], lang), "planned": m["basis"] == "planned",
                    **{g: fmt_share(m[g]["share"], lang) for g in GROUPS}} for m in section["by_month"]],
        "groups": [pick(GROUPS[g], lang) for g in GROUPS],
        "national": [{"date": fmt_date(date.fromisoformat(p["date"]), lang),
                      "count": f"{fmt_int(p['hospitals_with_emr'], lang)}/{fmt_int(p['of'], lang)}",
                      "share": fmt_share(p["share"], lang), "source": p["source"], "note": p["note"] or ""}
                     for p in section["national_reference"]],
    }


def _deadline(deadline: dict[str, Any], lang: str) -> dict[str, str]:
    line = pick(TEXT["deadline_row"], lang).format(
        group=pick(GROUPS[deadline["group"]], lang), live=deadline["numerator"], of=deadline["denominator"],
        due=fmt_date(date.fromisoformat(deadline["due"]), lang))
    if not deadline["within_run"]:
        line += " " + pick(TEXT["deadline_planned"], lang)
    return {"line": line, "share": fmt_share(deadline["share"], lang)}


def _share_text(value: dict[str, Any], lang: str) -> str:
    return f"{fmt_share(value['share'], lang)} ({_fraction(value, lang)})"


def _adoption_chart(section: dict[str, Any], lang: str) -> str:
    months = section["by_month"]
    first, last = date.fromisoformat(months[0]["on"]), date.fromisoformat(months[-1]["on"])
    span = (first.replace(day=1) - timedelta(days=10), last + timedelta(days=20))
    series = []
    for group in GROUPS:
        run = [m for m in months if m["basis"] == "run" and m[group]["share"] is not None]
        planned = run[-1:] + [m for m in months if m["basis"] == "planned" and m[group]["share"] is not None]
        color, width = _GROUP_COLORS[group], 2.6 if group == "all" else 1.6
        series.append(_series(pick(GROUPS[group], lang), run, group, color=color, width=width))
        label = f"{pick(GROUPS[group], lang)}: {pick(TEXT['planned'], lang)}" if group == "all" else "_planned"
        series.append(_series(label, planned, group, color=color, width=width, dashed=True))
    series.append(_national(section["national_reference"], span, lang))
    return charts.line_chart(name="adoption", series=series, markers=_markers(section, span, lang), span=span,
                             title=pick(TEXT["adoption_title"], lang), y_label=pick(TEXT["adoption_axis"], lang))


def _markers(section: dict[str, Any], span: tuple[date, date], lang: str) -> list[charts.Marker]:
    """The two deadlines, and the projected month of 100% when it falls inside the chart."""
    markers = []
    for deadline in section["deadlines"]:
        due = date.fromisoformat(deadline["due"])
        label = f"{pick(TEXT['deadline_' + deadline['group']], lang)} {fmt_date(due, lang)}"
        markers.append(charts.Marker(due, label, charts.PALETTE[4]))
    projection = section["projected_full_adoption"]
    if projection and span[0] <= (day := adoption.last_day(projection)) <= span[1]:
        label = f"{pick(TEXT['projection'], lang)}: {fmt_month(projection, lang)}"
        markers.append(charts.Marker(day, label, charts.PALETTE[3], style=":"))
    return markers


def _series(label: str, months: list[dict], group: str, *, color: str, width: float,
            dashed: bool = False) -> charts.Series:
    return charts.Series(label, tuple(date.fromisoformat(m["on"]) for m in months),
                         tuple(m[group]["share"] for m in months), color, dashed=dashed, width=width)


def _national(points: list[dict], span: tuple[date, date], lang: str) -> charts.Series:
    """The national line within the chart, entering from the last point before it."""
    dated = [(date.fromisoformat(p["date"]), p["share"]) for p in points]
    before = [d for d in dated if d[0] < span[0]][-1:]
    shown = before + [d for d in dated if span[0] <= d[0] <= span[1]]
    return charts.Series(pick(TEXT["national"], lang), tuple(d for d, _ in shown), tuple(s for _, s in shown),
                         charts.PALETTE[3], markers=True, width=1.4)


def _tables(document: dict[str, Any], lang: str) -> list[dict[str, Any]]:
    tables = []
    for dimension, title in _BREAKDOWNS:
        rows = document["avoided_by"][dimension]
        if dimension == "test":
            rows = sorted(rows, key=lambda r: (-r["avoided"], -r["ordered"], r["key"]))
        tables.append({"title": pick(TEXT[title], lang), "named": dimension != "month",
                       "coded": dimension != "category",
                       "kind": dimension == "facility", "rows": [_row(r, dimension, lang) for r in rows]})
    return tables


def _row(row: dict[str, Any], dimension: str, lang: str) -> dict[str, str]:
    key = fmt_month(row["key"], lang) if dimension == "month" else row["key"]
    return {"key": key, "name": row.get(f"name_{lang}", ""),
            "kind": pick(KINDS[row["kind"]], lang) if "kind" in row and row["kind"] in KINDS else "",
            "numbers": [fmt_int(row[c], lang) for c in ("ordered", "performed", "avoided", "vnd_saved",
                                                         "blood_draws_avoided", "radiation_exposures_avoided")]
            + [fmt_number(row["turnaround_hours_saved"], lang)]}


PAGE = """<!DOCTYPE html>
<html lang="{{ lang }}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ t.title }} · {{ run.scenario }}</title>
<style>
body{font-family:"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;color:#1d2733;margin:0;background:#f4f6f8}
main{max-width:1120px;margin:0 auto;padding:24px 28px;background:#fff}
h1{font-size:1.55rem;margin:0 0 4px}h2{font-size:1.2rem;border-bottom:2px solid #1b5e9e;padding-bottom:4px;margin-top:36px}
h3{font-size:1rem;margin:22px 0 6px}.sub{color:#5a6673;margin:0 0 18px}
.cards{display:grid;grid-template-columns:repeat(4,1fr);gap:12px}
.card{border:1px solid #d5dbe1;border-radius:6px;padding:10px 12px}.card.main{background:#eef4fb;border-color:#9dbbdc}
.card .label{font-size:.85rem;color:#3b4754}.card .value{font-size:1.7rem;font-weight:700;font-variant-numeric:tabular-nums}
.card .note{font-size:.8rem;color:#5a6673}
table{border-collapse:collapse;width:100%;font-size:.86rem;margin:6px 0 10px}
th,td{border-bottom:1px solid #e1e5ea;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f0f2f5;font-weight:600}td.n,th.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td.key{white-space:nowrap}tr.planned td{color:#7a8591;font-style:italic}.muted{color:#5a6673;font-size:.85rem}
ul.facts{padding-left:20px}ul.facts li{margin:3px 0}
svg.chart{width:100%;height:auto;display:block;margin:8px 0}{{ css }}
.cols{display:grid;grid-template-columns:1fr 1fr;gap:18px}
@media print{body{background:#fff}main{padding:0}}
</style>
</head>
<body>
<main>
<h1>{{ t.title }}</h1>
<p class="sub">{{ t.simulated }} <b>{{ run.scenario }}</b> ({{ t.seed }} {{ run.seed }}, {{ run.patients }} {{ t.patients }}).
 {{ t.period }}: {{ run.period }}.</p>

<h2>{{ t.key_figures }}</h2>
<div class="cards">
{% for card in cards %}
<div class="card{{ ' main' if card.main }}"><div class="label">{{ card.label }}</div>
<div class="value">{{ card.value }}</div><div class="note">{{ card.note }}</div></div>
{% endfor %}
</div>

<h2>{{ t.why_title }}</h2>
{% if why.rows %}
{{ why.chart }}
<table><thead><tr><th>{{ t.reason }}</th><th class="n">{{ t.count }}</th><th class="n">{{ t.share }}</th></tr></thead>
<tbody>
{% for row in why.rows %}
<tr><td>{{ row.label }} <span class="muted">({{ row.code }})</span></td><td class="n">{{ row.count }}</td><td class="n">{{ row.share }}</td></tr>
{% endfor %}
</tbody></table>
{% else %}
<p>{{ t.no_repeats }}</p>
{% endif %}
<h3>{{ t.what_if_title }}</h3>
<ul class="facts">
{% for item in why.what_ifs %}
<li><b>{{ item.line }}</b> <span class="muted">{{ item.method }}</span></li>
{% endfor %}
</ul>

<h2>{{ t.adoption_title }}</h2>
{{ adoption.chart }}
<ul class="facts">
{% for item in adoption.deadlines %}
<li>{{ item.line }}: <b>{{ item.share }}</b></li>
{% endfor %}
<li>{{ t.projection }}: <b>{{ adoption.projection }}</b></li>
<li>{{ t.results_electronic }}: <b>{{ adoption.electronic }}</b></li>
<li>{{ t.referrals_shared }}: <b>{{ adoption.referrals }}</b></li>
</ul>
<div class="cols">
<div>
<table><thead><tr><th>{{ t.month }}</th>{% for g in adoption.groups %}<th class="n">{{ g }}</th>{% endfor %}</tr></thead>
<tbody>
{% for m in adoption.months %}
<tr{{ ' class="planned"'|safe if m.planned }}><td>{{ m.month }}</td><td class="n">{{ m.all }}</td><td class="n">{{ m.hospitals }}</td><td class="n">{{ m.other }}</td></tr>
{% endfor %}
</tbody></table>
<p class="muted"><i>{{ t.planned }}</i></p>
</div>
<div>
<h3>{{ t.national_title }}</h3>
<table><thead><tr><th>{{ t.date }}</th><th class="n">{{ t.hospitals_with_emr }}</th><th class="n">{{ t.share }}</th><th>{{ t.source }}</th></tr></thead>
<tbody>
{% for p in adoption.national %}
<tr><td class="key">{{ p.date }}</td><td class="n">{{ p.count }}</td><td class="n">{{ p.share }}</td><td>{{ p.source }}{% if p.note %}<br><span class="muted">{{ p.note }}</span>{% endif %}</td></tr>
{% endfor %}
</tbody></table>
</div>
</div>

<h2>{{ t.breakdowns }}</h2>
{% for table in tables %}
<h3>{{ table.title }}</h3>
<table><thead><tr>{% if table.coded %}<th>{{ t.code if table.named else t.month }}</th>{% endif %}{% if table.named %}<th>{{ t.name }}</th>{% endif %}
{% if table.kind %}<th>{{ t.kind }}</th>{% endif %}
<th class="n">{{ t.ordered }}</th><th class="n">{{ t.performed }}</th><th class="n">{{ t.avoided_short }}</th><th class="n">{{ t.vnd_short }}</th>
<th class="n">{{ t.blood_short }}</th><th class="n">{{ t.radiation_short }}</th><th class="n">{{ t.hours_short }}</th></tr></thead>
<tbody>
{% for row in table.rows %}
<tr>{% if table.coded %}<td class="key">{{ row.key }}</td>{% endif %}{% if table.named %}<td>{{ row.name }}</td>{% endif %}{% if table.kind %}<td>{{ row.kind }}</td>{% endif %}
{% for n in row.numbers %}<td class="n">{{ n }}</td>{% endfor %}</tr>
{% endfor %}
</tbody></table>
{% endfor %}

<h2>{{ t.definitions }}</h2>
<ul class="facts">
{% for d in definitions %}
<li><b>{{ d.term }}.</b> {{ d.text }}</li>
{% endfor %}
</ul>
<p class="muted">{{ t.files }}</p>
</main>
</body>
</html>
"""
