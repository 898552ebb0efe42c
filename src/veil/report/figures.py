"""Figures from result JSON: image grids (images travel in the JSON as PNG strips) and the
accuracy-vs-attacker-SSIM trade-off with its Pareto front."""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..core.eightbit import to_uint8

GAP = 2  # pixels between grid cells, before upscaling


def encode_strip(images: torch.Tensor) -> str:
    """(N, 3, H, W) images in [0, 1] -> base64 of one lossless PNG, the images side by side."""
    if images.dim() != 4 or len(images) == 0:
        raise ValueError(f"expected a non-empty (N, 3, H, W) batch, got {tuple(images.shape)}")
    arr = to_uint8(images.detach().float().cpu()).permute(0, 2, 3, 1).numpy()
    strip = np.concatenate(list(arr), axis=1)
    buffer = io.BytesIO()
    Image.fromarray(strip).save(buffer, format="PNG", optimize=True)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def decode_strip(data: str, count: int) -> np.ndarray:
    """The inverse of encode_strip: uint8 (count, H, W, 3)."""
    with Image.open(io.BytesIO(base64.b64decode(data))) as im:
        strip = np.asarray(im.convert("RGB"))
    if strip.shape[1] % count:
        raise ValueError(f"image strip of width {strip.shape[1]} does not hold {count} images")
    return np.stack(np.split(strip, count, axis=1))


def grid_canvas(rows: Sequence[np.ndarray], scale: int) -> np.ndarray:
    """Rows of (N, H, W, 3) images -> one white-separated uint8 canvas, upscaled (nearest)."""
    n, h, w, _ = rows[0].shape
    canvas = np.full((len(rows) * (h + GAP) - GAP, n * (w + GAP) - GAP, 3), 255, np.uint8)
    for r, row in enumerate(rows):
        for c, image in enumerate(row):
            canvas[r * (h + GAP):r * (h + GAP) + h, c * (w + GAP):c * (w + GAP) + w] = image
    return canvas.repeat(scale, 0).repeat(scale, 1)


def agg_figure(**kwargs: Any):
    """A matplotlib figure drawn by the Agg canvas: no pyplot, so no process-wide backend
    switch and no global figure registry to close."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(**kwargs)
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Any, path: Path, dpi: float | None = None) -> Path:
    """Write a figure as PNG without matplotlib's version in its metadata, so that `veil report`
    rewrites an unchanged figure byte for byte."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, metadata={"Software": None}, **({} if dpi is None else {"dpi": dpi}))
    return path


def save_grid(path: Path, rows: Sequence[tuple[str, np.ndarray]], column_labels: Sequence[str],
              scale: int, title: str) -> Path:
    """A labelled grid PNG: one row per (label, images), columns labelled (e.g. classes)."""
    canvas = grid_canvas([images for _, images in rows], scale)
    h, w = canvas.shape[:2]
    dpi, left, top, bottom = 100, 1.4, 0.4, 0.35  # margins in inches
    fig_w, fig_h = w / dpi + left + 0.1, h / dpi + top + bottom
    fig = agg_figure(figsize=(fig_w, fig_h), dpi=dpi)
    ax = fig.add_axes((left / fig_w, bottom / fig_h, w / dpi / fig_w, h / dpi / fig_h))
    ax.imshow(canvas, interpolation="nearest")
    cell_h, cell_w = (rows[0][1].shape[1] + GAP) * scale, (rows[0][1].shape[2] + GAP) * scale
    ax.set_yticks([(i + 0.5) * cell_h - GAP * scale / 2 for i in range(len(rows))],
                  [label for label, _ in rows])
    ax.set_xticks([(i + 0.5) * cell_w - GAP * scale / 2 for i in range(len(column_labels))],
                  list(column_labels), fontsize=8)
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    fig.text(left / fig_w, 1 - 0.1 / fig_h, title, va="top", fontsize=10)
    return save_figure(fig, path, dpi)


def pareto_front(points: Sequence[tuple[str, float, float]]) -> list[str]:
    """Names of the points (name, attacker SSIM, accuracy) no other point beats on both axes:
    none has SSIM <= and accuracy >= with one of them strict. Ordered by SSIM."""
    front = []
    for name, x, y in points:
        dominated = any(x2 <= x and y2 >= y and (x2 < x or y2 > y) for _, x2, y2 in points)
        if not dominated:
            front.append((x, -y, name))
    return [name for _, _, name in sorted(front)]


