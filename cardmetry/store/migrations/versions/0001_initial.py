"""The first schema: dataset versions and their images, runs and their events, models, the active model per role,
and measurements.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "dataset_versions",
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
    op.create_table(
        "images",
        sa.Column("sha256", sa.String(64), primary_key=True),
        sa.Column("width", sa.Integer, nullable=False),
        sa.Column("height", sa.Integer, nullable=False),
        sa.Column("file", sa.String(255), nullable=False),
    )
    op.create_table(
        "dataset_images",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("version", sa.String(12), primary_key=True),
        sa.Column("sha256", sa.String(64), sa.ForeignKey("images.sha256"), primary_key=True),
        sa.Column("image_name", sa.String(1024), nullable=False),
        sa.ForeignKeyConstraint(
            ["name", "version"], ["dataset_versions.name", "dataset_versions.version"], ondelete="CASCADE"
        ),
    )
    op.create_index("ix_dataset_images_sha256", "dataset_images", ["sha256"])
    op.create_table(
        "runs",
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
    op.create_table(
        "run_events",
        sa.Column("run_id", sa.String(96), sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("seq", sa.Integer, primary_key=True),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("time", sa.Float, nullable=False),
        sa.Column("payload", sa.JSON, nullable=False),
    )
    op.create_table(
        "models",
        sa.Column("run_id", sa.String(96), sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("role", sa.String(16), nullable=False, index=True),
        sa.Column("checkpoint", sa.String(1024), nullable=False),
        sa.Column("metrics", sa.JSON, nullable=False),
        sa.Column("map50", sa.Float),
        sa.Column("precision", sa.Float),
        sa.Column("recall", sa.Float),
        sa.Column("border_error_mm", sa.Float),
    )
    op.create_table(
        "active_models",
        sa.Column("role", sa.String(16), primary_key=True),
        sa.Column("run_id", sa.String(96), sa.ForeignKey("models.run_id", ondelete="CASCADE"), nullable=False),
        sa.Column("chosen", sa.Float, nullable=False),
    )
    op.create_table(
        "measurements",
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


def downgrade() -> None:
    for table in ("measurements", "active_models", "models", "run_events", "runs", "dataset_images", "images",
                  "dataset_versions"):
        op.drop_table(table)
