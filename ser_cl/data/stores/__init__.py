"""Feature stores: a DATA_DIR and everything in it. ``prepare`` writes it (corpus -> front-end
-> manifest.csv, features.npy, offsets.npy, prepare.json, speaker_stats.npz) through the
per-file cache (``feature_cache``); ``store.FeatureStore`` reads it; ``normalize`` computes
per-band statistics over its utterances; ``functionals`` caches openSMILE functionals of a
store's audio (the classical baseline); ``fold_listing`` is ``ser-cl folds`` on a store;
``summary`` the lines prepare and synth print. The store's file format lives in this room
alone: its writer and its reader side by side.

May import: frontends, corpora, splits.
"""
