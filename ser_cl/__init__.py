"""ser-cl: speech emotion recognition with contrastive learning."""

__version__ = "0.1.0"
