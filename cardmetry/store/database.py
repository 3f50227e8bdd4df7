"""The catalog: a database index over CARDMETRY_HOME's folders, plus the one thing only it holds, which model
measuring uses for each role.

The folders stay the source of truth (a worker writes its run's event log; a restarted server rebuilds its state
from the logs). `Catalog.sync` brings the index in step with them, incrementally: each run's event log is read on
from the byte where the last sync stopped, a dataset version (immutable) is read once, a measurement folder again
only when one of its files changed. It is cheap when nothing changed, so the server calls it every few seconds.

SQLite in WAL mode by default (readers never wait for the writer), any SQLAlchemy URL (PostgreSQL) by
configuration: `Catalog.open(home, url)`, else $CARDMETRY_DATABASE_URL, else sqlite:///HOME/cardmetry.db. The schema
is made and upgraded by the Alembic migrations shipped in `cardmetry/store/migrations/`; `metadata` below is the
same schema, and a test holds the two to each other.

A run's events are read as `cardmetry.training.events` reads them (a damaged line is skipped with a warning, a
last line without its newline waits for it), so the runs table always says what `summarise` says. Only the events
a page or query needs are mirrored into run_events: batch and heartbeat events, nearly all of a long run's log,
are folded into the run's row and left in the log.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from cardmetry.store.datasets import load_version
from cardmetry.store.home import Home
from cardmetry.store.models import MODEL_ROLES
from cardmetry.training.events import TERMINAL, parse_line
from cardmetry.training.runs import RunDir, RunProgress, check_run_id

DATABASE_URL_ENV = "CARDMETRY_DATABASE_URL"
MIGRATIONS = Path(__file__).parent / "migrations"
MODEL_STATES = ("succeeded", "stopped")  # a run that ended with its best weights kept
SIDES = ("front", "back")
SQLITE_BUSY_MS = 5000
# The events run_events mirrors: what a page or query reads back. Batch and heartbeat events are not among them.
MIRRORED_EVENTS = frozenset(("run_started", "epoch_started", "epoch_end", "checkpoint", "log", *TERMINAL))
_MEASUREMENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")

metadata = sa.MetaData()
dataset_versions = sa.Table(
    "dataset_versions", metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("version", sa.String(12), primary_key=True),
    sa.Column("images", sa.Integer, nullable=False),
    sa.Column("trainable", sa.Boolean, nullable=False),
    sa.Column("problems", sa.Integer, nullable=False),
    sa.Column("source_format", sa.String(32), nullable=False),
    sa.Column("classes", sa.JSON, nullable=False),
    sa.Column("validation", sa.JSON, nullable=False),
    sa.Column("created", sa.Float, nullable=False),
)
images = sa.Table(
    "images", metadata,
    sa.Column("sha256", sa.String(64), primary_key=True),
    sa.Column("width", sa.Integer, nullable=False),
    sa.Column("height", sa.Integer, nullable=False),
    sa.Column("file", sa.String(255), nullable=False),
)
dataset_images = sa.Table(
    "dataset_images", metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("version", sa.String(12), primary_key=True),
    sa.Column("sha256", sa.String(64), sa.ForeignKey("images.sha256"), primary_key=True, index=True),
    sa.Column("image_name", sa.String(1024), nullable=False),
    sa.ForeignKeyConstraint(["name", "version"], ["dataset_versions.name", "dataset_versions.version"],
                            ondelete="CASCADE"),
)
runs = sa.Table(
    "runs", metadata,
    sa.Column("id", sa.String(96), primary_key=True),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("backend", sa.String(64), nullable=False),
    sa.Column("variant", sa.String(64), nullable=False),
    sa.Column("dataset", sa.String(255), nullable=False),
    sa.Column("config", sa.JSON, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("epochs_finished", sa.Integer, nullable=False),
    sa.Column("best_epoch", sa.Integer),
    sa.Column("best_metric", sa.Float),
    sa.Column("best_metrics", sa.JSON),
    sa.Column("border_error_mm", sa.Float),
    sa.Column("created", sa.Float, nullable=False),
    sa.Column("updated", sa.Float, nullable=False),
    sa.Column("events_seq", sa.Integer, nullable=False),
    sa.Column("events_offset", sa.Integer, nullable=False),
)
run_events = sa.Table(
    "run_events", metadata,
    sa.Column("run_id", sa.String(96), sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("seq", sa.Integer, primary_key=True),
    sa.Column("type", sa.String(32), nullable=False),
    sa.Column("time", sa.Float, nullable=False),
    sa.Column("payload", sa.JSON, nullable=False),
)
models = sa.Table(
    "models", metadata,
    sa.Column("run_id", sa.String(96), sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("role", sa.String(16), nullable=False, index=True),
    sa.Column("checkpoint", sa.String(1024), nullable=False),
    sa.Column("metrics", sa.JSON, nullable=False),
    sa.Column("map50", sa.Float),
    sa.Column("precision", sa.Float),
    sa.Column("recall", sa.Float),
    sa.Column("border_error_mm", sa.Float),
)
# The user's choice, which only the database holds: it names a run, not a model row, so a resumed model (its row
# changes, or goes while it trains on) keeps being the choice; it goes only with its run's folder.
active_models = sa.Table(
    "active_models", metadata,
    sa.Column("role", sa.String(16), primary_key=True),
    sa.Column("run_id", sa.String(96), sa.ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
    sa.Column("chosen", sa.Float, nullable=False),
)
measurements = sa.Table(
    "measurements", metadata,
    sa.Column("id", sa.String(96), primary_key=True),
    sa.Column("side", sa.String(8), primary_key=True),
    sa.Column("created", sa.Float, nullable=False, index=True),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("sha256", sa.String(64)),
    sa.Column("outer_model", sa.String(96)),
    sa.Column("graphic_model", sa.String(96)),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("reason", sa.Text),
    sa.Column("left_share", sa.Float),
    sa.Column("top_share", sa.Float),
    sa.Column("worst_left_share", sa.Float),
    sa.Column("worst_left_right_station", sa.Integer),
    sa.Column("worst_top_share", sa.Float),
    sa.Column("worst_top_bottom_station", sa.Integer),
    sa.Column("document", sa.JSON, nullable=False),
    sa.Column("source_mtime", sa.Float, nullable=False),
)

# A model's headline numbers: the mask metrics where the backend reports them, its box metrics otherwise.
HEADLINE_METRICS = {
    "map50": ("map50_mask", "map50_box"),
    "precision": ("precision_mask", "precision_box"),
    "recall": ("recall_mask", "recall_box"),
    "border_error_mm": ("border_error_mm",),
}
# Which way is better for each metric compared (True: higher); metrics not named here are shown, not judged.
HIGHER_IS_BETTER = {
    "fitness": True, "map50_mask": True, "map50_95_mask": True, "map50_box": True, "map50_95_box": True,
    "precision_mask": True, "recall_mask": True, "precision_box": True, "recall_box": True,
    "border_error_mm": False, "border_refused": False, "corner_error_px": False,
}


def database_url(home: Home, url: str | None = None) -> str:
    """The URL given, else $CARDMETRY_DATABASE_URL, else the SQLite file in the home."""
    return url or os.environ.get(DATABASE_URL_ENV) or f"sqlite:///{home.root / 'cardmetry.db'}"


def upgrade(engine: sa.Engine, revision: str = "head") -> None:
    """Bring the schema to `revision`, by default the newest migration (a fresh database gets all of them)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def _engine(url: str) -> sa.Engine:
    engine = sa.create_engine(url)
    if engine.dialect.name == "sqlite":
        sa.event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    """WAL: the pages read while the sync writes; foreign keys: SQLite ignores them unless asked, per connection."""
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_MS}")
    cursor.close()


