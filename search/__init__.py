"""Ray Tune + Optuna + ASHA search, and the `genretune` command line (the only package that
starts Ray)."""
