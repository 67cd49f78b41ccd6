"""Every word the reports show a person, in Vietnamese and English, and how numbers are written.

Each table maps a key to ``(vi, en)``. Vietnamese is the default language; numbers,
dates and percentages follow the reader's convention (``1.234.567`` and ``53,6%`` in
Vietnamese, ``1,234,567`` and ``53.6%`` in English). This module imports nothing from
the project so the CLI can use it without loading the report renderers.
"""

from __future__ import annotations

from datetime import date

LANGUAGES = ("vi", "en")

# Why a test was performed although it was ordered (the run record's ``why``).
REASONS = {
    "no-emr": ("Nơi chỉ định chưa có bệnh án điện tử", "Ordering facility not on EMR"),
    "hub-unavailable": ("Hệ thống điều phối không truy cập được", "Hub unavailable"),
    "source-on-paper": ("Kết quả trước nằm trên giấy", "Earlier result on paper only"),
    "not-yet-published": ("Kết quả trước chưa gửi lên", "Earlier result not yet published"),
    "no-prior-result": ("Không có kết quả trước", "No prior result"),
    "expired": ("Hết thời hạn giá trị", "Expired"),
    "lab-not-recognised": ("Phòng xét nghiệm chưa được công nhận", "Lab level not recognised"),
    "not-final": ("Kết quả chưa chính thức", "Result not final"),
    "not-shareable": ("Xét nghiệm không được dùng lại", "Test not shareable"),
    "negative-result": ("Kết quả âm tính (chỉ dùng lại dương tính)", "Negative result (positive only)"),
    "identity-unverified": ("Danh tính chưa xác thực", "Identity unverified"),
    "consent": ("Người bệnh từ chối chia sẻ", "Patient refused sharing"),
    "override:clinical-change": ("Bác sĩ: lâm sàng thay đổi", "Doctor: clinical change"),
    "override:result-not-trusted": ("Bác sĩ: không tin kết quả", "Doctor: result not trusted"),
    "override:patient-request": ("Bác sĩ: người bệnh yêu cầu", "Doctor: patient request"),
    "override:needs-own-baseline": ("Bác sĩ: cần kết quả tại chỗ", "Doctor: needs own baseline"),
}

CATEGORIES = {
    "haematology": ("Huyết học", "Haematology"),
    "biochemistry": ("Hóa sinh", "Biochemistry"),
    "immunology": ("Miễn dịch", "Immunology"),
    "microbiology": ("Vi sinh", "Microbiology"),
    "urinalysis": ("Nước tiểu", "Urinalysis"),
    "imaging": ("Chẩn đoán hình ảnh", "Imaging"),
}

KINDS = {
    "central": ("Bệnh viện trung ương", "Central hospital"),
    "provincial": ("Bệnh viện tuyến tỉnh", "Provincial hospital"),
    "regional": ("Trung tâm y tế khu vực", "Regional health centre"),
}

# The two groups Circular 13/2025/TT-BYT gives different deadlines.
GROUPS = {
    "all": ("Tất cả cơ sở", "All facilities"),
    "hospitals": ("Bệnh viện", "Hospitals"),
    "other": ("Cơ sở khác", "Other facilities"),
}

_MONTHS_EN = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def pick(pair: tuple[str, str], lang: str) -> str:
    return pair[0] if lang == "vi" else pair[1]


def reason_label(code: str, lang: str) -> str:
    """The label of a ``why`` code; an override reason not in the table keeps its code."""
    if code in REASONS:
        return pick(REASONS[code], lang)
    if code.startswith("override:"):
        return f"{pick(('Bác sĩ', 'Doctor'), lang)}: {code.removeprefix('override:')}"
    return code


def fmt_int(value: int, lang: str) -> str:
    text = f"{value:,}"
    return text.replace(",", ".") if lang == "vi" else text


def fmt_number(value: float, lang: str, *, digits: int = 1) -> str:
    text = f"{value:,.{digits}f}"
    return text.translate(str.maketrans(",.", ".,")) if lang == "vi" else text


