"""The choice of model names a run, not a model row: active_models.run_id refers to runs.id, so resuming a model
(its row in models changes or goes while it trains on) no longer deletes the user's choice. And run_events stops
mirroring batch and heartbeat events: the ones stored so far are dropped (the event logs still hold them).

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    _recreate_active_models(refers_to="runs.id")
    op.execute(sa.text("DELETE FROM run_events WHERE type IN ('batch', 'heartbeat')"))


def downgrade() -> None:
    # 0001's choice must name a model row: a choice of a run that is not a model now is dropped
    _recreate_active_models(refers_to="models.run_id")


def _recreate_active_models(refers_to: str) -> None:
    """The table made again with its run_id referring to `refers_to`, the choices kept that still refer to
    something there. A new table rather than an altered constraint: 0001's foreign key has no name to drop by,
    and SQLite alters a constraint only by copying the table anyway."""
    connection = op.get_bind()
    target_table, target_column = refers_to.split(".")
    kept = connection.execute(sa.text(  # the names come from this file, never from outside
        f"SELECT role, run_id, chosen FROM active_models WHERE run_id IN (SELECT {target_column} FROM {target_table})"
    )).mappings().all()
    op.drop_table("active_models")
    table = op.create_table(
        "active_models",
        sa.Column("role", sa.String(16), primary_key=True),
        sa.Column("run_id", sa.String(96), sa.ForeignKey(refers_to, ondelete="CASCADE"), nullable=False),
        sa.Column("chosen", sa.Float, nullable=False),
    )
    if kept:
        op.bulk_insert(table, [dict(row) for row in kept])
