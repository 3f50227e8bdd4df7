"""Grade ceilings from centering alone, read from versioned tables that cite their source (CONTRACT.md).

A table is a TOML file (docs/grades.md has the format): for each card side, grades best first, each with the
largest share the bigger border may take (55 for "55/45 or better", inclusive). The ceiling is the best listed
grade whose limits the card meets. A table without a primary source is carried, marked, and never graded.
"""

from __future__ import annotations

import datetime as dt
import tomllib
from collections.abc import Mapping, Sequence
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from cardmetry.measure.result import Measurement, Refusal

Side = Literal["front", "back"]
SIDES: tuple[Side, ...] = ("front", "back")
# Shares are compared as the JSON reports them (CONTRACT.md centering, 2 decimals), so a card shown at 55.0/45.0
# is judged at 55.0 and the grade never disagrees with the numbers printed beside it.
SHARE_DECIMALS = 2
UNSOURCED_NOTE = "no primary source: not graded"
_TABLES_PACKAGE = "cardmetry.measure"
_TABLES_DIR = "grade_tables"


class _Data(BaseModel):
    # Strict and closed: a user's typo ("max_shar", "55" as text) is an error naming the key, not a silent default.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class Source(_Data):
    url: str = Field(pattern=r"^https?://\S+$")
    read: dt.date  # when it was read: pages change without notice
    via: str = ""  # how it was read (a live page, a stored copy)
    kind: Literal["primary", "secondary"]  # primary: the grader's own site
    covers: str = ""
    quote: str = ""


class Limit(_Data):
    grade: float = Field(ge=0)
    label: str = Field(min_length=1)
    max_share: float = Field(ge=50, le=100)  # the worse axis must be within it
    best_axis_max_share: float | None = Field(default=None, ge=50, le=100)  # and the better axis within this
    confirmed: bool = False  # read on the grader's own site, not only in copies of it

    @model_validator(mode="after")
    def _best_axis_within_max(self) -> Limit:
        if self.best_axis_max_share is not None and self.best_axis_max_share > self.max_share:
            raise ValueError("best_axis_max_share cannot be looser than max_share")
        return self

    @property
    def best_axis_limit(self) -> float:
        return self.max_share if self.best_axis_max_share is None else self.best_axis_max_share


class Leeway(_Data):
    side: Side
    points: float = Field(gt=0, le=50)  # added to the limits of every grade from min_grade up
    min_grade: float = Field(ge=0)


class GradeTable(_Data):
    id: str = Field(pattern=r"^[A-Za-z0-9._-]+$")
    grader: str = Field(pattern=r"^[a-z0-9_-]+$")  # the key under "grades" in the JSON
    name: str = Field(min_length=1)
    version: str = Field(min_length=1)
    checked: dt.date  # when the table was last checked against its sources
    sourced: bool
    searched: str = ""  # for an unsourced table: where a primary source was looked for
    judge: Literal["worst_station", "mean"] = "worst_station"
    floor: float | None = None  # ceiling when every listed limit is missed; default: the lowest listed grade
    floor_label: str = ""
    note: str = ""  # carried into each result, e.g. what the ceiling is a ceiling of
    leeway: Leeway | None = None
    sources: list[Source] = []
    front: list[Limit] = []
    back: list[Limit] = []

    @model_validator(mode="after")
    def _consistent(self) -> GradeTable:
        if self.sourced and not any(source.kind == "primary" for source in self.sources):
            raise ValueError("sourced = true needs at least one [[sources]] entry with kind = 'primary'")
        if self.sourced and not (self.front or self.back):
            raise ValueError("sourced = true needs [[front]] or [[back]] limits")
        for side in SIDES:
            _check_order(side, self.limits(side))
        lowest = min((limit.grade for side in SIDES for limit in self.limits(side)), default=None)
        if self.floor is not None and lowest is not None and self.floor > lowest:
            raise ValueError(f"floor {self.floor:g} is above the lowest listed grade {lowest:g}")
        return self

    def limits(self, side: str) -> list[Limit]:
        return self.front if side == "front" else self.back

    def leeway_on(self, side: str) -> Leeway | None:
        return self.leeway if self.leeway is not None and self.leeway.side == side else None


def _check_order(side: Side, limits: list[Limit]) -> None:
    """Best grade first, and a lower grade never stricter than a higher one: else the first met is not the best."""
    for k in range(1, len(limits)):
        above, below = limits[k - 1], limits[k]
        if below.grade > above.grade:
            raise ValueError(f"{side}[{k}]: grade {below.grade:g} comes after {above.grade:g}; list best first")
        if below.max_share < above.max_share or below.best_axis_limit < above.best_axis_limit:
            raise ValueError(f"{side}[{k}]: grade {below.grade:g} has stricter limits than {above.grade:g}")


