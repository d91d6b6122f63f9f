"""The generator's record of where it drew distractors, regenerated from a manifest's ``synth`` entry
and checked bit-for-bit against the shard features."""

from __future__ import annotations

import hashlib
import logging

import numpy as np

from ..data.annotations import load_annotations, packaged_unav100_path
from ..data.grid import Grid
from ..data.synthetic import GENERATOR_VERSION, SynthProfile, make_class_bank, synthesize_video

log = logging.getLogger(__name__)


class DistractorRecord:
    """Regenerates the generator's presences of a semi-synthetic dataset from its manifest ``synth`` entry.

    `presences(video_id, visual, audio)` returns the list, or None when the dataset is not generated,
    the annotation file differs from the packaged one, or the regenerated features do not equal the
    shard's (each case logged once and counted in `unavailable`)."""

    def __init__(self, synth: dict | None):
        self.reason = ""
        self.unavailable = 0
        self._ready = False
        if not synth:
            self.reason = "not a generated dataset (no synth entry in the manifest)"
            return
        if synth.get("generator_version") != GENERATOR_VERSION:
            self.reason = f"generator version {synth.get('generator_version')} != {GENERATOR_VERSION}"
            return
        if hashlib.sha256(packaged_unav100_path().read_bytes()).hexdigest() != synth.get("annotations_sha256"):
            self.reason = "generated from an annotation file other than the packaged one"
            return
        prof = dict(synth["profile"])
        prof["grid"] = Grid.from_dict(prof["grid"])
        for key in ("distractor_mix", "distractor_len_s"):
            prof[key] = tuple(prof[key])
        self.profile = SynthProfile(**prof)
        self.seed = int(synth["seed"])
        ann = load_annotations()
        self.videos = {v.video_id: v for videos in ann.splits.values() for v in videos}
        self.bank = make_class_bank(self.profile, len(ann.classes), self.seed)
        self._ready = True

    def presences(self, video_id: str, visual: np.ndarray, audio: np.ndarray) -> list | None:
        if not self._ready or video_id not in self.videos:
            self.unavailable += 1
            return None
        v, a, presences = synthesize_video(self.videos[video_id], self.profile, self.bank, self.seed)
        same = (
            v.shape == visual.shape
            and a.shape == audio.shape  # compared in the shard's dtype (e.g. float16)
            and np.array_equal(v.astype(visual.dtype), visual)
            and np.array_equal(a.astype(audio.dtype), audio)
        )
        if not same:
            self.unavailable += 1
            if self.unavailable == 1:
                log.warning(
                    "diagnostics: regenerated features of %s differ from the shard's; distractor figures "
                    "skip such videos",
                    video_id,
                )
            return None
        return presences
