"""The catalog: migrations, SQLite's settings, and an incremental sync over folders written by the real writers.

The tests that take the `catalog` fixture run on SQLite, and on PostgreSQL too where $CARDMETRY_TEST_POSTGRES_URL
names a database to use (for instance postgresql+psycopg://cardmetry:cardmetry@127.0.0.1/cardmetry, with
`pip install -e '.[postgres]'`): each test gets a schema of its own there, dropped afterwards."""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from cardmetry.store.database import DATABASE_URL_ENV, MIGRATIONS, Catalog, SyncCounts, metadata, upgrade
from cardmetry.store.datasets import import_dataset
from cardmetry.store.home import Home
from cardmetry.training.events import EventLog
from cardmetry.training.runs import RunDir, summarise
from tests.orchestrator.fakes import new_run
from tests.store.test_datasets import small_dataset

TABLES = {"dataset_versions", "images", "dataset_images", "runs", "run_events", "models", "active_models",
          "measurements", "alembic_version"}


@pytest.fixture
def home(tmp_path: Path) -> Home:
    return Home(tmp_path / "home")


POSTGRES_ENV = "CARDMETRY_TEST_POSTGRES_URL"


@pytest.fixture(params=["sqlite", "postgresql"])
def catalog(request: pytest.FixtureRequest, home: Home, monkeypatch: pytest.MonkeyPatch) -> Iterator[Catalog]:
    monkeypatch.delenv(DATABASE_URL_ENV, raising=False)
    if request.param == "sqlite":
        yield Catalog.open(home)
        return
    server = os.environ.get(POSTGRES_ENV)
    if not server:
        pytest.skip(f"PostgreSQL: set {POSTGRES_ENV} to a database the tests may use")
    schema = f"test_{secrets.token_hex(6)}"
    admin = sa.create_engine(server)
    with admin.begin() as db:
        db.exec_driver_sql(f"CREATE SCHEMA {schema}")
    catalog = Catalog.open(home, f"{server}{'&' if '?' in server else '?'}options=-csearch_path%3D{schema}")
    yield catalog
    catalog.close()
    with admin.begin() as db:
        db.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
    admin.dispose()


def reopened(catalog: Catalog) -> Catalog:
    """The same database opened again, as a restarted server opens it."""
    return Catalog.open(catalog.home, catalog.engine.url.render_as_string(hide_password=False))


def epoch_metrics(epoch: int, border: float) -> dict[str, float]:
    return {"map50_mask": 0.5 + epoch / 10, "precision_mask": 0.6, "recall_mask": 0.7 + epoch / 100,
            "border_error_mm": border, "fitness": epoch / 10}


def trained_run(home: Home, run_id: str, terminal: str | None = "succeeded", role: str = "outer",
                borders: tuple[float, ...] = (0.3, 0.1)) -> tuple[RunDir, EventLog]:
    """A run whose log the real EventLog writes: each epoch better than the last, then `terminal` (None: still
    running), with a best checkpoint on disk."""
    run = new_run(home, run_id, role=role)
    log = EventLog(run.events)
    log.emit("run_started", run=run_id, dataset_version="0123456789ab")
    for epoch, border in enumerate(borders, start=1):
        log.emit("epoch_end", epoch=epoch, epochs=len(borders), metrics=epoch_metrics(epoch, border),
                 best_metric=epoch / 10, best_epoch=epoch)
    run.checkpoints.mkdir(parents=True, exist_ok=True)
    run.best.write_bytes(b"weights")
    if terminal is not None:
        log.emit(terminal)
    return run, log


def write_measurement(home: Home, measurement_id: str, sides: dict[str, dict[str, Any]]) -> Path:
    """A grading folder as the grading pages write it: each side's CONTRACT.md document, then meta.json."""
    folder = home.root / "measurements" / measurement_id
    folder.mkdir(parents=True)
    for side, document in sides.items():
        (folder / f"{side}.json").write_text(json.dumps(document))
    meta = {"id": measurement_id, "created": 1_700_000_000.0, "sides": list(sides), "name": "card.jpg",
            "sha256": {side: f"{index:064x}" for index, side in enumerate(sides)}, "outer_model": None,
            "graphic_model": None}
    (folder / "meta.json").write_text(json.dumps(meta))
    return folder


def measured(left: float, status: str = "ok") -> dict[str, Any]:
    if status != "ok":
        return {"schema": "cardmetry.measurement/v1", "status": status, "reason": "no outer edge found"}
    return {"schema": "cardmetry.measurement/v1", "status": "ok", "centering": {
        "left_right": [left, 100 - left], "top_bottom": [47.0, 53.0],
        "worst_left_right": {"ratio": [left - 1, 101 - left], "station": 7},
        "worst_top_bottom": {"ratio": [44.0, 56.0], "station": 1}}}


