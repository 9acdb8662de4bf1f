"""TensorBoard logs of a fold (optional: ``pip install "ser-cl[tensorboard]"``; docs/tensorboard.md).

``FoldLog`` writes under ``<fold dir>/tensorboard/``, from rank 0 only:

* each epoch, every float of the loop's record, at step = the record's epoch (1-based, as in
  metrics.jsonl): ``train_<x>`` -> ``train/<x>``, ``val_<x>`` -> ``val/<x>``, ``lr`` ->
  ``lr/encoder``, ``head_lr`` -> ``lr/head``, anything else (``seconds``) -> ``epoch/<key>``
  (``scalar_tag``);
* at the end, with a classifier head, ``final/{val,test}_{ua,wa}`` (the best checkpoint's scores,
  as in metrics.json) and ``confusion/{val,test}``: an image when matplotlib is installed, else
  a markdown table; at step = the epochs run.

It is a mirror: metrics.jsonl and metrics.json stay the record that everything else reads.
``optim.tensorboard``: "auto" logs when the package is importable and is silent otherwise, "on"
stops with a one-line ConfigError naming the pip command when it is not, "off" writes nothing.

A resumed fold opens a new event file in the same folder; its first epoch is written with
``purge_step``, so TensorBoard drops what an earlier file logged at that epoch or after (a fold
restarted from scratch after ``last.pt`` was deleted shows the new curves only).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Optional, Sequence

import numpy as np

from ser_cl.config import ConfigError

TENSORBOARD_DIR = "tensorboard"  # under the fold dir
INSTALL_HINT = 'pip install "ser-cl[tensorboard]"'


def _summary_writer_class(mode: str) -> Optional[type]:
    """SummaryWriter, or None ("off"; "auto" without the package); "on" without it: ConfigError."""
    if mode == "off":
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as err:
        if mode == "on":
            cause = " ".join(str(err).split())
            raise ConfigError(f"optim.tensorboard = \"on\" needs TensorBoard ({cause}): {INSTALL_HINT}, "
                              "or set optim.tensorboard = \"auto\" / \"off\"") from None
        return None
    return SummaryWriter


def scalar_tag(key: str) -> str:
    """The TensorBoard tag of a metrics.jsonl key: ``val_ua`` -> ``val/ua``, ``lr`` -> ``lr/encoder``."""
    if key in ("lr", "head_lr"):
        return "lr/encoder" if key == "lr" else "lr/head"
    prefix, _, rest = key.partition("_")
    return f"{prefix}/{rest}" if prefix in ("train", "val") and rest else f"epoch/{key}"


def _matplotlib():
    """(Figure, FigureCanvasAgg), or None without matplotlib. Rendered off pyplot: no backend is
    chosen or switched for the process."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return None
    return Figure, FigureCanvasAgg


def confusion_image(confusion: np.ndarray, classes: Sequence[str], title: str) -> Optional[np.ndarray]:
    """The confusion matrix as an RGB image (H, W, 3; rows true classes, colour the row's share,
    cells the counts), or None without matplotlib."""
    mpl = _matplotlib()
    if mpl is None:
        return None
    figure_class, canvas_class = mpl
    n = len(classes)
    fig = figure_class(figsize=(1.6 + 0.7 * n, 1.2 + 0.7 * n), dpi=100)
    canvas = canvas_class(fig)
    ax = fig.add_subplot()
    share = confusion / np.maximum(confusion.sum(axis=1, keepdims=True), 1)
    ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
    for i in range(n):
        for j in range(n):
            ax.text(j, i, str(int(confusion[i, j])), ha="center", va="center",
                    color="white" if share[i, j] > 0.5 else "black")
    ax.set_xticks(range(n), list(classes), rotation=45, ha="right")
    ax.set_yticks(range(n), list(classes))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.tight_layout()
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def confusion_markdown(confusion: np.ndarray, classes: Sequence[str]) -> str:
    """The confusion matrix as a markdown table (TensorBoard's text tab renders it)."""
    lines = ["| true \\ predicted | " + " | ".join(classes) + " |", "|---" * (len(classes) + 1) + "|"]
    lines += [f"| {name} | " + " | ".join(str(int(v)) for v in row) + " |" for name, row in zip(classes, confusion)]
    return "\n".join(lines)


class FoldLog:
    """One fold's TensorBoard writer, a no-op when logging is off (``enabled`` False: not rank 0).

    ``mode`` is checked on every rank, so that "on" without the package stops them all alike.
    The event file is opened at the first thing logged; use as a context manager, or ``close()``.
    """

    def __init__(self, fold_dir: Path, mode: str, enabled: bool = True):
        writer_class = _summary_writer_class(mode)
        self._writer_class = writer_class if enabled else None
        self.log_dir = Path(fold_dir) / TENSORBOARD_DIR
        self._writer: Any = None

    @property
    def active(self) -> bool:
        return self._writer_class is not None

    def _open(self, purge_step: Optional[int] = None) -> Any:
        if self._writer is None:
            self._writer = self._writer_class(log_dir=str(self.log_dir), purge_step=purge_step)
        return self._writer

    def epoch(self, record: Dict[str, Any]) -> None:
        """Every float of one metrics.jsonl record, at step = its epoch; flushed, so that a killed
        run's logs hold the epochs metrics.jsonl holds."""
        if not self.active:
            return
        step = int(record["epoch"])
        writer = self._open(purge_step=step)
        for key, value in record.items():
            if isinstance(value, float):
                writer.add_scalar(scalar_tag(key), value, step)
        writer.flush()

    def final(self, metrics: Dict[str, Any]) -> None:
        """The best checkpoint's val / test UA, WA and confusion matrix (metrics.json's), at step =
        the epochs run. Nothing for a part without scores (no head; an empty test part)."""
        if not self.active:
            return
        step = int(metrics.get("epochs_run") or 0)
        classes = [str(c) for c in metrics.get("classes") or []]
        for part in ("val", "test"):
            scores = metrics.get(part)
            if not scores:
                continue
            writer = self._open()
            writer.add_scalar(f"final/{part}_ua", float(scores["ua"]), step)
            writer.add_scalar(f"final/{part}_wa", float(scores["wa"]), step)
            confusion = np.asarray(scores["confusion"])
            names = classes if len(classes) == len(confusion) else [str(i) for i in range(len(confusion))]
            image = confusion_image(confusion, names, f"{part}: UA {100 * scores['ua']:.1f}%, "
                                                      f"WA {100 * scores['wa']:.1f}%")
            if image is not None:
                writer.add_image(f"confusion/{part}", image, step, dataformats="HWC")
            else:
                writer.add_text(f"confusion/{part}", confusion_markdown(confusion, names), step)
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def __enter__(self) -> "FoldLog":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
