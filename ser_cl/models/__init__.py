"""Models: the thesis sequence encoder with its classifier and projection heads."""

from __future__ import annotations

from ser_cl.models.encoder import PRESETS, ModelConfig, SERModel

__all__ = ["ModelConfig", "PRESETS", "SERModel"]
