"""Image plots a person wants to see: data beside reconstructions, samples from the prior."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def _as_images(x: np.ndarray, image_shape: tuple[int, ...]) -> np.ndarray:
    """Rows [n, D] as pictures: [n, H, W] (grey; the first channel of an image with neither 1, 3
    nor 4 channels) or [n, H, W, 3 or 4] (colour); rows that are not images as near-square ones."""
    if len(image_shape) == 3:
        images = x.reshape(len(x), *image_shape)
        return images if image_shape[-1] in (3, 4) else images[..., 0]
    side = math.isqrt(x.shape[1])
    return x.reshape(len(x), side, -1) if side * side == x.shape[1] else x.reshape(len(x), 1, -1)


def image_grid(rows: list[np.ndarray], image_shape: tuple[int, ...], path: Path, title: str,
               row_labels: list[str] | None = None, vmax: float = 1.0) -> None:
    """Save a grid: one row of images per array in `rows` (each [n, D], values in [0, vmax])."""
    n_cols = max(len(row) for row in rows)
    fig, axes = plt.subplots(len(rows), n_cols, figsize=(n_cols * 0.9, len(rows) * 0.9 + 0.5), squeeze=False)
    for r, row in enumerate(rows):
        images = _as_images(np.asarray(row), image_shape)
        for c, ax in enumerate(axes[r]):
            ax.set_xticks([]), ax.set_yticks([])
            if c < len(images):
                ax.imshow(np.clip(images[c] / vmax, 0, 1), cmap="gray_r" if images.ndim == 3 else None, vmin=0, vmax=1)
            if c == 0 and row_labels:
                ax.set_ylabel(row_labels[r], fontsize=7)
    fig.suptitle(title, fontsize=9)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)


def latent_codes(codes: np.ndarray, labels: np.ndarray | None, grid: tuple[np.ndarray, np.ndarray, np.ndarray],
                 path: Path, title: str) -> None:
    """A 2-D latent space: the prior's log-density on `grid` (its x and y axes and the values
    [len(y), len(x)]) as a colour map, the codes [N, 2] over it, coloured by label where there
    are labels."""
    xs, ys, log_density = grid
    fig, ax = plt.subplots(figsize=(6, 5))
    mesh = ax.pcolormesh(xs, ys, log_density, cmap="Greys", shading="auto",
                         vmin=max(log_density.min(), log_density.max() - 12))
    fig.colorbar(mesh, ax=ax, label="log p(z)")
    if labels is None:
        ax.scatter(codes[:, 0], codes[:, 1], s=6, c="tab:red")
    else:
        points = ax.scatter(codes[:, 0], codes[:, 1], s=6, c=labels, cmap="tab10", vmin=-0.5, vmax=9.5)
        fig.colorbar(points, ax=ax, label="label", ticks=range(10))
    ax.set_xlabel("z_1"), ax.set_ylabel("z_2")
    ax.set_title(title, fontsize=9)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
