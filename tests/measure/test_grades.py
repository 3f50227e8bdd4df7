"""Grade ceilings from centering: the bundled tables, their sources, the rules, and user tables."""

from __future__ import annotations

import tomllib
from pathlib import Path

import numpy as np
import pytest

from cardmetry.geometry.specs import card_spec
from cardmetry.measure.grades import (
    UNSOURCED_NOTE,
    GradeTable,
    add_grades,
    bundled_tables,
    grade_ceilings,
    load_tables,
    parse_table,
)
from cardmetry.measure.result import Measurement, Refusal

ROOT = Path(__file__).resolve().parents[2]
TABLES_DIR = ROOT / "cardmetry" / "measure" / "grade_tables"
BUNDLED_FILES = sorted(TABLES_DIR.glob("*.toml"))


def centering(lr: float, tb: float, worst_lr: float | None = None, worst_tb: float | None = None) -> dict:
    """A centering dict as cardmetry.geometry.stations.centering gives it; shares are the left and top ones."""

    def pair(share: float) -> list[float]:
        return [share, 100 - share]

    return {
        "left_right": pair(lr),
        "top_bottom": pair(tb),
        "worst_left_right": {"ratio": pair(lr if worst_lr is None else worst_lr), "station": 4},
        "worst_top_bottom": {"ratio": pair(tb if worst_tb is None else worst_tb), "station": 3},
    }


def ceilings(side: str, *args: float, tables: list[GradeTable] | None = None) -> dict[str, dict]:
    return grade_ceilings(centering(*args), side, load_tables() if tables is None else tables)


