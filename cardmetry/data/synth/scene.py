"""What a synthetic card looks like and how it lies in the image: plain parameters, sampled from a seed.

Everything here is data. `sample_scene` draws one scene from a generator so the same seed gives the same card;
`render.py` turns a scene into pixels and `truth.py` into exact geometry.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Literal

import numpy as np

from cardmetry.geometry.specs import STANDARD, CardSpec, card_spec

BorderStyle = Literal["white", "black", "yellow", "coloured", "silver"]
Background = Literal["plain", "gradient", "textured", "scanner-lid"]
Holder = Literal["none", "sleeve", "toploader"]

RGB = tuple[int, int, int]


@dataclass(frozen=True)
class Crossing:
    """A name plate or logo printed across the frame edge (detectors must survive it).

    Centre and size in card mm; `kind` picks the shape, `text` is drawn on plates.
    """

    kind: Literal["plate", "logo"]
    centre_mm: tuple[float, float]
    size_mm: tuple[float, float]
    colour: RGB
    text: str = ""


@dataclass(frozen=True)
class CardLook:
    """The printed face: border colour and finish, the frame, its rule, the art and what crosses the frame."""

    border_style: BorderStyle
    border_colour: RGB
    rule_width_mm: float  # 0 = no dark rule at the frame edge
    rule_colour: RGB
    frame_corner_radius_mm: float
    art_seed: int
    low_contrast_edge: Literal["left", "right", "top", "bottom", "none"]
    crossings: tuple[Crossing, ...] = ()


@dataclass(frozen=True)
class Capture:
    """How the card was captured: resolution, pose, optics and the things around it."""

    px_per_mm: float
    rotation_deg: float
    perspective: float  # 0 = flatbed; otherwise the largest corner displacement as a share of the card size
    margin_mm: float
    background: Background
    background_colour: RGB
    holder: Holder
    blur_sigma_px: float
    noise_sigma: float
    jpeg_quality: int | None  # None = lossless PNG
    light_gradient: float  # relative brightness change across the image (0 = even light)
    glare: float  # peak added brightness of a specular spot (0 = none)
    supersample: int = 2

    @property
    def dpi(self) -> float:
        return self.px_per_mm * 25.4


@dataclass(frozen=True)
class Scene:
    """One synthetic card: its spec, the graphic frame's border widths and print skew, its look and its capture."""

    spec: CardSpec
    borders_mm: dict[str, float]  # left, right, top, bottom, before print skew
    print_skew_deg: float
    look: CardLook
    capture: Capture
    seed: int
    corner_offsets: tuple[tuple[float, float], ...] = field(default=((0.0, 0.0),) * 4)

    def as_json(self) -> dict[str, object]:
        data = asdict(self)
        data["spec"] = self.spec.as_json()
        return data


_BORDER_COLOURS: dict[BorderStyle, RGB] = {
    "white": (236, 234, 228),
    "black": (28, 28, 30),
    "yellow": (238, 206, 40),
    "silver": (178, 182, 188),
}

# Station L1 sits 6.35 mm from the top: the frame's straight part must reach past it, so border plus frame
# corner radius stays below about 5.6 mm.
MAX_BORDER_MM = 4.6
MIN_BORDER_MM = 1.4


def sample_scene(
    seed: int,
    *,
    dpi: float = 600.0,
    photo: bool = False,
    spec: CardSpec | str = STANDARD,
    max_rotation_deg: float = 5.0,
    max_skew_deg: float = 1.0,
    landscape: bool = False,
    supersample: int = 2,
) -> Scene:
    """Draw a scene. Flatbed scans by default; `photo` gives a phone photo (perspective, 12-20 px/mm, uneven light).

    `dpi` is ignored for photos, whose resolution is drawn from the phone range.
    """
    rng = np.random.default_rng(seed)
    spec = card_spec(spec) if isinstance(spec, str) else spec
    look = _sample_look(rng, spec)
    centre_lr = rng.uniform(MIN_BORDER_MM + 0.6, MAX_BORDER_MM - 0.6)
    centre_tb = rng.uniform(MIN_BORDER_MM + 0.6, MAX_BORDER_MM - 0.6)
    shift_lr = rng.uniform(-0.6, 0.6) * min(centre_lr - MIN_BORDER_MM, MAX_BORDER_MM - centre_lr)
    shift_tb = rng.uniform(-0.6, 0.6) * min(centre_tb - MIN_BORDER_MM, MAX_BORDER_MM - centre_tb)
    borders = {
        "left": centre_lr + shift_lr,
        "right": centre_lr - shift_lr,
        "top": centre_tb + shift_tb,
        "bottom": centre_tb - shift_tb,
    }
    rotation = rng.uniform(-max_rotation_deg, max_rotation_deg)
    if landscape:
        # Keep 2 deg away from exactly sideways, where the upright orientation is ambiguous.
        rotation = float(np.sign(rng.uniform(-1, 1)) * (90 + np.sign(rotation) * max(abs(rotation), 2.0)))
    capture = _sample_photo(rng, rotation, supersample) if photo else _sample_scan(rng, dpi, rotation, supersample)
    offsets = tuple((0.0, 0.0) for _ in range(4))
    if capture.perspective > 0:
        offsets = tuple(
            (float(rng.uniform(-1, 1) * capture.perspective), float(rng.uniform(-1, 1) * capture.perspective))
            for _ in range(4)
        )
    return Scene(
        spec=spec,
        borders_mm={k: float(v) for k, v in borders.items()},
        print_skew_deg=float(rng.uniform(-max_skew_deg, max_skew_deg)),
        look=look,
        capture=capture,
        seed=seed,
        corner_offsets=offsets,
    )


