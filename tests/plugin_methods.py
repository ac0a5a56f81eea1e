"""A method module outside the package, imported by name through ``plugins`` / ``--plugins`` in tests."""

from __future__ import annotations

from edge_cl import methods
from edge_cl.methods import Method


@methods.register
class PluginReplay(Method):
    """Replay with a name of its own: proves a user's module makes a method usable by name everywhere."""

    name = "plugin-replay"
    uses_buffer = True

    def replay_draws(self):  # type: ignore[no-untyped-def]
        return [methods.Draw("replay", self.ctx.replay_batch, join_ce=True)]
