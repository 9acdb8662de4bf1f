"""From stores to training batches: padding and cropping (``batching``), the epoch plan and its
background gather (``loader``), SpecAugment, views and mixup (``augment``), host arrays to
the device (``transfer``), pretraining pools of several stores (``pool``) and a fold's
training copies from speed-perturbed stores (``copies``).

May import: frontends, corpora, splits, stores.
"""