def test_migrations_make_the_schema_on_a_fresh_file_in_wal_mode(home: Home, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(DATABASE_URL_ENV, raising=False)
    catalog = Catalog.open(home)
    assert (home.root / "cardmetry.db").is_file()
    with catalog.engine.connect() as db:
        assert set(sa.inspect(db).get_table_names()) == TABLES
        assert db.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert db.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert db.exec_driver_sql("SELECT version_num FROM alembic_version").scalar() == newest_revision()
    reopened(catalog).close()  # opening again upgrades nothing and loses nothing


def newest_revision() -> str:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    head = ScriptDirectory.from_config(config).get_current_head()
    assert head is not None
    return head


def test_the_migrated_schema_is_the_one_the_code_defines(catalog: Catalog) -> None:
    # Autogenerate's view: every table, column, type, index and foreign key the migrations made, against `metadata`.
    with catalog.engine.connect() as db:
        assert compare_metadata(MigrationContext.configure(db), metadata) == []


def test_the_upgrade_from_the_first_schema_keeps_the_choice_and_drops_batch_events(tmp_path: Path) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'old.db'}")
    upgrade(engine, "0001")
    with engine.begin() as db:
        db.exec_driver_sql("INSERT INTO runs VALUES ('r1', 'outer', 'toy', '', 'tiny', '{}', 'succeeded', 1, 1, 0.5, "
                           "'{}', NULL, 1.0, 2.0, 3, 300)")
        db.exec_driver_sql("INSERT INTO models VALUES ('r1', 'outer', 'best.pt', '{}', NULL, NULL, NULL, NULL)")
        db.exec_driver_sql("INSERT INTO active_models VALUES ('outer', 'r1', 5.0)")
        for seq, kind in enumerate(("run_started", "batch", "heartbeat", "epoch_end"), start=1):
            db.exec_driver_sql(f"INSERT INTO run_events VALUES ('r1', {seq}, '{kind}', 1.0, '{{}}')")
    upgrade(engine)
    with engine.connect() as db:
        assert db.exec_driver_sql("SELECT role, run_id, chosen FROM active_models").all() == [("outer", "r1", 5.0)]
        assert db.exec_driver_sql("SELECT type FROM run_events ORDER BY seq").scalars().all() == [
            "run_started", "epoch_end"]
    engine.dispose()


def test_a_sync_indexes_runs_and_their_events_like_the_run_summary(home: Home, catalog: Catalog) -> None:
    run, _ = trained_run(home, "r1")
    counts = catalog.sync()
    assert (counts.runs, counts.events) == (1, 4)
    [row] = catalog.runs()
    summary = summarise(run)
    assert (row["state"], row["epochs_finished"], row["best_metric"], row["border_error_mm"]) == (
        summary.state, summary.epoch, summary.best_metric, summary.border_error_mm)
    assert row["dataset"] == "tiny@0123456789ab"  # the config's data, pinned to the version the run used
    assert [e["type"] for e in catalog.run_events("r1")] == ["run_started", "epoch_end", "epoch_end", "succeeded"]
    assert catalog.run_events("r1", after=3)[0]["seq"] == 4


def test_a_second_sync_adds_only_what_is_new(home: Home, catalog: Catalog) -> None:
    _, log = trained_run(home, "r1", terminal=None)
    assert catalog.sync().events == 3
    assert catalog.sync().events == 0 and catalog.sync().runs == 0  # nothing changed: nothing read again
    log.emit("stopped")
    again = catalog.sync()
    assert (again.runs, again.events) == (1, 1)
    assert [e["seq"] for e in catalog.run_events("r1")] == [1, 2, 3, 4]
    assert catalog.runs()[0]["state"] == "stopped"


def test_batch_and_heartbeat_events_are_folded_in_but_not_mirrored(home: Home, catalog: Catalog) -> None:
    run, log = trained_run(home, "r1", terminal=None)
    log.emit("epoch_started", epoch=3, epochs=3)
    for batch in (1, 2):
        log.emit("batch", epoch=3, batch=batch, batches=2, losses={"total": 1.0 / batch})
    log.emit("heartbeat")
    log.emit("epoch_end", epoch=3, epochs=3, metrics=epoch_metrics(3, 0.05), best_metric=0.3, best_epoch=3)
    assert catalog.sync().events == 8  # every new event is read...
    assert [e["type"] for e in catalog.run_events("r1")] == [  # ...and only what a page or query reads is kept
        "run_started", "epoch_end", "epoch_end", "epoch_started", "epoch_end"]
    [row] = catalog.runs()
    assert (row["events_seq"], row["epochs_finished"]) == (8, summarise(run).epoch)


