"""openSMILE functionals of one waveform: the computation behind the classical baseline
(``ser_cl.data.stores.functionals``) and the ``functionals`` front-end of ``ser-cl prepare``.

``eGeMAPSv02`` gives 88 values per utterance, ``ComParE_2016`` 6,373, computed by audEERING's
``opensmile`` package (the optional extra ``pip install "ser-cl[baseline]"``): the toolkit these
feature sets were defined in, so the numbers are the ones the literature reports rather than a
re-implementation of them. One ``Smile`` object is made per feature set and process.
"""

from __future__ import annotations

import functools

import numpy as np

FEATURE_SETS = ("eGeMAPSv02", "ComParE_2016")
#: values per utterance of each feature set
DIMS = {"eGeMAPSv02": 88, "ComParE_2016": 6373}
INSTALL_HINT = 'openSMILE functionals need the opensmile package: pip install "ser-cl[baseline]"'


def check_feature_set(feature_set: str) -> str:
    """``feature_set`` if openSMILE knows it here, else a one-line ``ValueError``."""
    if feature_set not in FEATURE_SETS:
        raise ValueError(f"feature set {feature_set!r}: choose one of {', '.join(FEATURE_SETS)}")
    return feature_set


def _opensmile():
    """The opensmile module, or an ImportError naming the pip command."""
    try:
        import opensmile
    except ImportError:
        raise ImportError(INSTALL_HINT) from None
    return opensmile


@functools.lru_cache(maxsize=None)
def smile(feature_set: str):
    """``(opensmile.Smile, opensmile version)`` for ``feature_set`` (functionals level)."""
    check_feature_set(feature_set)
    opensmile = _opensmile()
    return opensmile.Smile(feature_set=getattr(opensmile.FeatureSet, feature_set),
                           feature_level=opensmile.FeatureLevel.Functionals), opensmile.__version__


def opensmile_version() -> str:
    """The installed opensmile package's version (ImportError with the install hint without it)."""
    return _opensmile().__version__


def functionals_vector(wave_16k: np.ndarray, feature_set: str) -> np.ndarray:
    """float32 [DIMS[feature_set]] functionals of a mono 16 kHz waveform."""
    model, _ = smile(feature_set)
    return np.asarray(model.process_signal(np.asarray(wave_16k, dtype=np.float32), 16000),
                      dtype=np.float32).reshape(-1)
