"""The closure methods a study compares, in table order, with their display labels.

Kept apart from :mod:`ensemble.study` so the command line lists them without importing torch.
"""

from __future__ import annotations

from models.config import METHODS as LEARNED

LES_ONLY = ("smagorinsky", "dynamic-smagorinsky")
METHODS = ("none", *LES_ONLY, *LEARNED)
LABELS = {
    "none": "no closure", "smagorinsky": "Smagorinsky", "dynamic-smagorinsky": "dynamic Smagorinsky",
    "pcdm": "P-CDM", "lcdm": "conventional L-CDM", "joint-lcdm": "joint L-CDM", "flow": "latent flow matching",
}
