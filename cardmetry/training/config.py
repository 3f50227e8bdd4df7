"""A training run's settings: one pydantic model, saved with the run as config.json and inside every checkpoint,
so a run can be repeated or resumed with exactly what it started with."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

CONFIG_SCHEMA = "cardmetry.train-config/v1"


class AugmentConfig(BaseModel):
    """Augmentations that keep the geometry exact: the same homography moves the pixels and the polygons."""

    model_config = ConfigDict(extra="forbid")

    rotate_deg: float = Field(8.0, ge=0, le=180, description="uniform rotation in +-this")
    quarter_turns: bool = Field(True, description="also turn by 90/180/270 deg (cards are scanned any way round)")
    scale: float = Field(0.15, ge=0, lt=1, description="zoom in 1 +- this")
    perspective: float = Field(0.03, ge=0, lt=0.3, description="corner jitter, a share of the image side")
    translate: float = Field(0.05, ge=0, lt=0.5, description="shift, a share of the image side")
    colour: float = Field(0.25, ge=0, le=1, description="brightness, contrast and saturation jitter")
    blur: float = Field(0.3, ge=0, le=1, description="chance of a Gaussian blur")
    noise: float = Field(0.3, ge=0, le=1, description="chance of Gaussian pixel noise")
    jpeg: float = Field(0.3, ge=0, le=1, description="chance of a JPEG re-encode at quality 40-90")


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    schema_: str = Field(CONFIG_SCHEMA, alias="schema")
    data: str = Field(description="a dataset folder (any supported format) or a stored dataset NAME[@VERSION]")
    val: str | None = Field(None, description="validation data; default: a seeded share of --data")
    val_share: float = Field(0.2, gt=0, lt=1)
    synthetic: str | None = Field(None, description="synthetic cards (a folder or stored dataset) mixed into training")
    synthetic_share: float = Field(0.5, ge=0, le=1, description="share of each epoch's samples drawn from synthetic")
    role: Literal["outer", "graphic", "both"] = "outer"
    backend: str = "unet"
    variant: str | None = Field(None, description="default: the backend's default variant")
    weights: str | None = Field(None, description="a weights file to start from (the variant's own layout)")
    pretrained: bool = Field(True, description="start from the weights a variant ships with, where it has any")
    epochs: int = Field(30, ge=1)
    batch: int = Field(4, ge=1)
    imgsz: int = Field(384, ge=32, le=4096)
    lr: float | None = Field(None, gt=0, description="default: the backend's")
    weight_decay: float = Field(1e-4, ge=0)
    scheduler: Literal["cosine", "step"] = "cosine"
    warmup_steps: int = Field(20, ge=0)
    patience: int = Field(10, ge=0, description="epochs without improvement before stopping early; 0 never stops")
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: int | None = Field(None, ge=1, description="CPU threads for torch; default: all cores")
    loader_workers: int = Field(0, ge=0, description="data-loading worker processes; 0 loads in the run's process")
    epoch_size: int | None = Field(None, ge=1, description="samples per epoch; default: every training image once")
    max_steps: int | None = Field(None, ge=1, description="stop after this many optimizer steps (tests, smoke runs)")
    border_eval_images: int = Field(16, ge=0, description="validation images measured for the border error in mm")
    batch_event_seconds: float = Field(1.0, ge=0, description="at most one batch event per this many seconds")
    heartbeat_seconds: float = Field(
        10.0, gt=0, le=60, description="seconds between heartbeats (a supervisor kills a worker silent for 120 s)"
    )
    augment: AugmentConfig = Field(default_factory=AugmentConfig)

    @field_validator("data")
    @classmethod
    def _not_empty(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("data must name a folder or a stored dataset")
        return value

    def as_json(self) -> dict[str, object]:
        return self.model_dump(mode="json", by_alias=True)
