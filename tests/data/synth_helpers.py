"""Clean scenes for checking the renderer's truth from its pixels: flat colours, no capture effects."""

from __future__ import annotations

import dataclasses

import numpy as np

from cardmetry.data.synth.scene import Scene, sample_scene

BORDER, BACKGROUND, RULE = 230.0, 40.0, 20.0


def clean_scene(
    seed: int = 3,
    *,
    rotation_deg: float = 0.0,
    skew_deg: float = 0.0,
    perspective: float = 0.0,
    supersample: int = 2,
    blur_sigma_px: float = 0.0,
    dpi: float = 300.0,
) -> Scene:
    scene = sample_scene(seed, dpi=dpi)
    look = dataclasses.replace(
        scene.look,
        border_style="white",
        border_colour=(int(BORDER),) * 3,
        rule_width_mm=0.5,
        rule_colour=(int(RULE),) * 3,
        crossings=(),
        low_contrast_edge="none",
        frame_corner_radius_mm=0.5,
    )
    capture = dataclasses.replace(
        scene.capture,
        rotation_deg=rotation_deg,
        perspective=perspective,
        background="plain",
        background_colour=(int(BACKGROUND),) * 3,
        holder="none",
        blur_sigma_px=blur_sigma_px,
        noise_sigma=0.0,
        jpeg_quality=None,
        light_gradient=0.0,
        glare=0.0,
        supersample=supersample,
    )
    offsets = tuple(
        (float(a), float(b)) for a, b in np.random.default_rng(seed).uniform(-perspective, perspective, (4, 2))
    )
    return dataclasses.replace(scene, look=look, capture=capture, print_skew_deg=skew_deg, corner_offsets=offsets)
