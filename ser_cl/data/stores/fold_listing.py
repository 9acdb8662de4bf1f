"""``ser-cl folds``: the folds of a prepared store under a protocol, as a table, optionally
exported to a folds file (``ser_cl.data.splits.fold_files``)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional

from ser_cl.data.splits.coverage import fold_gap_warnings, thin_class_warnings
from ser_cl.data.splits.fold_files import write_folds
from ser_cl.data.splits.folds import Fold, auto_protocol, make_folds
from ser_cl.data.stores.store import FeatureStore


@dataclass
class FoldListing:
    """The folds ``list_folds`` made, the line that introduces them, the notes making them gave
    (``FoldFileNote`` and other warnings, one line each), where they were exported (or None) and
    the class-coverage warnings (``ser_cl.data.splits.coverage``: a class with fewer than 2 speakers, a
    fold whose training speakers lack a class its test speakers have), one line each."""

    folds: List[Fold]
    heading: str
    notes: List[str]
    written: Optional[Path]
    warnings: List[str] = field(default_factory=list)

    def table(self) -> List[str]:
        """One line per fold: its validation and test speakers and the sizes of its three parts."""
        lines = [f"{'fold':<8} {'val speakers':<16} {'test speakers':<20} {'train':>6} {'val':>6} {'test':>6}"]
        for f in self.folds:
            lines.append(
                f"{f.name:<8} {','.join(f.val_speakers):<16} {','.join(f.test_speakers):<20} "
                f"{f.train.size:>6} {f.val.size:>6} {f.test.size:>6}"
            )
        return lines


def list_folds(data_dir: str | Path, protocol: str = "auto", folds_file: Optional[str | Path] = None,
               n_folds: int = 5, val_speakers: int = 1, export: Optional[str | Path] = None) -> FoldListing:
    """The folds of the store at ``data_dir``: ``protocol`` (``auto``: as training picks it; a
    ``folds_file`` with ``auto`` means ``file``), written to ``export`` (``write_folds``) when
    given. Raises FileNotFoundError / ValueError (one line) as the store and ``make_folds`` do."""
    if folds_file is not None and protocol == "auto":
        protocol = "file"
    store = FeatureStore(data_dir)
    chosen = auto_protocol(store) if protocol == "auto" else protocol
    with warnings.catch_warnings(record=True) as notes:
        warnings.simplefilter("always")
        fold_list = make_folds(store, chosen, val_speakers=val_speakers, n_folds=n_folds,
                               folds_file=str(folds_file or ""))
    written = write_folds(fold_list, store.rows, export, store.info.get("corpus") or store.data_dir.name) \
        if export is not None else None
    where = f"file: {folds_file}" if chosen == "file" else chosen
    heading = f"{len(fold_list)} folds ({where}) over {len(store)} utterances, {len(set(store.speakers))} speakers"
    coverage = []
    if store.labeled:
        labels = [store.classes[i] for i in store.labels]
        coverage = thin_class_warnings(labels, store.speakers, store.classes)
        coverage += fold_gap_warnings(store.labels, store.classes, [f for f in fold_list if f.test.size])
    return FoldListing(fold_list, heading, [str(note.message) for note in notes], written, coverage)