def _pick(rng: np.random.Generator, options: list):
    """One element of a list, keeping its Python type (numpy's choice would turn str into numpy.str_)."""
    return options[int(rng.integers(len(options)))]


def _sample_look(rng: np.random.Generator, spec: CardSpec) -> CardLook:
    style: BorderStyle = _pick(rng, ["white", "white", "black", "yellow", "coloured", "silver"])
    if style == "coloured":
        colour = _random_saturated_colour(rng)
    else:
        colour = tuple(int(np.clip(c + rng.normal(0, 5), 0, 255)) for c in _BORDER_COLOURS[style])
    has_rule = rng.random() < 0.6
    rule_colour = (20, 20, 24) if style != "black" else (210, 210, 205)
    crossings = []
    for _ in range(int(rng.integers(0, 3))):
        crossings.append(_sample_crossing(rng, spec))
    return CardLook(
        border_style=style,
        border_colour=colour,  # type: ignore[arg-type]
        rule_width_mm=float(rng.uniform(0.15, 0.5)) if has_rule else 0.0,
        rule_colour=rule_colour,
        frame_corner_radius_mm=float(_pick(rng, [0.0, rng.uniform(0.2, 1.0)])),
        art_seed=int(rng.integers(0, 2**31)),
        low_contrast_edge=_pick(rng, ["left", "right", "top", "bottom", "none", "none"]),
        crossings=tuple(crossings),
    )


def _sample_crossing(rng: np.random.Generator, spec: CardSpec) -> Crossing:
    """A plate across the bottom or top frame edge, or a round logo across a side, as real cards have."""
    w, h = spec.size_mm
    if rng.random() < 0.5:
        y = float(_pick(rng, [rng.uniform(3.0, 5.0), rng.uniform(h - 5.0, h - 3.0)]))
        return Crossing(
            kind="plate",
            centre_mm=(float(rng.uniform(18, w - 18)), y),
            size_mm=(float(rng.uniform(18, 34)), float(rng.uniform(3.5, 6.0))),
            colour=_random_saturated_colour(rng),
            text=_pick(rng, ["J. SMITH", "ROOKIE", "M. GARCIA", "ALL-STAR", "K. TANAKA"]),
        )
    x = float(_pick(rng, [rng.uniform(2.5, 5.0), rng.uniform(w - 5.0, w - 2.5)]))
    d = float(rng.uniform(6, 11))
    return Crossing(
        kind="logo",
        centre_mm=(x, float(rng.uniform(10, h - 10))),
        size_mm=(d, d),
        colour=_random_saturated_colour(rng),
    )


def _random_saturated_colour(rng: np.random.Generator) -> RGB:
    hue = rng.uniform(0, 6)
    k = np.array([5.0, 3.0, 1.0])
    rgb = 1 - np.clip(np.minimum(np.mod(k + hue, 6), 4 - np.mod(k + hue, 6)), 0, 1)
    value, sat = rng.uniform(0.45, 0.95), rng.uniform(0.5, 0.95)
    return tuple(int(255 * value * (1 - sat + sat * c)) for c in rgb)  # type: ignore[return-value]


def _sample_scan(rng: np.random.Generator, dpi: float, rotation: float, supersample: int) -> Capture:
    """A flatbed scan like ../shared/data/real-scans: dark lid, often a sleeve, scanner blur, mild JPEG."""
    background: Background = _pick(rng, ["scanner-lid", "scanner-lid", "plain", "textured", "gradient"])
    lid = int(rng.uniform(25, 80))
    bg_colour = (lid, lid, lid + 2) if background == "scanner-lid" else _random_background_colour(rng)
    return Capture(
        px_per_mm=dpi / 25.4,
        rotation_deg=float(rotation),
        perspective=0.0,
        margin_mm=float(rng.uniform(2.5, 7.0)),
        background=background,
        background_colour=bg_colour,
        holder=_pick(rng, ["none", "sleeve", "sleeve", "toploader"]),
        blur_sigma_px=float(rng.uniform(0.5, 1.0)),
        noise_sigma=float(rng.uniform(0.5, 2.5)),
        jpeg_quality=90,
        light_gradient=float(rng.uniform(0.0, 0.03)),
        glare=0.0,
        supersample=supersample,
    )


def _sample_photo(rng: np.random.Generator, rotation: float, supersample: int) -> Capture:
    """A phone photo: 12-20 px/mm, perspective, uneven light, sometimes glare, stronger noise."""
    return Capture(
        px_per_mm=float(rng.uniform(12, 20)),
        rotation_deg=float(rotation),
        perspective=float(rng.uniform(0.02, 0.06)),
        margin_mm=float(rng.uniform(6, 15)),
        background=_pick(rng, ["plain", "textured", "gradient"]),
        background_colour=_random_background_colour(rng),
        holder=_pick(rng, ["none", "none", "sleeve", "toploader"]),
        blur_sigma_px=float(rng.uniform(0.6, 1.4)),
        noise_sigma=float(rng.uniform(2.0, 5.0)),
        jpeg_quality=int(rng.integers(85, 96)),
        light_gradient=float(rng.uniform(0.05, 0.25)),
        glare=float(_pick(rng, [0.0, rng.uniform(30, 90)])),
        supersample=supersample,
    )


def _random_background_colour(rng: np.random.Generator) -> RGB:
    """Backgrounds that contrast with most borders: darks, wood browns, desk greys, cloth colours."""
    base = _pick(rng, [(30, 30, 34), (96, 64, 40), (70, 84, 70), (40, 52, 90), (120, 120, 118)])
    return tuple(int(np.clip(c + rng.normal(0, 10), 0, 255)) for c in base)  # type: ignore[return-value]
