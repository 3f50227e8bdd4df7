"""The demo: a small synthetic dataset that `make run` stores so a newcomer can press Train at once, and the tour
that `cardmetry demo` prints (each step calls the same functions as the commands)."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from cardmetry.data.formats import read_dataset
from cardmetry.data.images import load_image
from cardmetry.data.instances import GRAPHIC, OUTER, Instance, cv_to_label
from cardmetry.data.refine import refine_boxes
from cardmetry.data.stats import dataset_stats
from cardmetry.data.synth.dataset import SynthOptions, write_synth
from cardmetry.data.validation import validate
from cardmetry.geometry.lines import order_quad
from cardmetry.geometry.specs import STANDARD
from cardmetry.measure.grades import load_tables
from cardmetry.measure.outputs import write_pictures
from cardmetry.measure.pipeline import measure_image
from cardmetry.store.datasets import import_dataset, list_datasets
from cardmetry.store.home import Home

LOOSE_MM = 0.4  # a loose hand-drawn box label (the real scans' boxes are tighter: docs/benchmarks.md)
DEMO_DATASET = "demo"
# Small enough to render in a few seconds and train an epoch in well under a minute on a laptop's CPU.
DEMO_CARDS = SynthOptions(count=16, seed=2026, dpi=150, max_rotation_deg=3.0)


def seed_demo_dataset(home: Home, options: SynthOptions = DEMO_CARDS) -> str | None:
    """Store rendered cards with exact labels as dataset "demo" when the home holds no dataset yet, and say which
    version (NAME@VERSION); None when there were datasets already (a user's own data is never mixed with it)."""
    if list_datasets(home):
        return None
    home.root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=home.root, prefix=".demo-") as scratch:
        cards = Path(scratch)
        write_synth(cards, options)
        dataset, problems = read_dataset(cards)
        stored = import_dataset(home, DEMO_DATASET, dataset, cards, problems)
    return f"{stored.name}@{stored.version}"


def run_demo(home: Home, count: int, out: Console, progress: Callable[[], Progress]) -> None:
    cards = home.root / "demo" / "cards"
    if cards.exists():
        shutil.rmtree(cards)
    out.rule("1. render synthetic cards with exact truth")
    with progress() as bar:
        task = bar.add_task("rendering", total=count)
        # Nearly square on the glass, as a flatbed scan is: a box label means little around a tilted card.
        options = SynthOptions(count=count, seed=2026, dpi=300, max_rotation_deg=0.5)
        write_synth(cards, options, on_card=lambda _: bar.advance(task))
    out.print(f"{count} cards at 300 dpi in {cards}: images/, labels/ (YOLO), annotations.json (COCO), truth/")

    out.rule("2. validate")
    report = validate(cards)
    out.print(f"{len(report.dataset.images)} images, {len(report.problems)} problems, trainable: {report.trainable}")

    out.rule("3. describe")
    stats = dataset_stats(report.dataset)
    borders = stats["borders_mm"] or {}
    out.print(f"instances per class: {stats['instances_per_class']}")
    for side in ("left", "right", "top", "bottom"):
        b = borders[side]
        out.print(f"{side:>6} border: mean {b['mean']:.3f} mm (from {b['min']:.3f} to {b['max']:.3f})")

    out.rule("4. store by content")
    dataset, problems = read_dataset(cards)
    stored = import_dataset(home, "demo", dataset, cards, problems)
    again = import_dataset(home, "demo", dataset, cards, problems)
    out.print(f"demo@{stored.version}: {stored.images} images; importing the same files again stored "
              f"{again.new_blobs} new ones")

    out.rule(f"5. refine box labels {LOOSE_MM} mm too loose back onto the edges")
    out.print(refinement_table(cards))

    out.rule("6. measure a card without a model, against its exact truth")
    out.print(measurement_table(cards))

    out.rule("7. what a customer sees: the overlay and the report")
    for path in customer_reports(cards, home.root / "demo" / "reports"):
        out.print(f"wrote {path}")


def refinement_table(cards: Path) -> Table:
    """Loosen each card's exact quads into boxes, as real labels are, refine them, and compare with the truth."""
    table = Table("card", "role", "box IoU with truth", "refined IoU with truth", "refined corner error px")
    for truth_file in sorted((cards / "truth").glob("*.json")):
        truth = json.loads(truth_file.read_text())
        image = load_image(cards / "images" / truth["image"])
        loose = LOOSE_MM * truth["px_per_mm"]
        quads = [cv_to_label(np.asarray(truth[key])) for key in ("outer_quad_px", "graphic_quad_px")]
        boxes = [
            Instance.from_box(class_id, *(quad.min(axis=0) - loose), *(quad.max(axis=0) + loose))
            for class_id, quad in zip((OUTER, GRAPHIC), quads, strict=True)
        ]
        for box, quad, attempt in zip(boxes, quads, refine_boxes(image, boxes), strict=True):
            role = "outer" if box.class_id == OUTER else "graphic"
            box_iou = f"{quad_iou(box.polygon, quad):.4f}"
            if attempt.ok:
                table.add_row(truth_file.stem, role, box_iou, f"{quad_iou(attempt.quad, quad):.4f}",
                              f"{corner_error(attempt.quad, quad):.3f}")
            else:
                table.add_row(truth_file.stem, role, box_iou, "refused", attempt.reason)
    return table


def measurement_table(cards: Path) -> Table:
    """`cardmetry measure` on each rendered card: its centering, and its 24 widths against the truth."""
    table = Table("card", "left/right", "top/bottom", "mean |error| mm", "worst |error| mm", "result")
    for truth_file in sorted((cards / "truth").glob("*.json")):
        truth = json.loads(truth_file.read_text())
        result = measure_image(load_image(cards / "images" / truth["image"]), STANDARD, name=truth["image"])
        if result.status != "ok":
            table.add_row(truth_file.stem, "", "", "", "", f"refused: {result.reason}")
            continue
        expected = {p["id"]: p["border_mm"] for p in truth["points"]}
        errors = np.abs([p.border_mm - expected[p.id] for p in result.points])
        lr, tb = result.centering["left_right"], result.centering["top_bottom"]
        table.add_row(truth_file.stem, f"{lr[0]:.2f}/{lr[1]:.2f}", f"{tb[0]:.2f}/{tb[1]:.2f}",
                      f"{errors.mean():.4f}", f"{errors.max():.4f}", "measured")
    return table


def customer_reports(cards: Path, out_dir: Path) -> list[Path]:
    """The overlay and HTML report of the first card that measures, with its grade ceilings."""
    out_dir.mkdir(parents=True, exist_ok=True)
    tables = load_tables()
    for image_path in sorted((cards / "images").iterdir()):
        image = load_image(image_path)
        result = measure_image(image, STANDARD, name=image_path.name, grade_tables=tables)
        if result.status == "ok":
            overlay, report = out_dir / f"{image_path.stem}.overlay.png", out_dir / f"{image_path.stem}.report.html"
            write_pictures(image, result, overlay, report)
            return [overlay, report]
    return []


def quad_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two convex quads, exactly (no rasterising)."""
    pa, pb = order_quad(a).astype(np.float32), order_quad(b).astype(np.float32)
    inter, _ = cv2.intersectConvexConvex(pa, pb)
    return float(inter / (cv2.contourArea(pa) + cv2.contourArea(pb) - inter))


def corner_error(quad: np.ndarray, truth: np.ndarray) -> float:
    """Largest corner distance along x or y between two quads, whatever order their corners came in."""
    return float(np.abs(order_quad(quad) - order_quad(truth)).max())
