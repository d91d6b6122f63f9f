"""Inference: per-video predictions from a checkpoint and their decoding into timed segments.

Importing this package does not import Ray; ``predict`` imports it where used.
"""
