"""A trained model applied to review text, and the one the pipeline stands behind.

    sentiment.py     `Sentiment`: a checkpoint's weights (weights-only) and a tokenizer, review text in, P(positive) out
    pyfunc.py        the same as an MLflow pyfunc "model from code", logged with every IMDB run
    served_model.py  the file MLflow runs to build that model
    registry.py      the champion alias on registered model "rnnlab-imdb"
"""
