"""The code of every served rnnlab model, for MLflow's "models from code" (no pickled Python object).

`rnnlab.serve.pyfunc.log_sentiment_model` logs this file with each IMDB run's model, together with the part of
rnnlab it imports (`SERVED_CODE`); MLflow runs it whenever the model is loaded (`mlflow.pyfunc.load_model`,
`mlflow models predict`), with that copy of rnnlab on sys.path. What the model reads (checkpoint, tokenizer, max_len, keep) comes
through its artifacts and model_config.
"""

import mlflow

from rnnlab.serve.pyfunc import SentimentModel

mlflow.models.set_model(SentimentModel())
