"""The words and the HTML of the hub's live dashboard (rendered by ``emr.reports.dashboard``).

``WORDS`` maps a key to ``(vi, en)`` like ``labels.TEXT``, which supplies the words the
dashboard shares with the report. ``PAGE`` is the whole page; ``LIVE`` is the part that
changes, which the page's script fetches again from ``/dashboard/live`` whenever
``/dashboard/metrics.json`` reports a new ``version``. The page loads nothing by URL
except those two same-origin addresses.
"""

from __future__ import annotations

WORDS = {
    "title": ("Bảng theo dõi trực tiếp hệ thống điều phối dữ liệu y tế", "Medical data coordination hub: live dashboard"),
    "intro": ("Số liệu tính từ cơ sở dữ liệu của chính hệ thống điều phối, tự cập nhật sau mỗi {n} giây. "
              "Trang không hiển thị thông tin cá nhân (tên, số định danh).",
              "Figures computed from the hub's own database, refreshed every {n} seconds. "
              "No personal data (names, national IDs) is shown."),
    "other_language": ("English", "Tiếng Việt"),
    "latest_record": ("Lượt khám mới nhất trên hệ thống", "Latest visit at the hub"),
    "no_records": ("chưa có", "none yet"),
    "updated": ("Cập nhật", "Updated"),
    "offline": ("Mất kết nối tới hệ thống điều phối, đang thử lại…", "Hub unreachable, retrying…"),
    "reused_of_offered": ("bác sĩ dùng lại {r}/{o} kết quả được đề xuất", "doctors reused {r} of {o} results offered"),
    "repeated": ("Làm lại dù có kết quả được đề xuất", "Repeated although a result was offered"),
    "repeated_note": ("lý do của bác sĩ ở bên dưới", "the doctors' reasons are below"),
    "publishing": ("Cơ sở đã gửi dữ liệu lên hệ thống", "Facilities publishing to the hub"),
    "publishing_note": ("trong danh mục cơ sở: {share}", "of the facility registry: {share}"),
    "results": ("Kết quả cận lâm sàng trên hệ thống", "Results at the hub"),
    "results_note": ("{n} báo cáo kết quả", "{n} result reports"),
    "performed": ("Xét nghiệm đã thực hiện", "Tests performed"),
    "performed_note": ("chỉ định xét nghiệm đã gửi lên", "test orders published"),
    "people": ("Người bệnh liên thông theo số định danh", "People linked by national ID"),
    "people_note": ("{n} hồ sơ đăng ký tại các cơ sở", "{n} registrations at facilities"),
    "adoption_title": ("Triển khai bệnh án điện tử theo cơ sở", "EMR adoption by facility"),
    "adoption_axis": ("Tỷ lệ cơ sở trong danh mục", "Share of registry facilities"),
    "line_registry": ("Danh mục: ngày triển khai BAĐT (đã báo cáo hoặc kế hoạch)",
                      "Registry: EMR go-live date (reported or planned)"),
    "line_hub": ("Hệ thống điều phối: cơ sở đã gửi lượt khám", "Hub: facilities that have published visits"),
    "deadline_line": ("{group}: {n}/{of} cơ sở đã gửi lượt khám có ngày không muộn hơn hạn {due}",
                      "{group}: {n} of {of} facilities have published visits dated on or before the {due} deadline"),
    "facility": ("Cơ sở", "Facility"),
    "province": ("Tỉnh/thành (sau 2025)", "Province (after 2025)"),
    "go_live": ("Triển khai BAĐT (danh mục)", "EMR go-live (registry)"),
    "first_visit": ("Lượt khám đầu tiên", "First visit"),
    "not_publishing": ("chưa gửi dữ liệu", "nothing published"),
    "never": ("chưa có kế hoạch", "no date"),
    "patients": ("Hồ sơ đăng ký", "Registrations"),
    "results_short": ("Kết quả", "Results"),
    "performed_short": ("Thực hiện", "Performed"),
    "reused_short": ("Dùng lại", "Reused"),
    "repeated_short": ("Làm lại", "Repeated"),
    "by_province": ("Theo tỉnh/thành (sau sáp nhập 1/7/2025)", "By province (after the 1 Jul 2025 merger)"),
    "facilities_short": ("Cơ sở (đã gửi/danh mục)", "Facilities (publishing/registry)"),
    "province_short": ("Tỉnh/thành", "Province"),
    "by_facility": ("Theo cơ sở", "By facility"),
    "map_title": ("Cơ sở đã gửi dữ liệu theo tỉnh/thành", "Facilities publishing, by province"),
    "schematic": ("Sơ đồ, không phải bản đồ: mỗi ô là một tỉnh/thành sau sáp nhập, xếp đại ý từ Bắc vào Nam; số trong "
                  "ô là cơ sở đã gửi dữ liệu/cơ sở trong danh mục.",
                  "A schematic, not a map: one tile per province after the merger, laid out roughly north to south; "
                  "the figure in a tile is facilities publishing/facilities in the registry."),
    "legend_none": ("Không có cơ sở trong danh mục", "No registry facility"),
    "legend_zero": ("Chưa cơ sở nào gửi dữ liệu", "None publishing yet"),
    "legend_some": ("Một phần đã gửi dữ liệu", "Some publishing"),
    "legend_all": ("Tất cả đã gửi dữ liệu", "All publishing"),
    "decisions_title": ("Quyết định của bác sĩ khi có kết quả để dùng lại", "Doctors' decisions on results offered for reuse"),
    "decision_reused": ("Dùng lại kết quả, không làm lại", "Result reused, test not repeated"),
    "no_decisions": ("Chưa có quyết định nào được gửi lên.", "No decision has been published yet."),
    "tests_title": ("Xét nghiệm tránh được nhiều nhất", "Top tests avoided"),
    "test": ("Xét nghiệm", "Test"),
    "price": ("Giá (VND)", "Price (VND)"),
    "no_avoided": ("Chưa có xét nghiệm nào được dùng lại.", "No test has been reused yet."),
    "knows_title": ("Hệ thống điều phối biết gì, không biết gì", "What the hub knows and does not know"),
    "api": ("Cùng số liệu dạng JSON", "The same figures as JSON"),
    "fhir_api": ("API FHIR của hệ thống", "The hub's FHIR API"),
}