@dataclass(frozen=True)
class SyncCounts:
    """What one sync added or changed (zero everywhere: nothing had changed)."""

    datasets: int = 0
    runs: int = 0
    events: int = 0  # new events read from the logs (batch and heartbeat ones among them, though not mirrored)
    measurements: int = 0
    removed: int = 0


class Catalog:
    def __init__(self, home: Home, engine: sa.Engine) -> None:
        self.home, self.engine = home, engine
        self._sync_lock = threading.Lock()  # the background sync and a request's sync never interleave

    @classmethod
    def open(cls, home: Home, url: str | None = None) -> Catalog:
        """The catalog at `url` (see `database_url`), its schema upgraded to the newest migration."""
        resolved = database_url(home, url)
        if resolved.startswith("sqlite:///"):
            home.root.mkdir(parents=True, exist_ok=True)
        engine = _engine(resolved)
        upgrade(engine)
        return cls(home, engine)

    def close(self) -> None:
        self.engine.dispose()

    # ---- keeping in step with the folders ----

    def sync(self) -> SyncCounts:
        """Index what changed in the home's folders since the last sync; idempotent."""
        with self._sync_lock:
            datasets_added, datasets_removed = self._sync_datasets()
            runs_changed, events_added, runs_removed = self._sync_runs()
            measured, measurements_removed = self._sync_measurements()
        return SyncCounts(datasets_added, runs_changed, events_added, measured,
                          datasets_removed + runs_removed + measurements_removed)

    def sync_runs(self) -> SyncCounts:
        """Index only what the runs' folders gained: what a list of runs needs, without a look at every dataset
        and measurement folder."""
        with self._sync_lock:
            runs_changed, events_added, runs_removed = self._sync_runs()
        return SyncCounts(runs=runs_changed, events=events_added, removed=runs_removed)

    def _sync_datasets(self) -> tuple[int, int]:
        on_disk = {(m.parent.parent.name, m.parent.name): m for m in self.home.datasets.glob("*/*/manifest.json")}
        with self.engine.begin() as db:
            known = {(r.name, r.version) for r in db.execute(sa.select(dataset_versions.c.name,
                                                                         dataset_versions.c.version))}
            gone = known - on_disk.keys()
            for name, version in gone:
                db.execute(dataset_versions.delete().where(dataset_versions.c.name == name,
                                                           dataset_versions.c.version == version))
        added = 0
        for (name, version), manifest in on_disk.items():
            if (name, version) in known:
                continue
            try:
                added += self._index_dataset(name, version, manifest)
            except sa.exc.IntegrityError:
                continue  # indexed a moment ago by another server sharing the database
        return added, len(gone)

    def _index_dataset(self, name: str, version: str, manifest: Path) -> bool:
        """One version (immutable: read once); False for a manifest that cannot be read, left for the next sync."""
        try:
            _, document = load_version(self.home, name, version)
            validation = document.get("validation") or {}
            entries = {str(e["sha256"]): e for e in document["images"] if _SHA256.match(str(e["sha256"]))}
            row = {
                "name": name, "version": version, "images": len(entries),
                "trainable": bool(validation.get("trainable", True)),
                "problems": len(validation.get("problems", [])),
                "source_format": str(document.get("source_format", "")), "classes": list(document["classes"]),
                "validation": validation, "created": manifest.stat().st_mtime,
            }
        except (OSError, ValueError, KeyError, TypeError):
            return False
        with self.engine.begin() as db:
            stored = {r.sha256 for r in db.execute(sa.select(images.c.sha256).where(images.c.sha256.in_(entries)))}
            fresh = [{"sha256": sha, "width": int(e["width"]), "height": int(e["height"]), "file": str(e["file"])}
                     for sha, e in entries.items() if sha not in stored]
            if fresh:
                db.execute(images.insert(), fresh)
            db.execute(dataset_versions.insert(), [row])
            if entries:
                db.execute(dataset_images.insert(), [
                    {"name": name, "version": version, "sha256": sha, "image_name": str(e["name"])}
                    for sha, e in entries.items()
                ])
        return True

    def _sync_runs(self) -> tuple[int, int, int]:
        on_disk = {}
        for config_file in self.home.runs.glob("*/config.json"):
            try:
                on_disk[check_run_id(config_file.parent.name)] = RunDir(config_file.parent)
            except ValueError:
                continue  # not a run folder's name: never a run
        with self.engine.begin() as db:
            known = {r.id: r for r in db.execute(sa.select(runs.c.id, runs.c.events_offset))}
            gone = known.keys() - on_disk.keys()
            if gone:
                db.execute(runs.delete().where(runs.c.id.in_(gone)))
        changed = events_added = 0
        for run_id, run in on_disk.items():
            size = _size(run.events)
            row = known.get(run_id)
            if row is not None and row.events_offset == size:
                continue  # nothing written since the last sync
            try:
                added = self._index_run(run, reset=row is not None and size < row.events_offset)
            except (OSError, ValueError, KeyError, TypeError, sa.exc.IntegrityError):
                # a damaged run folder does not hide the others, and another server sharing the database that
                # indexed this run a moment earlier is no error: either way the next sync reads it again
                continue
            events_added += added
            changed += row is None or added > 0  # a line still being written changes the size, not the run
        return changed, events_added, len(gone)

    def _index_run(self, run: RunDir, reset: bool) -> int:
        """Mirror a run's new events and fold them into its row; `reset`: the log is shorter than what was read
        (replaced), so it is read again from the start. The row stays in place even then: the user's choice of
        it as a model hangs on it."""
        with self.engine.begin() as db:
            stored = db.execute(sa.select(runs).where(runs.c.id == run.id)).mappings().first()
            if reset:
                db.execute(run_events.delete().where(run_events.c.run_id == run.id))
            row = dict(stored) if stored and not reset else _new_run_row(run)
            events, offset = _read_from(run.events, row["events_offset"])
            events = [e for e in events if e["seq"] > row["events_seq"]]
            _fold(row, events)
            row["events_offset"] = offset
            row["updated"] = _mtime(run.events) or row["created"]
            if stored:
                db.execute(runs.update().where(runs.c.id == run.id).values(**row))
            else:
                db.execute(runs.insert(), [row])
            mirrored = [_event_row(run.id, e) for e in events if e["type"] in MIRRORED_EVENTS]
            if mirrored:
                db.execute(run_events.insert(), mirrored)
            self._index_model(db, run, row)
        return len(events)

    def _index_model(self, db: sa.Connection, run: RunDir, row: dict[str, Any]) -> None:
        """A run that ended with its best weights kept is a model version of its role. A model that was resumed
        stays one while its new stretch runs (its best.pt is still there, and measuring may go on using it), with
        the numbers it ended with, until the stretch ends: as a model again, or not (failed, cancelled)."""
        is_model = row["state"] in MODEL_STATES and run.best.is_file()
        existing = db.execute(sa.select(models.c.run_id).where(models.c.run_id == run.id)).first() is not None
        if not is_model:
            training_on = row["state"] == "running" and run.best.is_file()
            if existing and not training_on:
                db.execute(models.delete().where(models.c.run_id == run.id))
            return
        metrics = row["best_metrics"] or {}
        values = {"role": row["role"], "checkpoint": str(run.best), "metrics": metrics,
                  **{column: _first_number(metrics, keys) for column, keys in HEADLINE_METRICS.items()}}
        if existing:
            db.execute(models.update().where(models.c.run_id == run.id).values(**values))
        else:
            db.execute(models.insert(), [{"run_id": run.id, **values}])

    def _sync_measurements(self) -> tuple[int, int]:
        folders = {f.name: f for f in (self.home.root / "measurements").glob("*") if _MEASUREMENT_ID.match(f.name)}
        with self.engine.begin() as db:
            signatures = sa.select(measurements.c.id, sa.func.max(measurements.c.source_mtime))
            known = {r[0]: r[1] for r in db.execute(signatures.group_by(measurements.c.id))}
            gone = known.keys() - folders.keys()
            if gone:
                db.execute(measurements.delete().where(measurements.c.id.in_(gone)))
        indexed = 0
        for measurement_id, folder in folders.items():
            signature = max((_mtime(p) or 0.0 for p in _measurement_files(folder)), default=0.0)
            if known.get(measurement_id) == signature:
                continue
            try:
                indexed += self._index_measurement(measurement_id, folder, signature)
            except sa.exc.IntegrityError:
                continue  # indexed a moment ago by another server sharing the database
        return indexed, len(gone)

    def _index_measurement(self, measurement_id: str, folder: Path, signature: float) -> int:
        """One row per side whose document reads; a folder with no readable meta.json is skipped."""
        try:
            meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
            rows = [_measurement_row(measurement_id, meta, side, folder, signature) for side in meta["sides"]
                    if side in SIDES]
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return 0
        rows = [row for row in rows if row is not None]
        with self.engine.begin() as db:
            db.execute(measurements.delete().where(measurements.c.id == measurement_id))
            if rows:
                db.execute(measurements.insert(), rows)
        return len(rows)

    # ---- what the pages ask ----

    def models(self, role: str | None = None) -> list[dict[str, Any]]:
        """Model versions, newest first; of one role (which includes runs trained for both) when given."""
        query = _model_query().order_by(runs.c.created.desc(), runs.c.id.desc())
        if role is not None:
            query = query.where(models.c.role.in_((role, "both")))
        with self.engine.connect() as db:
            return [_model_json(r) for r in db.execute(query).mappings()]

    def model(self, run_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as db:
            row = db.execute(_model_query().where(models.c.run_id == run_id)).mappings().first()
        return _model_json(row) if row else None

    def compare(self, a: str, b: str) -> dict[str, Any]:
        """Two models' metrics side by side, each with which of them is better (None: equal, unknown, or a
        metric without a direction). KeyError naming a run that is not a model."""
        first, second = self.model(a), self.model(b)
        for run_id, found in ((a, first), (b, second)):
            if found is None:
                raise KeyError(f"run {run_id!r} is not a model (no such run, or it has not ended with a best "
                               f"checkpoint)")
        assert first is not None and second is not None
        names = sorted(first["metrics"].keys() | second["metrics"].keys())
        rows = []
        for name in names:
            left, right = first["metrics"].get(name), second["metrics"].get(name)
            rows.append({"metric": name, "a": left, "b": right, "higher_is_better": HIGHER_IS_BETTER.get(name),
                         "better": _better(name, left, right)})
        return {"a": first, "b": second, "metrics": rows}

    def active_models(self) -> dict[str, str | None]:
        """The run each role's measuring uses; None: the classical detector. The choice is kept while the run is
        not a model (a resumed model whose new stretch failed): measuring then refuses, naming it, rather than
        quietly measuring with something the user did not choose."""
        with self.engine.connect() as db:
            chosen = {r.role: r.run_id for r in db.execute(sa.select(active_models.c.role, active_models.c.run_id))}
        return {role: chosen.get(role) for role in MODEL_ROLES}

    def set_active_model(self, role: str, run_id: str | None) -> None:
        """Choose the model measuring uses for `role`, or None for the classical detector. ValueError naming
        why when `run_id` is not a model of that role."""
        if role not in MODEL_ROLES:
            raise ValueError(f"unknown role {role!r}: one of {', '.join(MODEL_ROLES)}")
        with self.engine.begin() as db:
            if run_id is None:
                db.execute(active_models.delete().where(active_models.c.role == role))
                return
            self._check_model_of(db, role, run_id)
            db.execute(active_models.delete().where(active_models.c.role == role))
            db.execute(active_models.insert(), [{"role": role, "run_id": run_id, "chosen": time.time()}])

    @staticmethod
    def _check_model_of(db: sa.Connection, role: str, run_id: str) -> None:
        run = db.execute(sa.select(runs.c.role, runs.c.state).where(runs.c.id == run_id)).first()
        if run is None:
            raise ValueError(f"no run {run_id!r}")
        model = db.execute(sa.select(models.c.role).where(models.c.run_id == run_id)).first()
        if model is None:
            raise ValueError(f"run {run_id!r} is not a model: it is {run.state}, and a model is a run that "
                             f"succeeded or was stopped with a best checkpoint")
        if model.role not in (role, "both"):
            raise ValueError(f"run {run_id!r} is a {model.role} model, not a {role} one")

    def recent_measurements(self, limit: int = 50) -> list[dict[str, Any]]:
        """The newest measured sides, newest first, without their documents."""
        columns = [c for c in measurements.c if c.name not in ("document", "source_mtime")]
        query = sa.select(*columns).order_by(measurements.c.created.desc(), measurements.c.id, measurements.c.side)
        with self.engine.connect() as db:
            return [dict(r) for r in db.execute(query.limit(limit)).mappings()]

    def measurement(self, measurement_id: str) -> list[dict[str, Any]]:
        """Each indexed side of one measurement, with its document."""
        query = sa.select(measurements).where(measurements.c.id == measurement_id).order_by(measurements.c.side)
        with self.engine.connect() as db:
            return [dict(r) for r in db.execute(query).mappings()]

    def run_events(self, run_id: str, after: int = 0) -> list[dict[str, Any]]:
        """A run's mirrored events after `after`, as the event log holds them."""
        query = (sa.select(run_events).where(run_events.c.run_id == run_id, run_events.c.seq > after)
                 .order_by(run_events.c.seq))
        with self.engine.connect() as db:
            return [{"seq": r.seq, "time": r.time, "type": r.type, **r.payload} for r in db.execute(query)]

    def runs(self) -> list[dict[str, Any]]:
        """Every indexed run's row, newest first (by when its config was written, as `run_summaries` orders)."""
        query = sa.select(runs).order_by(runs.c.created.desc(), runs.c.id.desc())
        with self.engine.connect() as db:
            return [dict(r) for r in db.execute(query).mappings()]

    def run_states(self) -> dict[str, int]:
        """How many runs are in each state."""
        query = sa.select(runs.c.state, sa.func.count().label("how_many")).group_by(runs.c.state)
        with self.engine.connect() as db:
            return {row["state"]: row["how_many"] for row in db.execute(query).mappings()}

    def datasets(self) -> list[dict[str, Any]]:
        query = sa.select(dataset_versions).order_by(dataset_versions.c.created.desc())
        with self.engine.connect() as db:
            return [dict(r) for r in db.execute(query).mappings()]


# ---- runs ----

def _new_run_row(run: RunDir) -> dict[str, Any]:
    config = run.read_config()
    return {
        "id": run.id, "role": config.role, "backend": config.backend, "variant": config.variant or "",
        "dataset": config.data, "config": config.as_json(), "state": "created", "epochs_finished": 0,
        "best_epoch": None, "best_metric": None, "best_metrics": None, "border_error_mm": None,
        "created": run.config_file.stat().st_mtime, "updated": 0.0, "events_seq": 0, "events_offset": 0,
    }


def _fold(row: dict[str, Any], events: list[dict[str, Any]]) -> None:
    """New events' effect on a run's row: the same fold as `cardmetry.training.runs.summarise`'s over the log."""
    progress = RunProgress(row["state"], row["epochs_finished"], row["best_metric"], row["best_epoch"],
                           row["best_metrics"], row["border_error_mm"], row["variant"])
    for event in events:
        progress.add(event)
        row["events_seq"] = int(event["seq"])
    if progress.dataset_version and "@" not in row["dataset"]:
        row["dataset"] = f"{row['dataset']}@{progress.dataset_version}"[:255]
    row.update(state=progress.state, epochs_finished=progress.epoch, best_metric=progress.best_metric,
               best_epoch=progress.best_epoch, best_metrics=progress.best_metrics,
               border_error_mm=progress.border_error_mm, variant=progress.variant[:64])


def _read_from(path: Path, offset: int) -> tuple[list[dict[str, Any]], int]:
    """The complete events written after byte `offset`, and the offset after the last complete line, read as
    `cardmetry.training.events` reads them: a line still being written waits for its newline, a damaged one is
    skipped (with a warning) and never read again."""
    if not path.exists():
        return [], 0
    with path.open("rb") as stream:
        stream.seek(offset)
        data = stream.read()
    complete = data.rfind(b"\n") + 1
    events, at = [], offset
    for raw in data[:complete].split(b"\n")[:-1]:
        event = parse_line(raw, path, at)
        at += len(raw) + 1
        if event is not None:
            events.append(event)
    return events, offset + complete


def _event_row(run_id: str, event: dict[str, Any]) -> dict[str, Any]:
    """An event as run_events holds it; a time that is not a number (an event written by hand) reads as 0."""
    when = event.get("time")
    return {"run_id": run_id, "seq": event["seq"], "type": event["type"][:32],
            "time": float(when) if isinstance(when, int | float) and not isinstance(when, bool) else 0.0,
            "payload": {k: v for k, v in event.items() if k not in ("seq", "type", "time")}}


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return None


# ---- models ----

def _model_query() -> sa.Select:
    return sa.select(
        models, runs.c.backend, runs.c.variant, runs.c.dataset, runs.c.state, runs.c.epochs_finished,
        runs.c.best_epoch, runs.c.best_metric, runs.c.created, runs.c.updated,
    ).join(runs, runs.c.id == models.c.run_id)


def _model_json(row: Any) -> dict[str, Any]:
    found = dict(row)
    found["checkpoint"] = Path(found["checkpoint"]).name  # the page needs which file, not where the home is
    return found


def _first_number(metrics: dict[str, Any], keys: tuple[str, ...]) -> float | None:
    for key in keys:
        value = metrics.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    return None


def _better(name: str, left: Any, right: Any) -> str | None:
    higher = HIGHER_IS_BETTER.get(name)
    numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (left, right))
    if higher is None or not numbers or left == right:
        return None
    return "a" if (left > right) == higher else "b"


