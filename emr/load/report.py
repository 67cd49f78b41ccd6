"""A load test's timings as throughput, latency percentiles and errors, for a person (Rich, vi/en) or a file."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict, dataclass

from rich.console import Console
from rich.table import Table

from emr.load.driver import LoadResult, Sample
from emr.load.plan import KINDS

LABELS = {
    "title": ("Kiểm tra tải hệ thống điều phối", "Hub load test"),
    "kind": ("Yêu cầu", "Request"),
    "requests": ("Số lượng", "Sent"),
    "ok": ("Đạt", "OK"),
    "errors": ("Lỗi", "Errors"),
    "throughput": ("Mỗi giây", "Per s"),
    "publish": ("Gửi lượt khám", "Publish visit"),
    "search": ("Tìm theo CCCD", "Search by ID"),
    "check": ("$check-reuse", "$check-reuse"),
    "all": ("Tổng", "All"),
    "error_title": ("Lỗi theo loại", "Errors by kind"),
    "error": ("Lỗi", "Error"),
    "count": ("Số lượng", "Count"),
    "plan": ("{rate:g} yêu cầu/giây trong {duration:g} giây, {workers} luồng, hệ thống {hub}{auth}",
             "{rate:g} requests/s for {duration:g} s, {workers} workers, hub {hub}{auth}"),
    "auth": (" (có xác thực SMART)", " (SMART authentication)"),
    "verdict_ok": ("Đạt: không lỗi và p99 dưới {limit:g} ms", "Sustained: no errors and p99 under {limit:g} ms"),
    "verdict_no": ("Không đạt: cần không lỗi và p99 dưới {limit:g} ms", "Not sustained: needs no errors and p99 "
                                                                          "under {limit:g} ms"),
}
P99_TARGET_MS = 100.0  # what the README's "Load" figures require


@dataclass(frozen=True)
class Row:
    kind: str
    requests: int
    ok: int
    errors: int
    throughput: float  # successful requests per second of the run
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float


def rows(result: LoadResult) -> list[Row]:
    """One row per kind that was sent, then the total."""
    present = [k for k in KINDS if any(s.kind == k for s in result.samples)]
    table = [_row(k, [s for s in result.samples if s.kind == k], result.elapsed) for k in present]
    return table + [_row("all", result.samples, result.elapsed)]


def errors(result: LoadResult) -> Counter:
    return Counter((s.kind, s.error) for s in result.samples if s.error is not None)


def sustained(result: LoadResult, *, p99_ms: float = P99_TARGET_MS) -> bool:
    total = rows(result)[-1]
    return total.errors == 0 and total.requests > 0 and total.p99_ms < p99_ms


def as_json(result: LoadResult) -> dict:
    plan = result.plan
    return {"plan": {"hub": plan.hub, "rate": plan.rate, "duration": plan.duration, "mix": plan.mix,
                     "workers": plan.workers, "seed": plan.seed},
            "elapsed_s": round(result.elapsed, 3), "authenticated": result.authenticated,
            "rows": [asdict(r) for r in rows(result)],
            "errors": [{"kind": k, "error": e, "count": n} for (k, e), n in sorted(errors(result).items())],
            "sustained": sustained(result)}


def print_report(result: LoadResult, *, console: Console, lang: str) -> None:
    table = Table(title=_label("title", lang))
    table.add_column(_label("kind", lang), no_wrap=True)
    for key in ("requests", "ok", "errors", "throughput"):
        table.add_column(_label(key, lang), justify="right")
    for key in ("p50", "p95", "p99", "max"):
        table.add_column(f"{key} ms", justify="right")
    for row in rows(result):
        table.add_row(_label(row.kind, lang), str(row.requests), str(row.ok), str(row.errors),
                      f"{row.throughput:.1f}", *(f"{v:.1f}" for v in (row.p50_ms, row.p95_ms, row.p99_ms, row.max_ms)))
    console.print(table)
    plan = result.plan
    console.print(_label("plan", lang).format(rate=plan.rate, duration=plan.duration, workers=plan.workers,
                                              hub=plan.hub, auth=_label("auth", lang) if result.authenticated else ""))
    if errors(result):
        wrong = Table(title=_label("error_title", lang))
        for key in ("kind", "error", "count"):
            wrong.add_column(_label(key, lang))
        for (kind, error), count in sorted(errors(result).items()):
            wrong.add_row(_label(kind, lang), error, str(count))
        console.print(wrong)
    verdict = "verdict_ok" if sustained(result) else "verdict_no"
    console.print(_label(verdict, lang).format(limit=P99_TARGET_MS))


def percentile(values: list[float], q: float) -> float:
    """The nearest-rank ``q`` percentile (0 < q ≤ 100) of ``values``; 0 for none."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def _row(kind: str, samples: list[Sample], elapsed: float) -> Row:
    good = [s.latency * 1000 for s in samples if s.error is None]
    return Row(kind, len(samples), len(good), len(samples) - len(good), len(good) / elapsed if elapsed > 0 else 0.0,
               percentile(good, 50), percentile(good, 95), percentile(good, 99), max(good, default=0.0))


def _label(key: str, lang: str) -> str:
    vi, en = LABELS.get(key, (key, key))
    return vi if lang == "vi" else en
