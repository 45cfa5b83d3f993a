"""rnnlab: a reproducible benchmark of simple RNN, LSTM and GRU cells on IMDB sentiment (README.md)."""
