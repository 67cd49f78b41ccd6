"""Vietnam's 34 provinces (after the 1 July 2025 merger) as a tile schematic, for the dashboard.

Not a map: every province is one equal tile, placed by hand so that the grid reads
the way the country does — the northern mountains across the top, the Red River
delta, the long central coast, the Mekong delta at the bottom. Tiles that touch are
roughly neighbours on the ground; sizes and distances mean nothing. The layout is
this module's own, so no map data is needed. Names are ``post_2025_name_vi`` of
``data/provinces.yaml``, which is also what the registry's ``province_2025`` holds.
"""

from __future__ import annotations

from collections.abc import Mapping

from emr.reports.charts import Tile

LAYOUT: Mapping[str, tuple[int, int]] = {  # province → (row, column); row 0 is the top
    "Lai Châu": (0, 1), "Lào Cai": (0, 2), "Tuyên Quang": (0, 3), "Cao Bằng": (0, 4),
    "Điện Biên": (1, 0), "Sơn La": (1, 1), "Phú Thọ": (1, 2), "Thái Nguyên": (1, 3), "Lạng Sơn": (1, 4),
    "Hà Nội": (2, 2), "Bắc Ninh": (2, 3), "Quảng Ninh": (2, 4),
    "Ninh Bình": (3, 2), "Hưng Yên": (3, 3), "Hải Phòng": (3, 4),
    "Thanh Hóa": (4, 2),
    "Nghệ An": (5, 2), "Hà Tĩnh": (5, 3),
    "Quảng Trị": (6, 3),
    "Huế": (7, 3), "Đà Nẵng": (7, 4),
    "Quảng Ngãi": (8, 4),
    "Gia Lai": (9, 4),
    "Đắk Lắk": (10, 4),
    "Lâm Đồng": (11, 3), "Khánh Hòa": (11, 4),
    "Tây Ninh": (12, 1), "Đồng Nai": (12, 2),
    "An Giang": (13, 0), "Đồng Tháp": (13, 1), "Hồ Chí Minh": (13, 2),
    "Cần Thơ": (14, 0), "Vĩnh Long": (14, 1),
    "Cà Mau": (15, 0),
}

NO_FACILITY = ("#eef1f4", "#7a8591")
NONE_PUBLISHING = ("#f6dcc0", "#1d2733")
SOME_PUBLISHING = ("#9dbbdc", "#1d2733")
ALL_PUBLISHING = ("#1b5e9e", "#ffffff")


def province_tiles(provinces: list[dict]) -> list[Tile]:
    """A tile per province; ``provinces`` are the dashboard's rows (``province``,
    ``registry``, ``publishing``). A province not in the layout gets a tile below it."""
    rows = {row["province"]: row for row in provinces}
    extra = sorted(set(rows) - set(LAYOUT))
    places = {**LAYOUT, **{name: (16 + i // 5, i % 5) for i, name in enumerate(extra)}}
    return [_tile(name, row, column, rows.get(name)) for name, (row, column) in places.items()]


def _tile(name: str, row: int, column: int, figures: dict | None) -> Tile:
    if not figures or not figures["registry"]:
        fill, ink = NO_FACILITY
        return Tile(row, column, name, "", fill, ink)
    fill, ink = _colours(figures["publishing"], figures["registry"])
    return Tile(row, column, name, f"{figures['publishing']}/{figures['registry']}", fill, ink)


def _colours(publishing: int, registry: int) -> tuple[str, str]:
    if publishing == 0:
        return NONE_PUBLISHING
    return ALL_PUBLISHING if publishing == registry else SOME_PUBLISHING
