"""What ``ser-cl prepare`` and ``ser-cl synth`` print about what they did, one line each."""

from __future__ import annotations

from pathlib import Path
from typing import Any, List, Mapping


def prepare_lines(result: Any) -> List[str]:
    """The summary of a ``prepare`` run (a ``PrepareResult``): what went into the store, its
    classes, speakers and folds (or that it is unlabeled), dropped labels and skipped files (the
    first five; all are in prepare.json)."""
    info = result.info
    lines = [
        f"prepared {result.n_utterances} utterances ({result.audio_seconds / 3600:.2f} h) from {info['corpus']} "
        f"into {result.data_dir} in {result.wall_seconds:.1f} s "
        f"({result.stored_computed} computed, {result.stored_cached} from cache)"
    ]
    if info["labeled"]:
        lines.append("classes: " + ", ".join(f"{c} {n}" for c, n in info["counts_per_class"].items()))
        lines.append(f"speakers: {len(info['counts_per_speaker'])}; folds ({info['folds']['protocol']}): {len(info['folds']['folds'])}")
    else:
        known = [s for s in info["counts_per_speaker"] if s]
        lines.append(f"unlabeled: no classes, no folds; {len(known) or 'no'} known speaker(s); "
                     "use it in data.pool of a self-supervised pretrain stage")
    if info["dropped_labels"]:
        lines.append("dropped labels: " + ", ".join(f"{k} {v}" for k, v in info["dropped_labels"].items()))
    if info["skipped"]:
        lines.append(f"skipped {len(info['skipped'])} file(s); reasons in {result.data_dir / 'prepare.json'}:")
        for entry in info["skipped"][:5]:
            lines.append(f"  {entry['path']}: {entry['reason']}")
        if len(info["skipped"]) > 5:
            lines.append(f"  ... and {len(info['skipped']) - 5} more")
    return lines


def synth_lines(summary: Mapping[str, Any], out_dir: str | Path) -> List[str]:
    """What ``synthesize_corpus`` wrote (its summary) and the command that prepares it."""
    return [
        f"wrote {summary['utterances']} utterances ({summary['audio_seconds'] / 60:.1f} min, "
        f"{summary['speakers']} speakers) to {out_dir}; labels: "
        + ", ".join(f"{k} {v}" for k, v in summary["labels"].items()),
        f"next: ser-cl prepare {out_dir} --out DATA_DIR",
    ]
