"""`cardmetry synth`: many rendered cards written as a dataset with exact truth.

Layout of OUT: images/card_NNNNN.(png|jpg), labels/card_NNNNN.txt (YOLO segmentation), annotations.json (COCO
instance segmentation), truth/card_NNNNN.json (quads, 24 border widths, centering, skew and the whole scene),
data.yaml (class names). Card i depends only on (seed, i): the same seed gives the same bytes, and a larger
--count only adds cards.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cardmetry.data.instances import DEFAULT_CLASSES, GRAPHIC, OUTER, Dataset, Instance, LabeledImage
from cardmetry.data.synth.render import render
from cardmetry.data.synth.scene import Scene, sample_scene

TRUTH_SCHEMA = "cardmetry.synth-truth/v1"


@dataclass(frozen=True)
class SynthOptions:
    count: int
    seed: int = 0
    dpi: float = 600.0
    photo: bool = False
    spec: str = "standard"
    landscape_share: float = 0.0
    supersample: int = 2
    max_rotation_deg: float = 5.0
    max_skew_deg: float = 1.0


def card_seed(seed: int, index: int) -> int:
    """The seed of card `index` in a run seeded with `seed`."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


def scene_for(index: int, options: SynthOptions) -> Scene:
    seed = card_seed(options.seed, index)
    landscape = np.random.default_rng([seed, 99]).random() < options.landscape_share
    return sample_scene(
        seed,
        dpi=options.dpi,
        photo=options.photo,
        spec=options.spec,
        max_rotation_deg=options.max_rotation_deg,
        max_skew_deg=options.max_skew_deg,
        landscape=landscape,
        supersample=options.supersample,
    )


def render_card_files(out: Path, index: int, options: SynthOptions) -> LabeledImage:
    """Render card `index`, write its image and truth file, and return its labels."""
    scene = scene_for(index, options)
    rendered = render(scene)
    stem = f"card_{index:05d}"
    image_path = out / "images" / f"{stem}{rendered.extension}"
    image_path.write_bytes(rendered.encoded)
    truth = {"schema": TRUTH_SCHEMA, "image": image_path.name, **rendered.truth.as_json(), "scene": scene.as_json()}
    (out / "truth" / f"{stem}.json").write_text(json.dumps(truth, indent=1))
    return LabeledImage(
        path=f"images/{image_path.name}",
        width=rendered.placement.width,
        height=rendered.placement.height,
        instances=[Instance(OUTER, rendered.truth.outer_polygon), Instance(GRAPHIC, rendered.truth.graphic_polygon)],
    )


def _render_one(args: tuple[Path, int, SynthOptions]) -> LabeledImage:
    return render_card_files(*args)


def iter_synth(out: Path, options: SynthOptions, workers: int = 1) -> Iterator[LabeledImage]:
    """Render the cards (in `workers` processes), yielding each card's labels in index order as it is done.

    The output folder must be new or empty: cards from two runs in one folder would mix silently.
    """
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"{out}: the output folder is not empty (or is a file)")
    for folder in ("images", "labels", "truth"):
        (out / folder).mkdir(parents=True, exist_ok=True)
    jobs = [(out, i, options) for i in range(options.count)]
    if workers <= 1:
        yield from map(_render_one, jobs)
        return
    with ProcessPoolExecutor(max_workers=workers) as pool:
        yield from pool.map(_render_one, jobs)


def write_synth(
    out: Path, options: SynthOptions, workers: int = 1, on_card: Callable[[LabeledImage], None] | None = None
) -> Dataset:
    """Render every card, then write the YOLO segmentation labels, the COCO file and data.yaml."""
    from cardmetry.data.formats import write_labels

    images = []
    for labeled in iter_synth(out, options, workers):
        images.append(labeled)
        if on_card is not None:
            on_card(labeled)
    dataset = Dataset(list(DEFAULT_CLASSES), images, format="synth")
    write_labels(dataset, out)
    return dataset