def parse_table(text: str, origin: str) -> GradeTable:
    """A table from TOML text; any problem is a ValueError that names `origin` and the offending key."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ValueError(f"{origin}: not valid TOML: {error}") from None
    try:
        return GradeTable.model_validate(data)
    except ValidationError as error:
        problems = "; ".join(_problem(e["loc"], e["msg"]) for e in error.errors())
        raise ValueError(f"{origin}: {problems}") from None


def _problem(loc: tuple[int | str, ...], message: str) -> str:
    key = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc).lstrip(".")
    message = message.removeprefix("Value error, ")
    return f"{key}: {message}" if key else message


def read_table(path: Path) -> GradeTable:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: cannot read grade table: {error}") from None
    return parse_table(text, str(path))


@cache
def bundled_tables() -> tuple[GradeTable, ...]:
    """The tables shipped in cardmetry/measure/grade_tables, in file-name order."""
    folder = resources.files(_TABLES_PACKAGE) / _TABLES_DIR
    files = sorted((f for f in folder.iterdir() if f.name.endswith(".toml")), key=lambda f: f.name)
    return tuple(parse_table(f.read_text(encoding="utf-8"), f"{_TABLES_DIR}/{f.name}") for f in files)


def load_tables(extra: Sequence[Path] = ()) -> list[GradeTable]:
    """The bundled tables, then the user's: a user table replaces the bundled one for its grader or adds one.

    Later user files win over earlier ones for the same grader."""
    by_grader = {table.grader: table for table in bundled_tables()}
    for path in extra:
        table = read_table(Path(path))
        by_grader[table.grader] = table
    return list(by_grader.values())


def grade_ceilings(centering: Mapping[str, object], side: str, tables: Sequence[GradeTable]) -> dict[str, dict]:
    """Per grader, the best grade centering alone allows on this side (CONTRACT.md "grades").

    `centering` is what cardmetry.geometry.stations.centering returns (or the JSON's "centering")."""
    if side not in SIDES:
        raise ValueError(f"side must be front or back, not {side!r}")
    return {table.grader: _entry(table, side, centering) for table in tables}


def add_grades(result: Measurement | Refusal, tables: Sequence[GradeTable]) -> None:
    """Fill a measurement's grades in place; a refusal has no centering and gets none."""
    if isinstance(result, Measurement):
        result.grades.clear()
        result.grades.update(grade_ceilings(result.centering, result.side, tables))


def _entry(table: GradeTable, side: str, centering: Mapping[str, object]) -> dict[str, object]:
    entry: dict[str, object] = {"ceiling": None, "label": None, "table": table.id, "sourced": table.sourced}
    if not table.sourced:
        return {**entry, "note": UNSOURCED_NOTE}
    limits = table.limits(side)
    if not limits:
        return {**entry, "note": f"{table.id} lists no {side} limits"}
    shares = _larger_shares(centering, table.judge)
    ceiling, label, below = _ceiling(table, limits, shares, leeway=None)
    entry.update(ceiling=ceiling, label=label)
    leeway = table.leeway_on(side)
    if leeway is not None:
        with_leeway, leeway_label, _ = _ceiling(table, limits, shares, leeway)
        entry["with_leeway"] = {"ceiling": with_leeway, "label": leeway_label}
    if below:
        entry["below_table"] = True  # worse than every listed limit: the ceiling is the table's floor
    if table.note:
        entry["note"] = table.note
    return entry


def _larger_shares(centering: Mapping[str, object], judge: str) -> tuple[float, float]:
    """The bigger border's share on each axis (left/right, top/bottom), at the reported precision."""
    keys = ("worst_left_right", "worst_top_bottom") if judge == "worst_station" else ("left_right", "top_bottom")
    lr, tb = (round(max(_ratio(centering[key])), SHARE_DECIMALS) for key in keys)
    return lr, tb


def _ratio(value: object) -> list[float]:
    """[a, b] percent from a mean pair or a worst-station entry ({"ratio": [a, b], "station": k})."""
    pair = value["ratio"] if isinstance(value, Mapping) else value
    return [float(v) for v in pair]  # type: ignore[union-attr]


def _ceiling(
    table: GradeTable, limits: list[Limit], shares: tuple[float, float], leeway: Leeway | None
) -> tuple[int | float, str | None, bool]:
    """(grade, label, below_table): the first listed grade met, best first, or the floor when none is."""
    worse, better = max(shares), min(shares)
    for limit in limits:
        extra = leeway.points if leeway is not None and limit.grade >= leeway.min_grade else 0.0
        if worse <= limit.max_share + extra and better <= limit.best_axis_limit + extra:
            return _number(limit.grade), limit.label, False
    return _floor(table, limits)


def _floor(table: GradeTable, limits: list[Limit]) -> tuple[int | float, str | None, bool]:
    if table.floor is None:
        lowest = limits[-1]  # limits are best first (checked on load)
        return _number(lowest.grade), lowest.label, True
    listed = next((limit.label for limit in limits if limit.grade == table.floor), None)
    return _number(table.floor), table.floor_label or listed, True


def _number(grade: float) -> int | float:
    """10 rather than 10.0 in the JSON, 9.5 as it is."""
    return int(grade) if float(grade).is_integer() else grade
