"""The feature grid: which time span each feature step covers (docs/CONTRACTS.md, "Feature grid")."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Annotated

from pydantic import Field


@dataclass(frozen=True)
class Grid:
    """A feature extractor's sampling: ``window`` frames per step, one step every ``feat_stride`` frames.

    The field constraints apply where a grid is read from a file (the manifest's pydantic model)."""

    fps: Annotated[float, Field(strict=True, gt=0, allow_inf_nan=False)]
    feat_stride: Annotated[int, Field(strict=True, ge=1)]
    window: Annotated[int, Field(strict=True, ge=1)]

    @property
    def step_s(self) -> float:
        """Seconds between consecutive steps (0.32 s I3D, 0.25 s ONE-PEACE)."""
        return self.feat_stride / self.fps

    @property
    def offset_s(self) -> float:
        """Centre of step 0 in seconds (0.48 s I3D, 0.5 s ONE-PEACE)."""
        return self.window / (2.0 * self.fps)

    def num_steps(self, duration: float) -> int:
        """Steps whose windows cover ``duration`` seconds (the last window may run past the end)."""
        frames = duration * self.fps
        return max(1, math.ceil((frames - self.window) / self.feat_stride - 1e-9) + 1)

    def centres(self, num_steps: int):
        """Step centres in seconds, ``[T]``."""
        import numpy as np

        return self.offset_s + self.step_s * np.arange(num_steps, dtype=np.float64)

    def steps_to_seconds(self, start_step: int, end_step: int, duration: float) -> tuple[float, float]:
        """The span of the run of steps ``start_step..end_step`` (inclusive), clipped to ``[0, duration]``."""
        t0 = self.offset_s + (start_step - 0.5) * self.step_s
        t1 = self.offset_s + (end_step + 0.5) * self.step_s
        return max(0.0, min(duration, t0)), max(0.0, min(duration, t1))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Grid:
        return cls(fps=float(d["fps"]), feat_stride=int(d["feat_stride"]), window=int(d["window"]))


I3D_GRID = Grid(fps=25.0, feat_stride=8, window=24)
ONEPEACE_GRID = Grid(fps=16.0, feat_stride=4, window=16)
