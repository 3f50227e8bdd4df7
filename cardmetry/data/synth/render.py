"""Render a scene to pixels by supersampling through the inverse homography.

Each output pixel is the mean of S x S samples. A sample is mapped to card millimetres by the inverse homography,
and every edge that matters for truth (the card outline, the frame, its rule) is drawn with the exact coverage
ramp of `shapes.coverage`, sized to the sample by the local scale of the homography. The image-space effects
that a real capture adds (blur, uneven light, glare, noise, JPEG) come after, so the geometric truth is unchanged
by construction.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from cardmetry.data.synth import textures
from cardmetry.data.synth.scene import Scene
from cardmetry.data.synth.shapes import RoundedRect, coverage
from cardmetry.data.synth.truth import Placement, Truth, card_shape, compute_truth, frame_shape, place
from cardmetry.measure.files import decode_image, encode_image

_TILE_ROWS = 96  # rows rendered at a time: bounds memory at S*S samples per pixel
_HAZE = np.float32(200)  # the light grey a clear sleeve adds over a dark background


@dataclass(frozen=True)
class Rendered:
    image: np.ndarray  # RGB uint8, exactly as a reader of the encoded file sees it
    encoded: bytes  # the file's bytes: PNG, or JPEG when the capture asks for it
    extension: str  # ".png" or ".jpg"
    truth: Truth
    placement: Placement


@dataclass(frozen=True)
class _Holder:
    """A sleeve or toploader as rounded rectangles in card mm: the outline, and the inner wall for toploaders."""

    outer: RoundedRect
    wall_mm: float  # 0 for a thin sleeve


def render(scene: Scene) -> Rendered:
    placement = place(scene)
    truth = compute_truth(scene, placement)
    rng_textures, rng_holder, rng_effects = (np.random.default_rng([scene.seed, k]) for k in (1, 2, 3))
    linear = _render_linear(scene, placement, rng_textures, rng_holder)
    pixels = _apply_capture_effects(scene, placement, linear, rng_effects)
    if scene.capture.jpeg_quality is not None:
        encoded = encode_image(pixels, ".jpg", scene.capture.jpeg_quality)
        return Rendered(decode_image(encoded), encoded, ".jpg", truth, placement)
    return Rendered(pixels, encode_image(pixels, ".png"), ".png", truth, placement)


def _render_linear(
    scene: Scene, placement: Placement, rng_textures: np.random.Generator, rng_holder: np.random.Generator
) -> np.ndarray:
    """The scene before capture effects, float RGB."""
    spec, look, cap = scene.spec, scene.look, scene.capture
    texel = float(min(cap.px_per_mm, 24.0))
    card, frame = card_shape(scene), frame_shape(scene)
    b = scene.borders_mm
    frame_texels = (
        b["left"] * texel,
        b["top"] * texel,
        (spec.width_mm - b["right"]) * texel,
        (spec.height_mm - b["bottom"]) * texel,
    )
    border_tex = textures.border_texture(look, spec, texel, rng_textures)
    art_tex = textures.art_texture(look, spec, frame_texels, texel)
    cross_tex = textures.crossing_texture(look.crossings, spec, texel)
    bg = textures.background(cap, placement.width, placement.height, rng_textures)
    holder = _sample_holder(scene, rng_holder)
    rule = np.asarray(look.rule_colour, np.float32)

    s = cap.supersample
    offsets = (np.arange(s) + 0.5) / s - 0.5
    hi = placement.image_to_card
    det_hi = abs(np.linalg.det(hi))
    hi32 = hi.astype(np.float32)
    xs = (np.arange(placement.width)[:, None] + offsets).ravel().astype(np.float32)[None, :]
    out = np.empty_like(bg)
    for r0 in range(0, placement.height, _TILE_ROWS):
        r1 = min(r0 + _TILE_ROWS, placement.height)
        ys = (np.arange(r0, r1)[:, None] + offsets).ravel().astype(np.float32)[:, None]
        # float32 is ample: at 100 mm it resolves 1e-5 mm, a thousandth of a pixel at 2400 dpi.
        den = hi32[2, 0] * xs + hi32[2, 1] * ys + hi32[2, 2]
        u = (hi32[0, 0] * xs + hi32[0, 1] * ys + hi32[0, 2]) / den
        v = (hi32[1, 0] * xs + hi32[1, 1] * ys + hi32[1, 2]) / den
        # Samples per mm here: the homography's local scale, times S samples per pixel.
        scale = np.float32(s) / np.sqrt(np.float32(det_hi) / np.abs(den) ** 3)

        c_card = coverage(card.signed_distance(u, v) * scale)
        sd_frame = frame.signed_distance(u, v)
        c_frame = coverage(sd_frame * scale)
        c_art = coverage((sd_frame + np.float32(look.rule_width_mm)) * scale) if look.rule_width_mm else c_frame
        mu, mv = u * np.float32(texel) - 0.5, v * np.float32(texel) - 0.5
        face = _sample(border_tex, mu, mv) * (1 - c_frame)[..., None]
        face += rule * (c_frame - c_art)[..., None] + _sample(art_tex, mu, mv) * c_art[..., None]
        if cross_tex is not None:
            over = _sample(cross_tex, mu, mv)
            alpha = over[..., 3:] / 255
            face = face * (1 - alpha) + over[..., :3] * alpha
        premultiplied = _box_mean(face * c_card[..., None], s)
        alpha_card = _box_mean(c_card, s)[..., None]
        under = bg[r0:r1]
        if holder is not None:
            inside, edges = _holder_coverage(holder, u, v, scale)
            inside, edges = _box_mean(inside, s)[..., None], _box_mean(edges, s)[..., None]
            under = under + (_HAZE - under) * 0.08 * inside + 40 * edges
            premultiplied = premultiplied * (1 - 0.03 * inside) + 0.03 * _HAZE * inside * alpha_card
        out[r0:r1] = premultiplied + (1 - alpha_card) * under
    return out


def _sample(texture: np.ndarray, mu: np.ndarray, mv: np.ndarray) -> np.ndarray:
    sampled = cv2.remap(texture, mu, mv, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    return sampled if sampled.ndim == 3 else sampled[..., None]


def _box_mean(samples: np.ndarray, s: int) -> np.ndarray:
    """Average S x S blocks of samples back to pixels (OpenCV's area resize is that exact block mean)."""
    if s == 1:
        return samples
    rows, cols = samples.shape[0] // s, samples.shape[1] // s
    return cv2.resize(samples, (cols, rows), interpolation=cv2.INTER_AREA)


def _sample_holder(scene: Scene, rng: np.random.Generator) -> _Holder | None:
    """A penny sleeve (open at the top, so longer there) or a rigid toploader with a visible wall."""
    if scene.capture.holder == "none":
        return None
    w, h = scene.spec.size_mm
    if scene.capture.holder == "sleeve":
        left, right, bottom = (float(rng.uniform(0.6, 2.0)) for _ in range(3))
        top = float(rng.uniform(2.0, 6.0))
        wall = 0.0
    else:
        left, right, top, bottom = (float(rng.uniform(3.5, 5.5)) for _ in range(4))
        wall = float(rng.uniform(1.0, 1.8))
    x0, y0, x1, y1 = -left, -top, w + right, h + bottom
    angle = float(rng.uniform(-0.6, 0.6))  # a card never sits perfectly square in its holder
    outer = RoundedRect(((x0 + x1) / 2, (y0 + y1) / 2), ((x1 - x0) / 2, (y1 - y0) / 2), 1.5, angle)
    return _Holder(outer, wall)


def _holder_coverage(holder: _Holder, u: np.ndarray, v: np.ndarray, scale: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Coverage of the holder's inside, and of its visible edge lines (thin bright bands)."""
    sd = holder.outer.signed_distance(u, v)
    inside = coverage(sd * scale)
    half_line = np.float32(0.08)
    edges = coverage((np.abs(sd) - half_line) * scale)
    if holder.wall_mm:
        inner = np.abs(sd + np.float32(holder.wall_mm))
        edges = np.maximum(edges, coverage((inner - half_line) * scale))
        edges = np.maximum(edges, 0.35 * (inside - coverage((sd + np.float32(holder.wall_mm)) * scale)))
    return inside, edges


def _apply_capture_effects(
    scene: Scene, placement: Placement, image: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Uneven light, glare, optical blur and sensor noise, then 8-bit quantisation."""
    cap = scene.capture
    height, width = image.shape[:2]
    if cap.light_gradient:
        angle = rng.uniform(0, 2 * np.pi)
        x = np.linspace(-0.5, 0.5, width, dtype=np.float32)[None, :]
        y = np.linspace(-0.5, 0.5, height, dtype=np.float32)[:, None]
        gain = 1 + np.float32(cap.light_gradient) * (x * np.float32(np.cos(angle)) + y * np.float32(np.sin(angle)))
        image = image * gain[..., None]
    if cap.glare:
        w, h = scene.spec.size_mm
        centre = placement.card_to_image @ np.array([rng.uniform(0.2, 0.8) * w, rng.uniform(0.2, 0.8) * h, 1.0])
        cx, cy = centre[:2] / centre[2]
        sigma = rng.uniform(5, 12) * cap.px_per_mm
        x = np.arange(width, dtype=np.float32)[None, :] - np.float32(cx)
        y = np.arange(height, dtype=np.float32)[:, None] - np.float32(cy)
        image = image + np.float32(cap.glare) * np.exp(-(x**2 + (0.6 * y) ** 2) / np.float32(2 * sigma**2))[..., None]
    if cap.blur_sigma_px:
        image = cv2.GaussianBlur(image, (0, 0), cap.blur_sigma_px, borderType=cv2.BORDER_REFLECT)
    if cap.noise_sigma:
        image = image + rng.standard_normal(image.shape, dtype=np.float32) * np.float32(cap.noise_sigma)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)
