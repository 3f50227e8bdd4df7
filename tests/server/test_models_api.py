"""The Models API and page through FastAPI's test client: versions per role, one model, compare, and the choice of
the model measuring uses."""

from __future__ import annotations

import contextlib
import os
import signal

import pytest
from fastapi.testclient import TestClient

from cardmetry.orchestrator.local import LocalExecutor
from cardmetry.server import app as app_module
from cardmetry.server.app import create_app
from cardmetry.store.database import Catalog
from cardmetry.store.home import Home
from tests.orchestrator.fakes import fake, wait_until
from tests.store.test_database import epoch_metrics, trained_run


@pytest.fixture
def client(home: Home) -> TestClient:
    trained_run(home, "outer-1", borders=(0.3, 0.1))
    trained_run(home, "outer-2", borders=(0.3, 0.05))
    trained_run(home, "graphic-1", role="graphic")
    trained_run(home, "running-1", terminal=None)
    return TestClient(create_app(home, LocalExecutor(home, slots=1, command=fake("succeed", "0.1"))))


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", {"outer-1", "outer-2", "graphic-1"}),  # every model; the run still training is none
        ("?role=outer", {"outer-1", "outer-2"}),
        ("?role=graphic", {"graphic-1"}),
    ],
)
def test_models_are_listed_per_role(client: TestClient, query: str, expected: set[str]) -> None:
    answer = client.get(f"/api/models{query}")
    assert answer.status_code == 200
    assert {m["run_id"] for m in answer.json()} == expected


def test_one_model_has_its_metrics_and_run(client: TestClient) -> None:
    model = client.get("/api/models/outer-2").json()
    summary = (model["role"], model["backend"], model["state"], model["epochs_finished"])
    assert summary == ("outer", "toy", "succeeded", 2)
    assert model["border_error_mm"] == 0.05 and model["metrics"]["border_error_mm"] == 0.05
    assert model["in_use_for"] == []


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/api/models/nobody", 404),  # no such run
        ("/api/models/running-1", 404),  # a run, not (yet) a model
        ("/api/models/..%2Fetc", 404),  # not a run id at all
        ("/api/models?role=both", 422),  # measuring has two roles; "both" is a kind of run, not a role to list
        ("/api/models/compare?a=outer-1&b=nobody", 404),
        ("/api/models/compare?a=outer-1", 422),  # b is missing
    ],
)
def test_what_is_not_a_model_is_refused(client: TestClient, path: str, status: int) -> None:
    answer = client.get(path)
    assert answer.status_code == status and answer.json()["detail"]


def test_compare_puts_each_metric_side_by_side(client: TestClient) -> None:
    answer = client.get("/api/models/compare?a=outer-1&b=outer-2")
    assert answer.status_code == 200
    rows = {row["metric"]: row for row in answer.json()["metrics"]}
    assert (rows["border_error_mm"]["a"], rows["border_error_mm"]["b"]) == (0.1, 0.05)
    assert rows["border_error_mm"]["better"] == "b" and rows["border_error_mm"]["higher_is_better"] is False


def test_choosing_and_clearing_the_model_measuring_uses(client: TestClient, home: Home) -> None:
    assert client.get("/api/models/active").json() == {"outer": None, "graphic": None}
    chosen = client.put("/api/models/active", json={"role": "outer", "run_id": "outer-2"})
    assert chosen.status_code == 200 and chosen.json() == {"outer": "outer-2", "graphic": None}
    assert client.get("/api/models/outer-2").json()["in_use_for"] == ["outer"]
    assert Catalog.open(home).active_models()["outer"] == "outer-2"  # kept in the database
    cleared = client.put("/api/models/active", json={"role": "outer", "run_id": None})
    assert cleared.json() == {"outer": None, "graphic": None}


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"role": "graphic", "run_id": "outer-1"}, 409, "is a outer model, not a graphic one"),  # the wrong role
        ({"role": "outer", "run_id": "nobody"}, 404, "not a model"),  # an unknown run
        ({"role": "outer", "run_id": "running-1"}, 404, "not a model"),  # a run still training
        ({"role": "outer", "run_id": "../x"}, 404, "invalid run id"),  # never a path
        ({"role": "sideways", "run_id": None}, 422, "role"),  # no such role
        ({"role": "outer"}, 422, "run_id"),  # run_id must be said, even when it is null
    ],
)
def test_a_wrong_choice_is_refused_and_changes_nothing(client: TestClient, body: dict, status: int, words: str) -> None:
    client.put("/api/models/active", json={"role": "outer", "run_id": "outer-1"})
    answer = client.put("/api/models/active", json=body)
    assert answer.status_code == status and words in str(answer.json()["detail"])
    assert client.get("/api/models/active").json() == {"outer": "outer-1", "graphic": None}


def test_a_chosen_model_that_is_resumed_stays_chosen(home: Home) -> None:
    _, log = trained_run(home, "stopped-1", terminal="stopped")
    # A worker that never gets going: the test writes the resumed stretch's events itself, as a worker would.
    client = TestClient(create_app(home, LocalExecutor(home, slots=1, command=fake("prepare"))))
    assert client.put("/api/models/active", json={"role": "outer", "run_id": "stopped-1"}).status_code == 200
    assert client.post("/api/runs/stopped-1/resume").status_code == 200
    try:
        log.reopen()
        log.emit("run_started", run="stopped-1", resumed=True)
        log.emit("epoch_end", epoch=3, epochs=3, metrics=epoch_metrics(3, 0.05), best_metric=0.3, best_epoch=3)
        # Training on: the choice stands, and the model is still listed (each list syncs the catalog first).
        assert client.get("/api/models/active").json()["outer"] == "stopped-1"
        listed = {m["run_id"]: m for m in client.get("/api/models").json()}
        assert (listed["stopped-1"]["state"], listed["stopped-1"]["in_use_for"]) == ("running", ["outer"])
        log.emit("succeeded")
        model = client.get("/api/models/stopped-1").json()
        assert (model["state"], model["border_error_mm"], model["in_use_for"]) == ("succeeded", 0.05, ["outer"])
        assert client.get("/api/models/active").json() == {"outer": "stopped-1", "graphic": None}
    finally:
        pid = client.get("/api/runs/stopped-1").json()["worker_pid"]
        if pid:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)


def test_a_run_that_ends_after_the_app_started_becomes_a_model(client: TestClient, home: Home) -> None:
    _, log = trained_run(home, "late-1", terminal=None)
    assert client.get("/api/models/late-1").status_code == 404
    log.emit("succeeded")
    assert client.get("/api/models/late-1").status_code == 200  # each answer syncs first


def test_the_background_sync_keeps_the_catalog_in_step(home: Home, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(app_module, "CATALOG_SYNC_SECONDS", 0.05)
    catalog = Catalog.open(home)
    app = create_app(home, LocalExecutor(home, slots=1, command=fake("succeed", "0.1")), catalog=catalog)
    with TestClient(app):  # the lifespan runs: the sync task starts, and stops when the client closes
        trained_run(home, "r1")
        wait_until(lambda: catalog.model("r1") is not None, timeout=10)


def test_the_page_has_a_table_per_role_and_the_choice(client: TestClient) -> None:
    answer = client.get("/models")
    assert answer.status_code == 200
    for testid in ("models-outer", "models-graphic", "classical-outer", "classical-graphic", "compare",
                   "comparison", "active-outer", "active-graphic"):
        assert f'data-testid="{testid}"' in answer.text
    assert '<script src="/static/models.js"' in answer.text
    assert client.get("/static/models.js").status_code == 200
