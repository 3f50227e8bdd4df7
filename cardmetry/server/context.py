"""What every part of the app shares: the home, the executor, the metrics, the catalog (the database index over
the home, and which model measuring uses), and how a request's run is found."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import HTTPException

from cardmetry.orchestrator.local import LocalExecutor
from cardmetry.server.metrics import ServerMetrics
from cardmetry.store.database import Catalog
from cardmetry.store.home import Home
from cardmetry.training.runs import RunDir


@dataclass(frozen=True)
class ServerContext:
    home: Home
    executor: LocalExecutor
    metrics: ServerMetrics
    catalog: Catalog

    def run(self, run_id: str) -> RunDir:
        """The run folder a request names; 404 for an id that is not a run (and never a path outside the runs)."""
        try:
            run = RunDir.in_runs(self.home.runs, run_id)
        except ValueError as error:
            raise HTTPException(404, str(error)) from None
        if not run.config_file.is_file():
            raise HTTPException(404, f"no run {run_id!r}")
        return run
