"""clasp-dist: distributed weakly-supervised dense audio-visual event localization with CLASP."""

__version__ = "0.1.0"
