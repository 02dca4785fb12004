"""Reading experiment directories: trial dataframes, plots and best-config export."""

from genretune.results.experiment import Experiment, load_experiment

__all__ = ["Experiment", "load_experiment"]
