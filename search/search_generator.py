"""Ray's SearchGenerator, made to follow an experiment that was copied or moved.

Ray saves the search generator with the experiment's spec, which holds the experiment's
storage (its absolute location), and creates every trial it draws after a restore with that
storage: a copy of an experiment resumed elsewhere would put its new trials (checkpoints
included) into the original. Restored here, it takes the location the experiment is run at.
"""

from __future__ import annotations

from typing import Any

from ray.tune.search import SearchGenerator

from genretune.results.internals import point_generator_at
from genretune.search.experiment_writer import experiment_being_run


class RelocatableSearchGenerator(SearchGenerator):
    def set_state(self, state: dict[str, Any]) -> None:
        super().set_state(state)
        path = experiment_being_run()
        if path is not None:  # None: cloud storage, where Ray's own paths hold
            point_generator_at(self, path)
