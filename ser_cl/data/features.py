"""Old import path of ``ser_cl.data.frontends.features``, which docs/data.md names as Python API:
importing either path gives the same module object."""

import sys

from ser_cl.data.frontends import features as _module

sys.modules[__name__] = _module
