"""Evaluation: recognition metrics (UA/WA), embedding probes (SVM, retrieval, clustering), report.

Nothing here imports torch; scikit-learn/scipy are imported when a probe runs, matplotlib only
when plots are written.
"""

from __future__ import annotations

from ser_cl.metrics import (
    classification_report,
    confusion_matrix,
    unweighted_accuracy,
    weighted_accuracy,
)
from ser_cl.eval.probe import (
    clustering_scores,
    probe_embeddings,
    probe_saved_embeddings,
    retrieval_recall_at_1,
)
from ser_cl.eval.report import build_table, collect_runs, render, write_report
from ser_cl.linear_svm import fit_linear_svm

__all__ = [
    "build_table",
    "classification_report",
    "clustering_scores",
    "collect_runs",
    "confusion_matrix",
    "fit_linear_svm",
    "probe_embeddings",
    "probe_saved_embeddings",
    "render",
    "retrieval_recall_at_1",
    "unweighted_accuracy",
    "weighted_accuracy",
    "write_report",
]