# ---- measurements ----

def _measurement_files(folder: Path) -> Iterator[Path]:
    yield folder / "meta.json"
    for side in SIDES:
        yield folder / f"{side}.json"


def _measurement_row(
    measurement_id: str, meta: dict[str, Any], side: str, folder: Path, signature: float
) -> dict[str, Any] | None:
    """A side's row, or None while its document is missing or unreadable (the next change is read again)."""
    try:
        document = json.loads((folder / f"{side}.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(document, dict):
        return None
    centering = document.get("centering") or {}
    worst_lr = centering.get("worst_left_right") or {}
    worst_tb = centering.get("worst_top_bottom") or {}
    hashes = meta.get("sha256") or {}
    return {
        "id": measurement_id, "side": side, "created": float(meta["created"]), "name": str(meta.get("name", ""))[:255],
        "sha256": hashes.get(side) if isinstance(hashes, dict) else None,
        "outer_model": meta.get("outer_model"), "graphic_model": meta.get("graphic_model"),
        "status": str(document.get("status", "unknown"))[:16], "reason": document.get("reason"),
        "left_share": _share(centering.get("left_right")), "top_share": _share(centering.get("top_bottom")),
        "worst_left_share": _share(worst_lr.get("ratio")), "worst_left_right_station": worst_lr.get("station"),
        "worst_top_share": _share(worst_tb.get("ratio")), "worst_top_bottom_station": worst_tb.get("station"),
        "document": document, "source_mtime": signature,
    }


def _share(pair: Any) -> float | None:
    """The first of a [left, right] (or [top, bottom]) pair of percentages; the second is 100 minus it."""
    if isinstance(pair, list | tuple) and pair and isinstance(pair[0], int | float):
        return float(pair[0])
    return None
