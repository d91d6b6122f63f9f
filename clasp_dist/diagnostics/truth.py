"""Step categories of one video: event, distractor (one-stream presence, not an event), background."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

CATEGORIES = ("event", "distractor", "background")


@dataclass
class VideoTruth:
    """Where, on one video's step grid, the events and (when known) the distractors are."""

    event: np.ndarray  # [T] bool, any ground-truth segment
    event_by_class: dict[int, np.ndarray]  # class -> [T] bool
    distractor: np.ndarray | None = None  # [T] bool, one-stream presence and not an event
    distractor_by_class: dict[int, np.ndarray] = field(
        default_factory=dict
    )  # class -> [T] bool, not that class's event
    segment_steps: list[tuple[int, np.ndarray]] = field(default_factory=list)  # (class, [T] bool) per segment

    @property
    def labelled_distractor(self) -> np.ndarray | None:
        """[T] bool: distractor steps of a class the video is labelled with (an off-screen sound or a silent object
        of one of its events' classes), the ones MEAE's agreement over the video's classes is meant to reject."""
        if self.distractor is None:
            return None
        out = np.zeros_like(self.distractor)
        for c in self.event_by_class:
            if c in self.distractor_by_class:
                out |= self.distractor_by_class[c]
        return out & self.distractor


def covered(centres: np.ndarray, start: float, end: float) -> np.ndarray:
    """[T] bool: step centres inside [start, end]; a span shorter than a step still covers its nearest step."""
    inside = (centres >= start) & (centres <= end)
    if not inside.any() and centres.size:
        inside[int(np.argmin(np.abs(centres - 0.5 * (start + end))))] = True
    return inside


def video_truth(centres: np.ndarray, segments: Iterable, presences: list | None = None) -> VideoTruth:
    """Step categories from ground truth ``(start, end, class)`` and generator presences (or None)."""
    T = centres.size
    event = np.zeros(T, dtype=bool)
    by_class: dict[int, np.ndarray] = {}
    seg_steps = []
    for s, e, c in segments:
        steps = covered(centres, float(s), float(e))
        seg_steps.append((int(c), steps))
        event |= steps
        by_class[int(c)] = by_class.get(int(c), np.zeros(T, dtype=bool)) | steps
    truth = VideoTruth(event, by_class, segment_steps=seg_steps)
    if presences is not None:
        distractor = np.zeros(T, dtype=bool)
        for p in presences:
            if p.kind == "event":
                continue
            span = p.visual or p.audio
            steps = covered(centres, span[0], span[1])
            distractor |= steps
            own = by_class.get(p.cls, np.zeros(T, dtype=bool))
            truth.distractor_by_class[p.cls] = truth.distractor_by_class.get(p.cls, np.zeros(T, dtype=bool)) | (
                steps & ~own
            )
        truth.distractor = distractor & ~event
    return truth
