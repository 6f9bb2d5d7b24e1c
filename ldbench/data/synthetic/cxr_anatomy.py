"""synth-cxr's shared geometry (soft-edged shapes in the patient frame) and its bones and breast shadows;
the generative model is documented in ldbench.data.synthetic.cxr."""

from __future__ import annotations

import math

import numpy as np


def sig(f: np.ndarray, eps: float) -> np.ndarray:
    """Soft inside indicator of {f < 0}."""
    return 0.5 * (1.0 - np.tanh(f / (2.0 * eps)))


def ellipse(x, y, centre: tuple[float, float], radii: tuple[float, float], angle=0.0, power=2.0):
    """Approximately the signed distance to a rotated superellipse of `radii` (rx, ry) around `centre`."""
    (cx, cy), (rx, ry) = centre, radii
    c, s = math.cos(angle), math.sin(angle)
    u, v = (x - cx) * c + (y - cy) * s, -(x - cx) * s + (y - cy) * c
    r = (np.abs(u / rx) ** power + np.abs(v / ry) ** power) ** (1.0 / power)
    return (r - 1.0) * min(rx, ry)  # approximately a signed distance


def band(x, y, curve_y, half_thick):
    return np.abs(y - curve_y) - half_thick


def bones(f, p, body: np.ndarray) -> np.ndarray:
    """Spine (with disc spaces), posterior and anterior ribs, clavicles."""
    x, y, ax, eps = f.x, f.y, f.ax, f.eps
    disc = 0.5 + 0.5 * np.cos(2 * math.pi * (y - p.rib_phase) / 0.09)
    spine = sig(ax - 0.055, eps) * body
    total = spine * (0.14 + 0.05 * (disc > 0.85))
    in_cage = sig(ax - 0.76 * p.lung_w, eps) * body
    for k in range(10):
        y0 = -0.66 + p.rib_phase + 0.112 * k * p.lung_h
        t = ax - 0.06
        curve = y0 - 0.12 * t + 0.75 * t ** 2
        total = total + 0.13 * sig(band(x, y, curve, 0.024), eps) * (ax > 0.05) * in_cage
    for k in range(6):
        y0 = -0.52 + p.rib_phase + 0.13 * k * p.lung_h
        curve = y0 + 0.32 * (0.74 - ax)
        total = total + 0.06 * sig(band(x, y, curve, 0.02), eps) * (ax > 0.22) * in_cage
    clav_t = np.clip((ax - 0.07) / 0.58, 0.0, 1.0)
    clav_y = -0.63 - 0.07 * clav_t + 0.025 * np.sin(math.pi * clav_t * 2.0)
    return total + 0.28 * sig(band(x, y, clav_y, 0.032), eps) * (ax > 0.06) * sig(ax - 0.68, eps) * body


def with_breasts(f, att: np.ndarray) -> np.ndarray:
    """`att` plus the two breast shadows (sex F)."""
    for side in (-1.0, 1.0):
        g = ellipse(f.x, f.y, (side * 0.47, 0.30), (0.36, 0.30))
        depth = np.clip(-g / 0.3, 0.0, 1.0) ** 0.5 * (f.y > 0.1 + 0.0 * f.x)
        att = att + 0.20 * depth * sig(g, 1.5 * f.eps)
    return att