# What the hub can and cannot know, as (vi, en) lines of trusted HTML.
KNOWS = (
    ("Một cơ sở được tính là <b>đã gửi dữ liệu</b> khi hệ thống có hồ sơ đăng ký, lượt khám hoặc kết quả của cơ "
     "sở đó. Cơ sở chưa gửi gì có thể còn dùng giấy hoặc chưa kết nối: hệ thống không phân biệt được.",
     "A facility counts as <b>publishing</b> once the hub holds a registration, a visit or a result from it. "
     "One that has sent nothing may still be on paper or simply not connected: the hub cannot tell."),
    ("Ngày triển khai BAĐT lấy từ danh mục cơ sở (hospitals/), không phải do hệ thống quan sát. Ngày lượt khám "
     "đầu tiên là ngày khám ghi trong hồ sơ, không phải ngày hồ sơ được gửi.",
     "EMR go-live dates come from the facility registry (hospitals/), not from the hub. The first visit date is "
     "the clinical date in the record, not the day it arrived."),
    ("Xét nghiệm <b>tránh được</b> chỉ được đếm khi cơ sở gửi quyết định \"dùng lại\" của bác sĩ "
     "(DetectedIssue); chi phí theo giá BHYT trong danh mục xét nghiệm (data/tests.yaml).",
     "A test is counted as <b>avoided</b> only when the facility publishes the doctor's \"reused\" decision "
     "(DetectedIssue); its cost is the insurance price in the test catalogue (data/tests.yaml)."),
    ("Hệ thống không biết các chỉ định tại cơ sở chưa kết nối, kết quả chỉ có trên giấy, đề xuất mà bác sĩ "
     "không trả lời, hay lần làm lại nào là cần thiết về lâm sàng. Báo cáo của một lần mô phỏng (report.html) "
     "có đủ các lý do đó vì trình mô phỏng biết sự thật.",
     "The hub does not know orders at facilities that are not connected, results kept on paper, offers a doctor "
     "never answered, or which repeats were clinically needed. A simulation run's report (report.html) has "
     "those reasons because the simulator knows the ground truth."),
)