def fmt_share(value: float | None, lang: str) -> str:
    """A share in [0, 1] as a percentage with one decimal; a dash when undefined."""
    if value is None:
        return "—"
    return f"{fmt_number(value * 100, lang)}%"


def fmt_date(day: date, lang: str) -> str:
    if lang == "vi":
        return f"{day.day:02d}/{day.month:02d}/{day.year}"
    return f"{day.day} {_MONTHS_EN[day.month - 1]} {day.year}"


def fmt_month(month: str | None, lang: str) -> str:
    """``2025-09`` as ``09/2025`` (vi) or ``Sep 2025`` (en); a dash for None."""
    if month is None:
        return "—"
    year, number = month.split("-")
    return f"{number}/{year}" if lang == "vi" else f"{_MONTHS_EN[int(number) - 1]} {year}"


# Words of the report page and charts.
TEXT = {
    "title": ("Báo cáo xét nghiệm trùng lặp tránh được và triển khai bệnh án điện tử",
              "Report on avoided duplicate tests and EMR adoption"),
    "simulated": ("Số liệu mô phỏng, không phải người bệnh thật. Kịch bản", "Simulated data, not real patients. Scenario"),
    "seed": ("hạt giống", "seed"),
    "patients": ("người bệnh mô phỏng", "simulated patients"),
    "period": ("Giai đoạn", "Period"),
    "key_figures": ("Kết quả chính", "Key figures"),
    "avoided": ("Xét nghiệm tránh được", "Tests avoided"),
    "of_ordered": ("trên {n} chỉ định", "of {n} ordered"),
    "vnd_saved": ("Chi phí tiết kiệm (VND)", "Cost saved (VND)"),
    "vnd_note": ("theo giá dịch vụ BHYT", "at insurance prices"),
    "blood_draws_avoided": ("Lần lấy máu tránh được", "Blood draws avoided"),
    "radiation_exposures_avoided": ("Lần chiếu xạ tránh được", "Radiation exposures avoided"),
    "turnaround_hours_saved": ("Giờ chờ kết quả tiết kiệm", "Turnaround hours saved"),
    "repeats_performed": ("Xét nghiệm lặp lại vẫn thực hiện", "Repeats still performed"),
    "repeats_note": ("đã có kết quả còn hạn ở nơi khác", "a valid result existed elsewhere"),
    "emr_live_end": ("Cơ sở có bệnh án điện tử (cuối kỳ)", "Facilities with EMR live (end)"),
    "referrals_shared": ("Ca chuyển tuyến xem được kết quả trước", "Referrals with an earlier result visible"),
    "why_title": ("Vì sao các xét nghiệm còn lại vẫn làm lại", "Why the other tests were repeated"),
    "reason": ("Lý do", "Reason"),
    "count": ("Số lượng", "Count"),
    "share": ("Tỷ lệ", "Share"),
    "no_repeats": ("Không có xét nghiệm lặp lại nào.", "No test was repeated."),
    "what_if_title": ("Nếu chính sách thay đổi (ước tính)", "What if (estimates)"),
    "what_if_labs": ("Nếu mọi phòng xét nghiệm được công nhận: tránh thêm khoảng {n} xét nghiệm",
                     "Had every lab been recognised: about {n} more tests avoided"),
    "what_if_emr": ("Nếu mọi cơ sở đều có bệnh án điện tử: tránh thêm khoảng {n} xét nghiệm",
                    "Had every facility been on EMR: about {n} more tests avoided"),
    "what_if_method": ("= {r} lần lặp lại vì lý do trên × {p} (tỷ lệ bác sĩ chấp nhận dùng lại trong kịch bản).",
                       "= {r} repeats for these reasons × {p} (the scenario's share of offered results doctors accept)."),
    "adoption_title": ("Triển khai bệnh án điện tử theo tháng", "EMR adoption by month"),
    "adoption_axis": ("Tỷ lệ cơ sở có bệnh án điện tử", "Share of facilities with EMR live"),
    "planned": ("theo kế hoạch triển khai (sau kỳ mô phỏng)", "planned go-live (after the run)"),
    "national": ("Cả nước (bệnh viện, báo chí)", "Nationally (hospitals, press)"),
    "deadline": ("Hạn", "Deadline"),
    "deadline_hospitals": ("Hạn bệnh viện", "Hospital deadline"),
    "deadline_other": ("Hạn cơ sở khác", "Other facilities' deadline"),
    "projection": ("Dự báo đạt 100% theo tốc độ hiện tại", "100% reached at the current pace"),
    "no_projection": ("không đạt (không có tiến triển)", "never (no progress)"),
    "deadline_row": ("{group}: {live}/{of} cơ sở có bệnh án điện tử trước hạn {due}",
                     "{group}: {live} of {of} facilities live by the {due} deadline"),
    "deadline_planned": ("(gồm ngày triển khai theo kế hoạch)", "(including planned go-live dates)"),
    "results_electronic": ("Kết quả cận lâm sàng có trên hệ thống điều phối",
                           "Paraclinical results available electronically at the hub"),
    "month": ("Tháng", "Month"),
    "national_title": ("Đường tham chiếu toàn quốc", "National reference line"),
    "date": ("Ngày", "Date"),
    "hospitals_with_emr": ("Bệnh viện có BAĐT", "Hospitals with EMR"),
    "source": ("Nguồn", "Source"),
    "breakdowns": ("Chi tiết", "Breakdowns"),
    "by_province_pre": ("Theo tỉnh (trước sáp nhập 2025)", "By province (before the 2025 merger)"),
    "by_province_post": ("Theo tỉnh (sau sáp nhập 1/7/2025)", "By province (after the 1 Jul 2025 merger)"),
    "by_facility": ("Theo cơ sở", "By facility"),
    "by_test": ("Theo xét nghiệm", "By test"),
    "by_category": ("Theo nhóm", "By category"),
    "by_month": ("Theo tháng (giờ Việt Nam)", "By month (Vietnam time)"),
    "name": ("Tên", "Name"),
    "code": ("Mã", "Code"),
    "ordered": ("Chỉ định", "Ordered"),
    "performed": ("Thực hiện", "Performed"),
    "avoided_short": ("Tránh được", "Avoided"),
    "vnd_short": ("Tiết kiệm (VND)", "Saved (VND)"),
    "blood_short": ("Lấy máu", "Blood draws"),
    "radiation_short": ("Chiếu xạ", "Radiation"),
    "hours_short": ("Giờ chờ", "Hours"),
    "kind": ("Loại", "Kind"),
    "definitions": ("Cách tính", "How the figures are computed"),
    "files": ("Số liệu đi kèm: report.json, các bảng CSV, measure-report-bundle.json (FHIR MeasureReport).",
              "Accompanying data: report.json, the CSV tables, measure-report-bundle.json (FHIR MeasureReport)."),
}

