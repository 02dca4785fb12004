"""Reading experiment directories: trial dataframes, plots and best-config export."""