PAGE = """<!DOCTYPE html>
<html lang="{{ lang }}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ w.title }}</title>
<link rel="icon" href="data:,">
<style>
body{font-family:"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;color:#1d2733;margin:0;background:#f4f6f8}
header{background:#1b5e9e;color:#fff}header .in{max-width:1180px;margin:0 auto;padding:16px 28px;display:flex;
justify-content:space-between;align-items:flex-start;gap:16px}
header h1{font-size:1.45rem;margin:0 0 4px}header p{margin:0;color:#dbe7f4;font-size:.9rem}
header a.lang{color:#fff;border:1px solid #9dbbdc;border-radius:4px;padding:4px 10px;text-decoration:none;white-space:nowrap}
main{max-width:1180px;margin:0 auto;padding:18px 28px 28px;background:#fff}
.status{color:#5a6673;font-size:.85rem;margin:0 0 14px}.status b{color:#1d2733}.status .bad{color:#b03a2e;font-weight:600}
h2{font-size:1.15rem;border-bottom:2px solid #1b5e9e;padding-bottom:4px;margin-top:30px}h3{font-size:1rem;margin:18px 0 6px}
.cards{display:grid;grid-template-columns:repeat(4,1fr);gap:12px}
.card{border:1px solid #d5dbe1;border-radius:6px;padding:10px 12px}.card.main{background:#eef4fb;border-color:#9dbbdc}
.card .label{font-size:.85rem;color:#3b4754}.card .value{font-size:1.7rem;font-weight:700;font-variant-numeric:tabular-nums}
.card .note{font-size:.8rem;color:#5a6673}
table{border-collapse:collapse;width:100%;font-size:.84rem;margin:6px 0 10px}
th,td{border-bottom:1px solid #e1e5ea;padding:4px 7px;text-align:left;vertical-align:top}
th{background:#f0f2f5;font-weight:600}td.n,th.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td.key{white-space:nowrap}tr.idle td{color:#7a8591}#facilities{font-size:.8rem}#facilities td,#facilities th{padding:4px 5px}.muted{color:#5a6673;font-size:.85rem}
ul.facts{padding-left:20px}ul.facts li{margin:4px 0}
svg.chart{width:100%;height:auto;display:block;margin:8px 0}{{ css }}
.cols{display:grid;grid-template-columns:1fr 1fr;gap:22px}
.cols.map{grid-template-columns:430px 1fr;align-items:start}.cols.map svg.chart{max-width:430px}
ul.legend{list-style:none;padding:0;font-size:.82rem;display:flex;flex-wrap:wrap;gap:4px 16px}
.swatch{display:inline-block;width:14px;height:14px;border-radius:2px;margin-right:6px;vertical-align:-2px}
footer{max-width:1180px;margin:0 auto;padding:10px 28px 24px;font-size:.8rem;color:#5a6673}
@media (max-width:900px){.cards{grid-template-columns:repeat(2,1fr)}.cols{grid-template-columns:1fr}}
</style>
</head>
<body>
<header><div class="in">
<div><h1>{{ w.title }}</h1><p>{{ intro }}</p></div>
<a class="lang" id="lang-toggle" href="?lang={{ other_lang }}{{ refresh_query }}" hreflang="{{ other_lang }}">{{ w.other_language }}</a>
</div></header>
<main>
{{ live }}
</main>
<footer>{{ w.api }}: <a href="/dashboard/metrics.json">/dashboard/metrics.json</a> · {{ w.fhir_api }}:
<a href="/fhir/metadata">/fhir/metadata</a></footer>
<script>
(function () {
  var every = {{ refresh }} * 1000, lang = document.documentElement.lang;
  function live() { return document.getElementById("live"); }
  function stamp(text, bad) {
    var el = document.getElementById("updated");
    if (el) { el.textContent = text; el.className = bad ? "bad" : ""; }
  }
  function now() { return new Date().toLocaleTimeString(lang === "vi" ? "vi-VN" : "en-GB"); }
  async function tick() {
    try {
      var metrics = await (await fetch("/dashboard/metrics.json", {cache: "no-store"})).json();
      if (metrics.version !== live().dataset.version) {
        var response = await fetch("/dashboard/live?lang=" + lang, {cache: "no-store"});
        if (!response.ok) throw new Error(response.statusText);
        var holder = document.createElement("template");
        holder.innerHTML = (await response.text()).trim();
        live().replaceWith(holder.content.firstElementChild);
      }
      stamp(now(), false);
    } catch (error) {
      stamp({{ offline|tojson }}, true);
    }
    setTimeout(tick, every);
  }
  setTimeout(tick, every);
})();
</script>
</body>
</html>
"""

