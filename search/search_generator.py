"""Ray's SearchGenerator, made to follow an experiment that was copied or moved.

Ray saves the search generator with the experiment's spec, which holds the experiment's
storage (its absolute location), and creates every trial it draws after a restore with that
storage: a copy of an experiment resumed elsewhere would put its new trials (checkpoints
included) into the original. Restored here, it takes the location the experiment is run at.
"""

from __future__ import annotations

import copy
from typing import Any

from ray.tune.search import SearchGenerator

from genretune.search.experiment import experiment_being_run


class RelocatableSearchGenerator(SearchGenerator):
    def set_state(self, state: dict[str, Any]) -> None:
        super().set_state(state)
        path = experiment_being_run()
        spec = getattr(self._experiment, "spec", None)
        storage = spec.get("storage") if isinstance(spec, dict) else None
        if path is None or storage is None:
            return  # cloud storage, or nothing saved: Ray's own paths hold
        here = copy.copy(storage)
        here.storage_fs_path = str(path.parent)
        here.experiment_dir_name = path.name
        spec["storage"] = here
        if getattr(self._experiment, "storage", None) is storage:
            self._experiment.storage = here
