"""The data package: corpus folders in, training batches out, in five rooms by job.

- ``frontends``: audio in, frames out (audio files, spectrogram, log-mel, ssl upstreams, openSMILE)
- ``corpora``: corpus folders -> listings of utterances (readers, selection, the synthetic corpus)
- ``splits``: speaker-independent folds (protocols, fold files)
- ``stores``: a DATA_DIR: ``prepare`` writes it, ``FeatureStore`` reads it (cache, statistics)
- ``batches``: stores -> training batches (loader, augmentation, pools, training copies)

Imports between rooms run one way (frontends <- corpora, splits <- stores <- batches);
each room's ``__init__`` says which it may import and tests/test_layout.py checks it. The
modules left at this level are old import paths the documentation named; each hands back
the moved module itself.
"""
