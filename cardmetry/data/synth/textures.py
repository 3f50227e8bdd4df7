"""Procedural textures: the border's finish, the art, what crosses the frame, and the background.

Card textures live in card space (a grid at `texel_per_mm` over the whole card) and are sampled through the
inverse homography; the background lives in image space. Their content only has to look like cards; the exact
edges come from `shapes.py`, not from these textures.
"""

from __future__ import annotations

import cv2
import numpy as np

from cardmetry.data.synth.scene import Capture, CardLook, Crossing
from cardmetry.geometry.specs import CardSpec


def smooth_noise(
    rng: np.random.Generator, shape: tuple[int, int], cells: tuple[int, int], channels: int = 1
) -> np.ndarray:
    """Band-limited noise in about [-1, 1]: random values on a coarse grid, resized with cubic interpolation."""
    coarse = rng.uniform(-1, 1, size=(cells[0], cells[1], channels)).astype(np.float32)
    out = cv2.resize(coarse, (shape[1], shape[0]), interpolation=cv2.INTER_CUBIC)
    return out.reshape(shape[0], shape[1], channels)


def texture_shape(spec: CardSpec, texel_per_mm: float) -> tuple[int, int]:
    return (int(np.ceil(spec.height_mm * texel_per_mm)) + 2, int(np.ceil(spec.width_mm * texel_per_mm)) + 2)


