"""Experience replay (Chaudhry et al. 2019) from the learner's reservoir buffer."""

from __future__ import annotations

from collections.abc import Sequence

from edge_cl.methods.base import Draw, Method
from edge_cl.methods.registry import register


@register
class ExperienceReplay(Method):
    """Mixes ``replay_batch`` buffered samples into every step's cross-entropy (one mean over all rows)."""

    name = "er"
    uses_buffer = True
    fixed_shape = True

    def replay_draws(self) -> Sequence[Draw]:
        return (Draw("replay", self.ctx.replay_batch, join_ce=True),)
