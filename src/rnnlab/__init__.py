"""rnnlab: a reproducible benchmark of simple RNN, LSTM and GRU cells on IMDB sentiment."""

from pathlib import Path

# The package's own folder: what a run's code hash covers and what a served model carries.
PACKAGE_DIR = Path(__file__).resolve().parent
