"""Dead letters: records a flow quarantined, to inspect (CLI) and replay after a fix (DAG).

- ``python -m stripe_sitecore.dead_letters list|show|resolve``: the CLI (``__main__.py``);
- ``replay.replay_dead_letters``: what the ``dead_letter_replay`` DAG runs;
- ``registry.REPLAY_HANDLERS``: which sources can be replayed, and by which handler.
"""

from stripe_sitecore.dead_letters.registry import REPLAY_HANDLERS, REPLAYABLE_SOURCES

__all__ = ["REPLAYABLE_SOURCES", "REPLAY_HANDLERS"]
