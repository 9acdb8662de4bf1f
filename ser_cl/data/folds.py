"""Old import path of ``ser_cl.data.splits.folds``, which docs/folds.md names as Python API:
importing either path gives the same module object."""

import sys

from ser_cl.data.splits import folds as _module

sys.modules[__name__] = _module