def test_a_damaged_line_is_skipped_as_the_run_summary_skips_it(home: Home, catalog: Catalog) -> None:
    # A damaged line in the middle of a log (a writer killed mid-write on another disk, an edit by hand).
    run, log = trained_run(home, "r1", terminal=None)
    with run.events.open("ab") as stream:
        stream.write(b'{"seq": 4, "time": 1.0, "type": "epo\n')
    log.emit("epoch_end", epoch=3, epochs=3, metrics=epoch_metrics(3, 0.05), best_metric=0.3, best_epoch=3)
    log.emit("succeeded")
    catalog.sync()
    [row] = catalog.runs()
    summary = summarise(run)
    assert (row["state"], row["epochs_finished"], row["best_metric"], row["border_error_mm"]) == (
        summary.state, summary.epoch, summary.best_metric, summary.border_error_mm) == ("succeeded", 3, 0.3, 0.05)
    assert [m["run_id"] for m in catalog.models()] == ["r1"]
    assert [e["seq"] for e in catalog.run_events("r1")] == [1, 2, 3, 4, 5]  # the log's own numbering goes on


def test_syncing_the_runs_alone_leaves_the_other_folders_for_the_full_sync(home: Home, catalog: Catalog) -> None:
    trained_run(home, "r1")
    write_measurement(home, "20261129T110821123456-1a2b3c4d", {"front": measured(55.0)})
    assert catalog.sync_runs() == SyncCounts(runs=1, events=4)
    assert [r["id"] for r in catalog.runs()] == ["r1"] and catalog.recent_measurements() == []
    assert catalog.sync() == SyncCounts(measurements=1)  # the runs are in step already


def test_a_line_still_being_written_waits_for_its_newline(home: Home, catalog: Catalog) -> None:
    run, _ = trained_run(home, "r1", terminal=None)
    with run.events.open("a") as stream:
        stream.write('{"seq": 4, "time": 1.0, "type": "succ')  # a worker in the middle of a write
    assert catalog.sync().events == 3
    with run.events.open("a") as stream:
        stream.write('eeded"}\n')
    assert catalog.sync().events == 1 and catalog.runs()[0]["state"] == "succeeded"


@pytest.mark.parametrize(
    ("terminal", "is_model"),
    [
        ("succeeded", True),  # finished: its best epoch is the model
        ("stopped", True),  # stopped by hand: its best weights are kept
        ("failed", False),  # crashed
        ("cancelled", False),  # cancelled: keeps nothing
        (None, False),  # still training
    ],
)
def test_which_runs_are_models(home: Home, catalog: Catalog, terminal: str | None, is_model: bool) -> None:
    trained_run(home, "r1", terminal=terminal)
    catalog.sync()
    assert [m["run_id"] for m in catalog.models("outer")] == (["r1"] if is_model else [])


def test_a_model_carries_the_metrics_of_its_best_epoch(home: Home, catalog: Catalog) -> None:
    run, log = trained_run(home, "r1", terminal=None, borders=(0.2, 0.1))
    log.emit("epoch_end", epoch=3, epochs=3, metrics=epoch_metrics(3, 0.5), best_metric=0.2, best_epoch=2)
    log.emit("succeeded")
    catalog.sync()
    model = catalog.model("r1")
    assert model is not None
    assert model["metrics"] == epoch_metrics(2, 0.1)  # epoch 3 was worse: epoch 2's weights are the model
    assert (model["map50"], model["border_error_mm"], model["epochs_finished"]) == (0.7, 0.1, 3)
    assert model["checkpoint"] == run.best.name


def test_models_are_listed_per_role_newest_first(home: Home, catalog: Catalog) -> None:
    for run_id, role in (("a-outer", "outer"), ("b-graphic", "graphic"), ("c-both", "both"), ("d-outer", "outer")):
        trained_run(home, run_id, role=role)
    catalog.sync()
    assert [m["run_id"] for m in catalog.models("outer")] == ["d-outer", "c-both", "a-outer"]
    assert [m["run_id"] for m in catalog.models("graphic")] == ["c-both", "b-graphic"]


