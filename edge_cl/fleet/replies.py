"""The metric keys of a train reply, shared by the ClientApp (which writes them) and the ServerApp (which reads
them). Standard library only: the ClientApp starts once per Flower message and must stay light.

A device that takes part sends one ArrayRecord (its weights) and ``{num-examples: n}``. A device below its
``fleet.min_new_samples`` sends no ArrayRecord, only counts: ``{num-examples: 0, skipped: 1, new-samples: n,
min-new-samples: m}``, which the server tells apart by ``skipped`` and leaves out of the average.
"""

from __future__ import annotations

from collections.abc import Mapping

NUM_EXAMPLES = "num-examples"  # FedAvg's default weighted_by_key
SKIPPED = "skipped"
NEW_SAMPLES = "new-samples"
MIN_NEW_SAMPLES = "min-new-samples"


def skipped_metrics(new_samples: int, min_new_samples: int) -> dict[str, int]:
    """The metrics of a reply without weights."""
    return {NUM_EXAMPLES: 0, SKIPPED: 1, NEW_SAMPLES: int(new_samples), MIN_NEW_SAMPLES: int(min_new_samples)}


def skip_reason(metrics: Mapping[str, object]) -> str | None:
    """Why a reply carries no weights, from its metrics; None for a reply that takes part."""
    if not metrics.get(SKIPPED):
        return None
    return (f"learned {metrics.get(NEW_SAMPLES)} samples since its last merge, below its fleet.min_new_samples "
            f"{metrics.get(MIN_NEW_SAMPLES)}")