LABEL_OFFSETS = tuple((dx, dy) for dy in (4, -11, 14, -21, 24, -31) for dx in (6, -6))


def label_points(fig, ax, labelled: Sequence[tuple[str, float, float]]) -> list:
    """Names each point at the first of a few offsets where the name stays inside the axes and
    covers no other name and no marker (clustered points would print names on top of each
    other); where none is free, at the offset that covers least. Returns the names' boxes."""
    from matplotlib.text import Text
    from matplotlib.transforms import Bbox

    renderer = fig.canvas.get_renderer()
    radius = 5 * fig.dpi / 72
    taken = [Bbox.from_bounds(x - radius, y - radius, 2 * radius, 2 * radius)
             for x, y in ax.transData.transform([(px, py) for _, px, py in labelled])]

    def covered(box: Bbox) -> float:
        if box.x0 < fig.bbox.x0 or box.x1 > fig.bbox.x1 or box.y1 > fig.bbox.y1:
            return float("inf")  # cut off
        outside = box.width * box.height * (box.x0 < ax.bbox.x0 or box.x1 > ax.bbox.x1
                                            or box.y0 < ax.bbox.y0 or box.y1 > ax.bbox.y1)
        return outside + sum(max(0.0, min(box.x1, t.x1) - max(box.x0, t.x0))
                             * max(0.0, min(box.y1, t.y1) - max(box.y0, t.y0)) for t in taken)

    for name, x, y in sorted(labelled, key=lambda p: (p[1], p[2])):
        best = None
        for dx, dy in LABEL_OFFSETS:
            leader = {"arrowstyle": "-", "lw": 0.5, "color": "0.4"} if abs(dy) > 11 else None
            label = ax.annotate(name, (x, y), textcoords="offset points", xytext=(dx, dy),
                                fontsize=7, ha="left" if dx >= 0 else "right",
                                arrowprops=leader)
            label.update_positions(renderer)
            box = Text.get_window_extent(label, renderer)  # the name, not its leader line
            cost = covered(box)
            if best is None or cost < best[0]:
                if best is not None:
                    best[1].remove()
                best = (cost, label, box)
            else:
                label.remove()
            if cost == 0:
                break
        taken.append(best[2])
    return taken[len(labelled):]


SSIM_AXIS = "attacker SSIM (strongest attack, mean over test images; lower = more private)"


def save_tradeoff(path: Path, points: Sequence[dict], plain_acc: float | None, title: str,
                  x_label: str = SSIM_AXIS) -> Path:
    """Accuracy (y) vs the strongest attack's privacy figure (x: its mean SSIM unless `x_label`
    says otherwise); the Pareto front joined by a line.

    Each point: {"name", "kind" ("obfuscator"/"baseline"), "ssim" or "x", "accuracy", "pareto"}.
    """
    points = [{**p, "x": p.get("x", p.get("ssim"))} for p in points]
    fig = agg_figure(figsize=(7, 5), dpi=120)
    ax = fig.subplots()
    styles = {"obfuscator": ("tab:blue", "o"), "baseline": ("tab:orange", "s")}
    for kind, (color, marker) in styles.items():
        pts = [p for p in points if p["kind"] == kind]
        if pts:
            ax.scatter([p["x"] for p in pts], [100 * p["accuracy"] for p in pts], c=color,
                       marker=marker, s=40, label=kind + "s", zorder=3)
    front = sorted((p for p in points if p["pareto"]), key=lambda p: p["x"])
    if front:
        ax.plot([p["x"] for p in front], [100 * p["accuracy"] for p in front], "k--", lw=1,
                zorder=2, label="Pareto front")
        ax.scatter([p["x"] for p in front], [100 * p["accuracy"] for p in front],
                   facecolors="none", edgecolors="k", s=110, zorder=4)
    if plain_acc is not None:
        ax.axhline(100 * plain_acc, color="gray", lw=0.8, ls=":", label="plain images")
    ax.margins(x=0.12, y=0.08)
    ax.set_xlabel(x_label)
    ax.set_ylabel("accuracy of the frozen classifier (%)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")  # never over a point
    fig.tight_layout()
    label_points(fig, ax, [(p["name"], p["x"], 100 * p["accuracy"]) for p in points])
    return save_figure(fig, path)


def slug(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in name)