def border_texture(look: CardLook, spec: CardSpec, texel_per_mm: float, rng: np.random.Generator) -> np.ndarray:
    """The border's colour over the card: flat ink with print grain, or brushed metal for silver borders."""
    shape = texture_shape(spec, texel_per_mm)
    base = np.empty((*shape, 3), np.float32)
    base[:] = look.border_colour
    grain = smooth_noise(rng, shape, (shape[0] // 3, shape[1] // 3)) * 2.0
    if look.border_style == "silver":
        sheen = smooth_noise(rng, shape, (4, 3)) * 22 + smooth_noise(rng, shape, (shape[0] // 2, 6)) * 6
        grain = grain + sheen
    return np.clip(base + grain, 0, 255)


def art_texture(
    look: CardLook, spec: CardSpec, frame_px: tuple[float, float, float, float], texel_per_mm: float
) -> np.ndarray:
    """Art for the window: smooth colour fields, a few shapes, a sky, and optionally a stretch along one frame edge
    painted close to the border colour (the low-contrast case a detector must survive).

    `frame_px` is the frame's (left, top, right, bottom) in texels, used to place that stretch.
    """
    rng = np.random.default_rng(look.art_seed)
    shape = texture_shape(spec, texel_per_mm)
    palette = rng.uniform(30, 230, size=(3, 3)).astype(np.float32)
    blend = (smooth_noise(rng, shape, (5, 4), 3) + 1) / 2
    art = palette[0] * blend[..., :1] + palette[1] * blend[..., 1:2] + palette[2] * blend[..., 2:]
    art /= np.maximum(blend.sum(axis=2, keepdims=True), 1e-3)
    art += smooth_noise(rng, shape, (40, 30), 3) * 18
    if rng.random() < 0.5:  # a sky fading down the upper part
        sky = np.linspace(1, 0, shape[0], dtype=np.float32)[:, None, None] ** 2
        art = art * (1 - sky) + np.array([150, 190, 225], np.float32) * sky
    for _ in range(int(rng.integers(2, 6))):
        colour = tuple(float(c) for c in rng.uniform(0, 255, 3))
        centre = (int(rng.uniform(0, shape[1])), int(rng.uniform(0, shape[0])))
        axes = (int(rng.uniform(0.05, 0.3) * shape[1]), int(rng.uniform(0.05, 0.3) * shape[0]))
        cv2.ellipse(art, centre, axes, float(rng.uniform(0, 180)), 0, 360, colour, -1, cv2.LINE_AA)
    if look.low_contrast_edge != "none":
        _paint_low_contrast_stretch(art, look, frame_px, texel_per_mm, rng)
    return np.clip(art, 0, 255)


def _paint_low_contrast_stretch(
    art: np.ndarray,
    look: CardLook,
    frame_px: tuple[float, float, float, float],
    texel_per_mm: float,
    rng: np.random.Generator,
) -> None:
    left, top, right, bottom = frame_px
    depth = 3.0 * texel_per_mm
    length = float(rng.uniform(15, 30)) * texel_per_mm
    colour = tuple(float(np.clip(c + rng.uniform(-12, 12), 0, 255)) for c in look.border_colour)
    # Extend one texel beyond the frame so the skewed frame edge still falls inside the painted stretch.
    if look.low_contrast_edge in ("left", "right"):
        start = float(rng.uniform(top, max(top, bottom - length)))
        x0 = left - 2 * texel_per_mm if look.low_contrast_edge == "left" else right - depth
        pt0, pt1 = (x0, start), (x0 + depth + 2 * texel_per_mm, start + length)
    else:
        start = float(rng.uniform(left, max(left, right - length)))
        y0 = top - 2 * texel_per_mm if look.low_contrast_edge == "top" else bottom - depth
        pt0, pt1 = (start, y0), (start + length, y0 + depth + 2 * texel_per_mm)
    cv2.rectangle(art, tuple(int(v) for v in pt0), tuple(int(v) for v in pt1), colour, -1)


def crossing_texture(crossings: tuple[Crossing, ...], spec: CardSpec, texel_per_mm: float) -> np.ndarray | None:
    """RGBA of the plates and logos that cross the frame edge, or None when the card has none."""
    if not crossings:
        return None
    shape = texture_shape(spec, texel_per_mm)
    rgba = np.zeros((*shape, 4), np.float32)
    for item in crossings:
        cx, cy = (c * texel_per_mm for c in item.centre_mm)
        sx, sy = (s * texel_per_mm / 2 for s in item.size_mm)
        colour = (*item.colour, 255.0)
        if item.kind == "plate":
            radius = int(sy * 0.6)
            x0, y0, x1, y1 = int(cx - sx), int(cy - sy), int(cx + sx), int(cy + sy)
            cv2.rectangle(rgba, (x0 + radius, y0), (x1 - radius, y1), colour, -1, cv2.LINE_AA)
            cv2.rectangle(rgba, (x0, y0 + radius), (x1, y1 - radius), colour, -1, cv2.LINE_AA)
            for corner in (
                (x0 + radius, y0 + radius),
                (x1 - radius, y0 + radius),
                (x0 + radius, y1 - radius),
                (x1 - radius, y1 - radius),
            ):
                cv2.circle(rgba, corner, radius, colour, -1, cv2.LINE_AA)
            scale = sy / 14.0
            (tw, th), _ = cv2.getTextSize(item.text, cv2.FONT_HERSHEY_DUPLEX, scale, max(1, int(scale * 1.5)))
            ink = (250.0, 250.0, 250.0, 255.0) if sum(item.colour) < 400 else (15.0, 15.0, 15.0, 255.0)
            cv2.putText(
                rgba,
                item.text,
                (int(cx - tw / 2), int(cy + th / 2)),
                cv2.FONT_HERSHEY_DUPLEX,
                scale,
                ink,
                max(1, int(scale * 1.5)),
                cv2.LINE_AA,
            )
        else:
            cv2.circle(rgba, (int(cx), int(cy)), int(sx), colour, -1, cv2.LINE_AA)
            ring = (255.0, 255.0, 255.0, 255.0)
            cv2.circle(rgba, (int(cx), int(cy)), int(sx * 0.75), ring, max(1, int(sx * 0.08)), cv2.LINE_AA)
    return rgba


def background(capture: Capture, width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """The surface the card lies on, in image space (float RGB)."""
    out = np.empty((height, width, 3), np.float32)
    out[:] = capture.background_colour
    if capture.background == "gradient":
        ramp = np.linspace(-0.25, 0.25, width, dtype=np.float32)[None, :, None]
        out *= 1 + ramp
    elif capture.background == "textured":
        out += smooth_noise(rng, (height, width), (12, 12), 3) * 18
        out += smooth_noise(rng, (height, width), (height // 4, width // 4)) * 8
    elif capture.background == "scanner-lid":
        # A scanner lid: a faint mottle and the scan head's streaks along the scan direction.
        out += smooth_noise(rng, (height, width), (6, 6)) * 4
        out += smooth_noise(rng, (height, width), (1, max(2, width // 8))) * 3
    return np.clip(out, 0, 255)