# What each figure means; shown on the page and carried in report.json.
DEFINITIONS = {
    "avoided": ("Chỉ định mà bác sĩ chấp nhận dùng lại kết quả còn hạn từ cơ sở khác, không làm lại.",
                "An ordered test for which the doctor accepted a valid result from another facility instead of "
                "repeating it."),
    "savings": ("Chi phí theo giá dịch vụ BHYT của xét nghiệm tránh được; lần lấy máu tính một lần cho mỗi lượt "
                "khám có ít nhất một xét nghiệm máu tránh được; lần chiếu xạ là mỗi chụp X-quang/CT tránh được; "
                "giờ chờ là tổng thời gian trả kết quả của các xét nghiệm tránh được.",
                "Insurance price of each avoided test; a blood draw counts once per patient visit with at least "
                "one avoided blood test; a radiation exposure is each avoided X-ray or CT; turnaround hours sum "
                "the avoided tests' turnaround times."),
    "repeats": ("Xét nghiệm vẫn làm dù người bệnh đã có kết quả còn trong thời hạn giá trị, đếm theo lý do "
                "không dùng lại được.",
                "A test performed although the patient already had a result within its validity window, counted "
                "by the reason it was not reused."),
    "what_if": ("Ước tính: số lần lặp lại vì các lý do mà thay đổi đó xóa bỏ, nhân với tỷ lệ bác sĩ chấp nhận "
                "dùng lại trong kịch bản, làm tròn. Công nhận phòng xét nghiệm: lý do 'phòng xét nghiệm chưa được "
                "công nhận'; mọi cơ sở có BAĐT: lý do 'kết quả trước nằm trên giấy' và 'nơi chỉ định chưa có BAĐT'. "
                "Không mô phỏng lại, nên các yếu tố khác (hết hạn, danh tính…) được giữ nguyên.",
                "Estimated: the repeats whose reason the change removes, times the scenario's share of offered "
                "results doctors accept, rounded. Every lab recognised: reason 'lab not recognised'; every facility "
                "on EMR: reasons 'earlier result on paper only' and 'ordering facility not on EMR'. Nothing is "
                "re-simulated, so every other obstacle (expiry, identity…) is assumed unchanged."),
    "adoption": ("Cơ sở có bệnh án điện tử vào cuối tháng nếu ngày triển khai (go-live) không muộn hơn ngày cuối "
                 "tháng. Bệnh viện: tuyến trung ương và tỉnh (hạn 30/09/2025); cơ sở khác: trung tâm y tế khu vực "
                 "(hạn 31/12/2026), theo Thông tư 13/2025/TT-BYT. Sau kỳ mô phỏng dùng ngày triển khai theo kế hoạch.",
                 "A facility has EMR live at the end of a month when its go-live date is on or before the month's "
                 "last day. Hospitals: central and provincial (deadline 30 Sep 2025); other facilities: regional "
                 "health centres (31 Dec 2026), Circular 13/2025/TT-BYT. After the run, planned go-live dates."),
    "results_electronic": ("Số xét nghiệm đã thực hiện tại cơ sở đã có bệnh án điện tử vào ngày chỉ định (giờ Việt "
                           "Nam), chia cho tổng số xét nghiệm đã thực hiện: kết quả được gửi lên hệ thống điều phối; "
                           "phần còn lại chỉ có trên giấy.",
                           "Tests performed at a facility whose EMR was live on the order day (Vietnam time), divided "
                           "by all tests performed: these results are published to the hub; the rest exist on paper "
                           "only."),
    "referrals": ("Lượt chuyển tuyến lên (có ít nhất một chỉ định; một lượt = một người bệnh tại một thời điểm) mà "
                  "ít nhất một xét nghiệm được chỉ định đã có kết quả trước trên hệ thống điều phối, chia cho tổng "
                  "số lượt chuyển tuyến.",
                  "Referral visits (with at least one ordered test; one visit = one citizen at one time) in which at "
                  "least one ordered test already had an earlier result at the hub, divided by all referral visits."),
    "projection": ("Độ dốc bình phương tối thiểu của tỷ lệ theo tháng trong kỳ, ngoại suy tuyến tính từ tháng cuối.",
                   "The least-squares slope of the monthly shares of the run, extended linearly from the last month."),
    "month": ("Tháng của thời điểm chỉ định theo giờ Việt Nam (UTC+7).", "Month of the order time in Vietnam time "
              "(UTC+7)."),
}

# The name of each definition, as the page shows it.
TERMS = {
    "avoided": ("Xét nghiệm tránh được", "Tests avoided"),
    "savings": ("Chi phí, lấy máu, chiếu xạ, giờ chờ", "Cost, blood draws, radiation, turnaround"),
    "repeats": ("Xét nghiệm lặp lại", "Repeats"),
    "what_if": ("Ước tính nếu chính sách thay đổi", "What-if estimates"),
    "adoption": ("Triển khai bệnh án điện tử", "EMR adoption"),
    "results_electronic": ("Kết quả có trên hệ thống điều phối", "Results available at the hub"),
    "referrals": ("Chuyển tuyến xem được kết quả trước", "Referrals with an earlier result visible"),
    "projection": ("Dự báo đạt 100%", "Projection to 100%"),
    "month": ("Tháng", "Month"),
}
