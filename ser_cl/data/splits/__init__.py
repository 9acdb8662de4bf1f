"""Speaker-independent folds: which speakers train, validate and test in each fold.
``folds`` holds the protocols (``make_folds``, ``Fold``, ``auto_protocol``); ``fold_files``
reads and writes fold files (EmoBox's fold_K/ folders, a CSV). A fold is a function of the
utterances' speakers, sessions and ids (any store-like object gives them): nothing here
reads audio or features.

May import: nothing else in ser_cl.data.
"""
