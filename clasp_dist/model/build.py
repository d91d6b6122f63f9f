"""The one way to build CLASP for a run: its config's ``model`` section and its dataset's dims and classes."""

from __future__ import annotations

from .clasp import CLASP


def build_model(cfg, info) -> CLASP:
    """CLASP for ``cfg.model`` on a dataset described by ``info`` (a ``data.manifest.DatasetInfo``)."""
    return CLASP(cfg.model, info.visual_dim, info.audio_dim, info.num_classes)