MINIMAL_TABLE = """
id = "acme-1"
grader = "acme"
name = "Acme Grading"
version = "1"
checked = 2026-11-29
sourced = true

[[sources]]
url = "https://acme.example/scale"
read = 2026-11-29
kind = "primary"

[[front]]
grade = 10
label = "Gem"
max_share = 52
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# --- PSA ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lr", "tb", "ceiling", "with_leeway"),
    [
        (50.0, 50.0, 10, 10),  # perfectly centred
        (55.0, 50.0, 10, 10),  # exactly on the 55/45 limit: inclusive ("55/45 or better")
        (45.0, 50.0, 10, 10),  # 45/55 is the same off-centring as 55/45, the other way
        (55.004, 50.0, 10, 10),  # judged at the reported 2 decimals: shown as 55.0, graded as 55.0
        (55.01, 50.0, 9, 10),  # just over 55/45: a 9, but a 10 with PSA's 5 % front leeway
        (50.0, 56.0, 9, 10),  # top/bottom off just as much decides as left/right does
        (60.0, 50.0, 9, 10),  # the leeway's edge for 10 (55 + 5) is inclusive too
        (60.01, 50.0, 8, 9),  # past 60/40: not a 10 even with leeway
        (70.0, 50.0, 7, 8),  # 8 is 65/35, and 70/30 with leeway
        (75.0, 50.0, 6, 7),  # 7 reaches 75/25 with leeway
        (75.01, 50.0, 6, 6),  # past 75/25: grade 6 has no leeway (it is below 7), its limit is 80/20
        (85.0, 50.0, 5, 5),  # 5 and 4 share 85/15: the best grade met is the ceiling
        (90.0, 50.0, 3, 3),  # 3 and below are 90/10
    ],
)
def test_psa_front_ceiling_and_leeway(lr: float, tb: float, ceiling: float, with_leeway: float) -> None:
    psa = ceilings("front", lr, tb)["psa"]
    assert (psa["ceiling"], psa["with_leeway"]["ceiling"]) == (ceiling, with_leeway)


@pytest.mark.parametrize(
    ("side", "share", "ceiling"),
    [
        ("back", 75.0, 10),  # the reverse allows 75/25 for a 10
        ("back", 75.01, 9),  # just over it
        ("back", 90.0, 9),  # 9 and below all allow 90/10 on the back
        ("front", 75.0, 6),  # the same 75/25 on the front is a 6
    ],
)
def test_psa_back_is_looser_than_front(side: str, share: float, ceiling: float) -> None:
    assert ceilings(side, share, 50.0)["psa"]["ceiling"] == ceiling


def test_psa_leeway_is_front_only() -> None:
    # PSA gives its leeway to the front centering standards only
    assert "with_leeway" not in ceilings("back", 55.0, 50.0)["psa"]


@pytest.mark.parametrize(
    ("side", "share"),
    [
        ("front", 90.01),  # worse than every front limit
        ("back", 95.0),  # worse than every back limit (all 90/10)
    ],
)
def test_psa_worse_than_every_limit_is_the_floor(side: str, share: float) -> None:
    psa = ceilings(side, share, 50.0)["psa"]
    assert (psa["ceiling"], psa["label"], psa["below_table"]) == (1, "PR", True)


def test_psa_entry_has_the_contract_shape() -> None:
    # CONTRACT.md: {"psa": {"ceiling": 10, "table": "psa-2025"}}, with the label, the flag and the leeway beside it
    assert ceilings("front", 51.0, 52.0)["psa"] == {
        "ceiling": 10,
        "label": "GEM-MT",
        "table": "psa-2025",
        "sourced": True,
        "with_leeway": {"ceiling": 10, "label": "GEM-MT"},
    }


@pytest.mark.parametrize(
    ("mean_lr", "worst_lr", "ceiling"),
    [
        (52.0, 57.0, 9),  # the mean looks like a 10; the worst station (a diamond cut's wide end) says 9
        (52.0, 55.0, 10),  # the worst station exactly on 55/45 still allows a 10
    ],
)
def test_worst_station_decides_not_the_mean(mean_lr: float, worst_lr: float, ceiling: float) -> None:
    assert ceilings("front", mean_lr, 50.0, worst_lr)["psa"]["ceiling"] == ceiling


# --- BGS ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("side", "lr", "tb", "ceiling"),
    [
        ("front", 50.0, 50.0, 10),  # 50/50 all around: Pristine
        ("front", 50.0, 50.01, 9.5),  # a hair off one way: no longer 10
        ("front", 55.0, 50.0, 9.5),  # 50/50 one way, 55/45 the other: Gem Mint
        ("front", 50.0, 55.0, 9.5),  # either axis may be the 55/45 one
        ("front", 55.0, 50.01, 9),  # off both ways: 9.5 needs one axis at 50/50
        ("front", 53.0, 53.0, 9),  # 55/45 both ways or better
        ("front", 55.01, 50.0, 8),  # past 55/45 on one axis
        ("front", 65.0, 50.0, 7),  # the last listed limit
        ("back", 55.0, 55.0, 10),  # the back allows 55/45 for Pristine
        ("back", 60.0, 50.0, 9.5),  # and 60/40 for Gem Mint
        ("back", 70.0, 50.0, 9),  # 70/30 for Mint
    ],
)
def test_bgs_judges_both_axes_together(side: str, lr: float, tb: float, ceiling: float) -> None:
    assert ceilings(side, lr, tb)["bgs"]["ceiling"] == ceiling


def test_bgs_below_its_table_is_flagged() -> None:
    # BGS lists nothing below 7 (65/35): the lowest listed grade is the floor, and the entry says so
    bgs = ceilings("front", 70.0, 50.0)["bgs"]
    assert (bgs["ceiling"], bgs["below_table"]) == (7, True)


def test_bgs_says_it_is_a_subgrade_ceiling() -> None:
    assert "subgrade" in ceilings("front", 50.0, 50.0)["bgs"]["note"]


# --- unsourced graders -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("grader", "table"),
    [
        ("cgc", "cgc-unsourced"),  # figures seen only in third-party copies: not graded
        ("sgc", "sgc-unsourced"),  # no primary source found
        ("tag", "tag-unsourced"),  # no primary source found
    ],
)
@pytest.mark.parametrize("side", ["front", "back"])
def test_unsourced_graders_give_null(grader: str, table: str, side: str) -> None:
    assert ceilings(side, 50.0, 50.0)[grader] == {
        "ceiling": None,
        "label": None,
        "table": table,
        "sourced": False,
        "note": UNSOURCED_NOTE,
    }


def test_side_must_be_front_or_back() -> None:
    with pytest.raises(ValueError, match="front or back"):
        ceilings("reverse", 50.0, 50.0)


# --- user tables -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("max_share = 52", 'max_share = "52"', r"front\[0\]\.max_share: Input should be a valid number"),  # text
        ("max_share = 52", "max_shar = 52", r"front\[0\]\.max_shar: Extra inputs"),  # a typo in a key
        ("max_share = 52", "max_share = 45", r"front\[0\]\.max_share: .*greater than or equal to 50"),  # below 50
        ('id = "acme-1"\n', "", r"\bid: Field required"),  # no id
        ("read = 2026-11-29", 'read = "yesterday"', r"sources\[0\]\.read: Input should be a valid date"),  # no date
        ('kind = "primary"', 'kind = "secondary"', r"kind = 'primary'"),  # sourced without a primary source
        ('url = "https://acme.example/scale"', 'url = "acme scale"', r"sources\[0\]\.url"),  # not a URL
        ("max_share = 52", "max_share = 52\nbest_axis_max_share = 53", r"front\[0\]: best_axis"),  # looser best axis
        ("sourced = true", "sourced = true\nfloor = 11", r"floor 11 is above"),  # a floor above the lowest grade
        ("sourced = true", "sourced = yes", r"not valid TOML"),  # not TOML at all
        (
            'label = "Gem"\nmax_share = 52',
            'label = "Gem"\nmax_share = 52\n[[front]]\ngrade = 9\nlabel = "Mint"\nmax_share = 51',
            r"front\[1\]: grade 9 has stricter limits",
        ),  # a lower grade stricter than a higher one
        (
            'label = "Gem"\nmax_share = 52',
            'label = "Gem"\nmax_share = 52\n[[front]]\ngrade = 10.5\nlabel = "Mint"\nmax_share = 55',
            r"front\[1\]: grade 10.5 comes after 10",
        ),  # not best first
    ],
)
def test_malformed_user_table_names_file_and_key(tmp_path: Path, old: str, new: str, expected: str) -> None:
    assert old in MINIMAL_TABLE
    path = write(tmp_path, "mine.toml", MINIMAL_TABLE.replace(old, new, 1))
    with pytest.raises(ValueError, match=expected) as caught:
        load_tables([path])
    assert str(path) in str(caught.value)


def test_missing_user_table_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.toml"
    with pytest.raises(ValueError, match=r"absent\.toml"):
        load_tables([path])


def test_user_table_adds_a_grader(tmp_path: Path) -> None:
    tables = load_tables([write(tmp_path, "acme.toml", MINIMAL_TABLE)])
    result = grade_ceilings(centering(52.0, 50.0), "front", tables)
    assert result["acme"] == {"ceiling": 10, "label": "Gem", "table": "acme-1", "sourced": True}
    assert result["psa"]["table"] == "psa-2025"  # the bundled ones stay


def test_user_table_overrides_the_bundled_one(tmp_path: Path) -> None:
    mine = MINIMAL_TABLE.replace('id = "acme-1"', 'id = "psa-mine"').replace('grader = "acme"', 'grader = "psa"')
    tables = load_tables([write(tmp_path, "psa.toml", mine)])
    assert len(tables) == len(bundled_tables())
    psa = grade_ceilings(centering(53.0, 50.0), "front", tables)["psa"]
    assert (psa["table"], psa["ceiling"], psa["below_table"]) == ("psa-mine", 10, True)  # 53 misses 52: the floor


def test_later_user_table_wins(tmp_path: Path) -> None:
    first = write(tmp_path, "a.toml", MINIMAL_TABLE)
    second = write(tmp_path, "b.toml", MINIMAL_TABLE.replace('id = "acme-1"', 'id = "acme-2"'))
    assert [t.id for t in load_tables([first, second]) if t.grader == "acme"] == ["acme-2"]


@pytest.mark.parametrize(
    ("judge", "ceiling"),
    [
        ("mean", 10),  # a table may judge the side means (52/48 here)...
        ("worst_station", 9),  # ...or the worst station (57/43), the default
    ],
)
def test_table_chooses_mean_or_worst_station(tmp_path: Path, judge: str, ceiling: float) -> None:
    text = MINIMAL_TABLE.replace("sourced = true", f'sourced = true\njudge = "{judge}"')
    text += '\n[[front]]\ngrade = 9\nlabel = "Mint"\nmax_share = 60\n'
    tables = [parse_table(text, "inline")]
    assert grade_ceilings(centering(52.0, 50.0, 57.0), "front", tables)["acme"]["ceiling"] == ceiling


def test_side_without_limits_is_null_with_a_reason() -> None:
    # the minimal table lists the front only
    entry = grade_ceilings(centering(50.0, 50.0), "back", [parse_table(MINIMAL_TABLE, "inline")])["acme"]
    assert (entry["ceiling"], entry["note"]) == (None, "acme-1 lists no back limits")


def test_add_grades_fills_a_measurement_and_leaves_a_refusal() -> None:
    quad = np.zeros((4, 2))
    measured = Measurement(
        image="card.png",
        side="back",
        spec=card_spec("standard"),
        outer_quad_px=quad,
        graphic_quad_px=quad,
        px_per_mm=20.0,
        points=[],
        centering=centering(80.0, 50.0),
        skew_deg={},
        flags=[],
        outer_fit_rms_px=0.1,
        graphic_fit_rms_px=0.1,
    )
    add_grades(measured, load_tables())
    assert measured.grades["psa"]["ceiling"] == 9
    refused = Refusal("card.png", "front", "no edges")
    add_grades(refused, load_tables())
    assert "grades" not in refused.as_json()


# --- the bundled tables and their sources ------------------------------------------------------------------------


@pytest.mark.parametrize("path", BUNDLED_FILES, ids=lambda p: p.name)
def test_bundled_table_names_its_file_and_checked_date(path: Path) -> None:
    table = parse_table(path.read_text(), path.name)
    assert table.id == path.stem  # the file is named after the versioned id
    assert table.checked is not None
    assert table.sourced or table.searched  # an unsourced table says where a source was looked for


@pytest.mark.parametrize("path", BUNDLED_FILES, ids=lambda p: p.name)
def test_every_source_has_url_and_read_date(path: Path) -> None:
    for source in tomllib.loads(path.read_text()).get("sources", []):
        assert source["url"].startswith(("https://", "http://")) and source.get("read"), (path.name, source)


@pytest.mark.parametrize("path", BUNDLED_FILES, ids=lambda p: p.name)
def test_sourced_table_cites_a_primary_source(path: Path) -> None:
    # read the raw TOML, not the model: this must fail even if the loader's own check were removed
    data = tomllib.loads(path.read_text())
    if data["sourced"]:
        primary = [s for s in data.get("sources", []) if s.get("kind") == "primary" and s.get("url") and s.get("read")]
        assert primary, f"{path.name} is marked sourced but cites no primary source with a URL and a date"
        assert any(row.get("confirmed") for side in ("front", "back") for row in data.get(side, [])), path.name


def test_bundled_tables_ship_as_package_data() -> None:
    # found through importlib.resources, as an installed wheel finds them, and declared in pyproject.toml
    assert {t.grader for t in bundled_tables()} == {"psa", "bgs", "cgc", "sgc", "tag"}
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert pyproject["tool"]["setuptools"]["package-data"]["cardmetry.measure"] == ["grade_tables/*.toml"]


@pytest.mark.parametrize("path", BUNDLED_FILES, ids=lambda p: p.name)
def test_docs_name_every_table_and_source(path: Path) -> None:
    docs = (ROOT / "docs" / "grades.md").read_text()
    data = tomllib.loads(path.read_text())
    assert data["id"] in docs
    for source in data.get("sources", []):
        assert source["url"] in docs, (data["id"], source["url"])
