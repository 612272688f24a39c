"""What the figure-drawing modules share: matplotlib imported only when a figure is drawn (it is the optional `plots`
extra), PNG files written atomically, and curves drawn from lists of points.

Figures are built with matplotlib's object-oriented `Figure` rather than pyplot, so drawing neither switches the
caller's backend nor leaves figures open in pyplot's global registry.
"""

import io
import os
from collections.abc import Sequence
from pathlib import Path

from ..files import write_atomic

INSTALL_HINT = 'Drawing figures needs matplotlib, the optional "plots" extra: pip install "vaswani_hf[plots]"'


def new_figure(**kwargs):
    """A matplotlib `Figure(**kwargs)`.

    Raises:
        ImportError: naming `pip install "vaswani_hf[plots]"` when matplotlib is not installed.
    """
    try:
        from matplotlib.figure import Figure
    except ImportError as error:
        raise ImportError(INSTALL_HINT) from error
    return Figure(**kwargs)


def save_png(figure, path: str | os.PathLike, **savefig_kwargs) -> Path:
    """Writes `figure` to `path` as a PNG, atomically (`write_atomic`): `path` never holds a partial image, even when
    the process is killed while writing. Missing parent folders are made. Returns the path."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", **savefig_kwargs)
    write_atomic(path, buffer.getvalue())
    return Path(path)


def plot_points(axis, points: Sequence[dict], x: str, y: str, style: str = "o-", **plot_kwargs) -> None:
    """Draws `points`, dicts such as those of a learning curve, on `axis`: the values of key `x` across, of key `y`
    up, in matplotlib's `style` (markers and line)."""
    axis.plot([point[x] for point in points], [point[y] for point in points], style, **plot_kwargs)