def test_compare_says_which_is_better_by_each_metrics_direction(home: Home, catalog: Catalog) -> None:
    trained_run(home, "sharp", borders=(0.3, 0.05))
    trained_run(home, "blunt", borders=(0.3, 0.2))
    catalog.sync()
    rows = {row["metric"]: row for row in catalog.compare("sharp", "blunt")["metrics"]}
    assert rows["border_error_mm"]["better"] == "a"  # lower is better
    assert rows["map50_mask"]["better"] is None  # the same in both
    swapped = {row["metric"]: row for row in catalog.compare("blunt", "sharp")["metrics"]}
    assert swapped["border_error_mm"]["better"] == "b"
    with pytest.raises(KeyError, match="'nothing' is not a model"):
        catalog.compare("sharp", "nothing")


def test_the_active_model_is_chosen_cleared_and_kept(home: Home, catalog: Catalog) -> None:
    trained_run(home, "outer-1")
    trained_run(home, "both-1", role="both")
    catalog.sync()
    assert catalog.active_models() == {"outer": None, "graphic": None}
    catalog.set_active_model("outer", "outer-1")
    catalog.set_active_model("graphic", "both-1")  # a run trained for both roles serves either
    assert reopened(catalog).active_models() == {"outer": "outer-1", "graphic": "both-1"}  # only the db holds it
    catalog.set_active_model("outer", None)
    assert catalog.active_models() == {"outer": None, "graphic": "both-1"}


@pytest.mark.parametrize(
    ("role", "run_id", "why"),
    [
        ("graphic", "outer-1", "is a outer model, not a graphic one"),  # the wrong role
        ("outer", "nobody", "no run 'nobody'"),  # an unknown run
        ("outer", "running-1", "is not a model: it is running"),  # a run still training
        ("both", "outer-1", "unknown role 'both'"),  # measuring asks for outer or graphic, never both
    ],
)
def test_set_active_model_refuses_what_is_not_a_model_of_that_role(
    home: Home, catalog: Catalog, role: str, run_id: str, why: str
) -> None:
    trained_run(home, "outer-1")
    trained_run(home, "running-1", terminal=None)
    catalog.sync()
    with pytest.raises(ValueError, match=why):
        catalog.set_active_model(role, run_id)
    assert catalog.active_models() == {"outer": None, "graphic": None}


@pytest.mark.parametrize(
    ("ending", "still_a_model"),
    [
        ("succeeded", True),  # the resumed run finished: its (new) best weights are the model again
        ("stopped", True),  # stopped again by hand, its best weights kept
        ("failed", False),  # the new stretch crashed: no longer a model, but the user's choice stays theirs
    ],
)
def test_resuming_a_chosen_model_keeps_the_choice(home: Home, catalog: Catalog, ending: str,
                                                   still_a_model: bool) -> None:
    _, log = trained_run(home, "r1", terminal="stopped")
    catalog.sync()
    catalog.set_active_model("outer", "r1")
    log.reopen()  # resumed: a new stretch of the same log
    log.emit("run_started", run="r1", resumed=True)
    log.emit("epoch_end", epoch=3, epochs=3, metrics=epoch_metrics(3, 0.05), best_metric=0.3, best_epoch=3)
    catalog.sync()
    # Training on: still the model it was (its best.pt is still there), with the numbers it had ended with.
    model = catalog.model("r1")
    assert model is not None and model["state"] == "running" and model["border_error_mm"] == 0.1
    assert catalog.active_models()["outer"] == "r1"
    log.emit(ending)
    catalog.sync()
    assert catalog.active_models()["outer"] == "r1"
    model = catalog.model("r1")
    assert (model is not None) == still_a_model
    if model is not None:
        assert (model["state"], model["border_error_mm"]) == (ending, 0.05)


def test_a_replaced_log_is_read_again_and_keeps_the_choice(home: Home, catalog: Catalog) -> None:
    run, _ = trained_run(home, "r1", borders=(0.3, 0.2, 0.1))
    catalog.sync()
    catalog.set_active_model("outer", "r1")
    lines = run.events.read_bytes().splitlines(keepends=True)
    run.events.write_bytes(b"".join([*lines[:2], lines[-1]]))  # shorter than what was read: a log written anew
    catalog.sync()
    assert catalog.runs()[0]["epochs_finished"] == summarise(run).epoch == 1
    assert [e["seq"] for e in catalog.run_events("r1")] == [1, 2, 5]
    assert catalog.active_models()["outer"] == "r1"


def test_a_run_folder_that_goes_away_takes_its_model_and_the_choice_with_it(home: Home, catalog: Catalog) -> None:
    run, _ = trained_run(home, "r1")
    catalog.sync()
    catalog.set_active_model("outer", "r1")
    for path in sorted(run.path.rglob("*"), reverse=True):
        path.rmdir() if path.is_dir() else path.unlink()
    run.path.rmdir()
    assert catalog.sync().removed == 1
    assert catalog.runs() == [] and catalog.run_events("r1") == []
    assert catalog.active_models()["outer"] is None


