"""`modelreg compare --plot FILE.png`: one bar chart per metric, versions side by side.

Called by `modelreg.cli.main`. matplotlib is optional (the `cli` extra) and imported here only,
with the non-interactive Agg backend, so it works on servers without a display. Each metric gets
its own panel because metrics live on different scales (an AUC next to a latency in ms).
"""

from __future__ import annotations

import math
from pathlib import Path

from modelreg.sdk.client import Comparison
from modelreg.sdk.errors import InvalidArgument, ModelregError


def plot_comparison(c: Comparison, dest: Path) -> Path:
    if dest.suffix.lower() not in (".png", ".svg", ".pdf"):
        raise InvalidArgument(f"{dest}: the plot file must end in .png, .svg or .pdf")
    if not c.metrics:
        raise InvalidArgument(f"no metrics to plot for {c.model}")
    try:
        import matplotlib  # noqa: PLC0415 - optional and heavy

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415
    except ImportError as e:
        raise ModelregError("plotting needs matplotlib: pip install 'modelreg[cli]'") from e
    n = len(c.metrics)
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    labels = [f"v{mv.spec.version}" for mv in c.versions]
    for i, metric in enumerate(c.metrics):
        ax = axes[i // cols][i % cols]
        values = [c.table[metric].get(mv.spec.version) for mv in c.versions]
        heights = [v if v is not None else 0.0 for v in values]
        bars = ax.bar(labels, heights, color="#4C72B0")
        for bar, v in zip(bars, values, strict=True):
            text = "n/a" if v is None else f"{v:.4g}"
            ax.annotate(
                text,
                (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                ha="center",
                va="bottom",
                fontsize=8,
            )
        ax.set_title(metric)
        ax.grid(axis="y", alpha=0.3)
    for j in range(n, rows * cols):
        axes[j // cols][j % cols].axis("off")
    fig.suptitle(f"{c.model}: metrics by version")
    fig.tight_layout()
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(dest, dpi=110)
    except OSError as e:
        raise InvalidArgument(f"cannot write {dest}: {e.strerror or e}") from e
    finally:
        plt.close(fig)
    return dest