LIVE = """<div id="live" data-version="{{ version }}">
<p class="status">{{ w.latest_record }}: <b data-metric="as_of">{{ as_of }}</b> · {{ w.updated }}:
<span id="updated">{{ updated }}</span></p>
<div class="cards">
{% for card in cards %}
<div class="card{{ ' main' if card.main }}"><div class="label">{{ card.label }}</div>
<div class="value" data-metric="{{ card.metric }}">{{ card.value }}</div><div class="note">{{ card.note }}</div></div>
{% endfor %}
</div>

<h2>{{ w.adoption_title }}</h2>
{{ adoption.chart }}
<div class="cols map">
<div>{{ adoption.map }}</div>
<div>
<ul class="facts">
{% for line in adoption.deadlines %}<li>{{ line }}</li>
{% endfor %}
</ul>
<h3>{{ w.by_province }}</h3>
<table id="provinces"><thead><tr><th>{{ w.province_short }}</th><th class="n">{{ w.facilities_short }}</th><th class="n">{{ w.results_short }}</th>
<th class="n">{{ w.performed_short }}</th><th class="n">{{ w.reused_short }}</th><th class="n">{{ t.vnd_short }}</th></tr></thead>
<tbody>
{% for p in provinces %}
<tr><td>{{ p.province }}</td><td class="n">{{ p.facilities }}</td>{% for value in p.numbers %}<td class="n">{{ value }}</td>{% endfor %}</tr>
{% endfor %}
</tbody></table>
<ul class="legend">
{% for item in legend %}<li><span class="swatch" style="background:{{ item.colour }}"></span>{{ item.label }}</li>
{% endfor %}
</ul>
<p class="muted">{{ w.schematic }}</p>
</div>
</div>
<h3>{{ w.by_facility }}</h3>
<table id="facilities"><thead><tr><th>{{ t.code }}</th><th>{{ w.facility }}</th><th>{{ t.kind }}</th><th>{{ w.province }}</th>
<th>{{ w.go_live }}</th><th>{{ w.first_visit }}</th><th class="n">{{ w.patients }}</th><th class="n">{{ w.results_short }}</th>
<th class="n">{{ w.performed_short }}</th><th class="n">{{ w.reused_short }}</th><th class="n">{{ t.vnd_short }}</th></tr></thead>
<tbody>
{% for f in facilities %}
<tr{{ ' class="idle"'|safe if not f.publishing }} data-facility="{{ f.code }}"><td class="key">{{ f.code }}</td><td class="key">{{ f.name }}</td>
<td class="key">{{ f.kind }}</td><td>{{ f.province }}</td><td class="key">{{ f.go_live }}</td><td class="key">{{ f.first_visit }}</td>
{% for key, value in f.numbers %}<td class="n" data-metric="facilities.{{ f.code }}.{{ key }}">{{ value }}</td>{% endfor %}</tr>
{% endfor %}
</tbody></table>

<div class="cols">
<div>
<h2>{{ w.decisions_title }}</h2>
{% if decisions.rows %}
{{ decisions.chart }}
<table id="decisions"><thead><tr><th>{{ t.reason }}</th><th class="n">{{ t.count }}</th></tr></thead><tbody>
{% for row in decisions.rows %}<tr><td>{{ row.label }}</td><td class="n" data-metric="{{ row.metric }}">{{ row.count }}</td></tr>
{% endfor %}
</tbody></table>
{% else %}<p class="muted">{{ w.no_decisions }}</p>{% endif %}
</div>
<div>
<h2>{{ w.tests_title }}</h2>
{% if tests.rows %}
{{ tests.chart }}
<table id="tests"><thead><tr><th>{{ w.test }}</th><th class="n">{{ w.price }}</th><th class="n">{{ w.performed_short }}</th>
<th class="n">{{ w.reused_short }}</th><th class="n">{{ t.vnd_short }}</th></tr></thead><tbody>
{% for row in tests.rows %}<tr data-test="{{ row.loinc }}"><td>{{ row.name }} <span class="muted">{{ row.loinc }}</span></td>
{% for key, value in row.numbers %}<td class="n" data-metric="tests.{{ row.loinc }}.{{ key }}">{{ value }}</td>{% endfor %}</tr>
{% endfor %}
</tbody></table>
{% else %}<p class="muted">{{ w.no_avoided }}</p>{% endif %}
</div>
</div>

<h2>{{ w.knows_title }}</h2>
<ul class="facts">
{% for line in knows %}<li>{{ line }}</li>
{% endfor %}
</ul>
</div>
"""