def test_datasets_are_indexed_once_with_their_images(home: Home, catalog: Catalog, tmp_path: Path) -> None:
    imported = import_dataset(home, "cards", small_dataset(tmp_path / "src"), tmp_path / "src", [])
    assert catalog.sync().datasets == 1
    assert catalog.sync().datasets == 0  # a version never changes: read once
    [version] = catalog.datasets()
    assert (version["name"], version["version"], version["images"], version["trainable"]) == (
        "cards", imported.version, 2, True)
    with catalog.engine.connect() as db:
        held = db.exec_driver_sql("SELECT image_name, width FROM dataset_images JOIN images USING (sha256)").all()
    assert sorted(held) == [("images/a.png", 32), ("images/b.png", 32)]  # a_again.png is a.png's bytes


def test_measurements_are_indexed_per_side(home: Home, catalog: Catalog) -> None:
    write_measurement(home, "20261129T110821123456-1a2b3c4d", {"front": measured(55.0), "back": measured(0, "refused")})
    assert catalog.sync().measurements == 2
    assert catalog.sync().measurements == 0
    back, front = catalog.recent_measurements()
    assert (front["side"], front["status"], front["left_share"], front["worst_left_share"]) == ("front", "ok", 55, 54)
    assert front["worst_left_right_station"] == 7 and front["sha256"] == f"{0:064x}"
    assert (back["status"], back["reason"], back["left_share"]) == ("refused", "no outer edge found", None)


def test_one_measurement_is_read_with_its_documents(home: Home, catalog: Catalog) -> None:
    measurement_id = "20261129T110821123456-1a2b3c4d"
    write_measurement(home, measurement_id, {"front": measured(55.0), "back": measured(48.0)})
    write_measurement(home, "20261129T110822123456-00000000", {"front": measured(50.0)})
    catalog.sync()
    sides = catalog.measurement(measurement_id)
    assert [(side["side"], side["document"]) for side in sides] == [("back", measured(48.0)),
                                                                     ("front", measured(55.0))]
    assert catalog.measurement("20261129T000000000000-ffffffff") == []


def test_runs_are_counted_by_state(home: Home, catalog: Catalog) -> None:
    for run_id, terminal in (("a", "succeeded"), ("b", "succeeded"), ("c", "failed"), ("d", None)):
        trained_run(home, run_id, terminal=terminal)
    catalog.sync()
    assert catalog.run_states() == {"succeeded": 2, "failed": 1, "running": 1}


@pytest.mark.parametrize(
    "damage",
    [
        lambda folder: (folder / "meta.json").unlink(),  # a grading still being written (meta.json comes last)
        lambda folder: (folder / "meta.json").write_text("{not json"),  # a broken meta.json
        lambda folder: (folder / "meta.json").write_text('{"sides": "front"}'),  # a meta.json missing its fields
    ],
)
def test_a_damaged_measurement_folder_is_skipped(home: Home, catalog: Catalog, damage: Any) -> None:
    damage(write_measurement(home, "20261129T110821123456-00000000", {"front": measured(50.0)}))
    write_measurement(home, "20261129T110822123456-11111111", {"front": measured(52.0)})
    catalog.sync()
    assert [m["id"] for m in catalog.recent_measurements()] == ["20261129T110822123456-11111111"]


def test_a_damaged_run_or_manifest_does_not_hide_the_others(home: Home, catalog: Catalog) -> None:
    trained_run(home, "good")
    broken = home.runs / "broken"
    broken.mkdir(parents=True)
    (broken / "config.json").write_text("{not json")
    (home.datasets / "cards" / "0123456789ab").mkdir(parents=True)
    (home.datasets / "cards" / "0123456789ab" / "manifest.json").write_text("[]")
    counts = catalog.sync()
    assert (counts.runs, counts.datasets) == (1, 0)
    assert [r["id"] for r in catalog.runs()] == ["good"]


@pytest.mark.parametrize("from_env", [False, True])
def test_another_sqlite_url_works_given_or_from_the_environment(
    home: Home, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, from_env: bool
) -> None:
    url = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    if from_env:
        monkeypatch.setenv(DATABASE_URL_ENV, url)
    catalog = Catalog.open(home, None if from_env else url)
    trained_run(home, "r1")
    catalog.sync()
    catalog.set_active_model("outer", "r1")
    assert (tmp_path / "elsewhere.db").is_file() and not (home.root / "cardmetry.db").exists()
    assert Catalog.open(home, url).active_models()["outer"] == "r1"
