"""A trained model as an MLflow pyfunc model: raw review text in, P(positive) and a label out.

Every IMDB training run logs one under the name "model" (see `rnnlab.recording`). It carries the best checkpoint,
the run's tokenizer.json and this package's code, so it needs nothing but its pip requirements:

    mlflow.pyfunc.load_model("runs:/<run id>/model").predict(pd.DataFrame({"text": ["A wonderful film."]}))
    mlflow models predict -m runs:/<run id>/model -i reviews.json --content-type json --env-manager local

with reviews.json as {"dataframe_records": [{"text": "A wonderful film."}]}. The answer has one row per
review: `probability` (P(positive), a float) and `label` ("pos" above 0.5, as training's accuracy counts
it, else "neg"). `python -m rnnlab.predict` wraps this for the command line.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import version
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import torch
from mlflow.models import ModelSignature
from mlflow.models.model import ModelInfo
from mlflow.types import ColSpec, Schema
from tokenizers import Tokenizer

from rnnlab.data.arrays import PreparedSplit
from rnnlab.data.imdb import ReviewDataset, collate
from rnnlab.module import RecurrentModule

MODEL_NAME = "model"
TEXT_COLUMN = "text"
SIGNATURE = ModelSignature(
    inputs=Schema([ColSpec("string", TEXT_COLUMN)]),
    outputs=Schema([ColSpec("double", "probability"), ColSpec("string", "label")]),
)
# What the model imports at predict time; written down rather than inferred, which would load the model
# in a subprocess and take longer than the training runs of the tests.
REQUIREMENTS = ("mlflow", "torch", "pytorch-lightning", "torchmetrics", "tokenizers", "numpy", "pandas", "cloudpickle")
BATCH_SIZE = 256


def review_texts(model_input: Any) -> list[str]:
    """The reviews in `model_input`: a DataFrame with a string column `text`, or a list of str."""
    if isinstance(model_input, pd.DataFrame):
        if TEXT_COLUMN not in model_input.columns:
            raise ValueError(f"expected a column {TEXT_COLUMN!r} of review text, "
                             f"got columns {list(model_input.columns)}")
        texts = model_input[TEXT_COLUMN].tolist()
    elif isinstance(model_input, (list, tuple)):
        texts = list(model_input)
    else:
        raise ValueError(f"expected a DataFrame with a {TEXT_COLUMN!r} column or a list of str, "
                         f"got {type(model_input).__name__}")
    if not texts:
        raise ValueError("no reviews given")
    for k, text in enumerate(texts):
        if not isinstance(text, str):
            raise ValueError(f"review {k} is {type(text).__name__} {text!r}, not text")
    return texts


def token_ids(tokenizer: Tokenizer, texts: list[str]) -> PreparedSplit:
    """`texts` encoded at full length, in the layout `prepare` writes (labels and ratings unknown: zero)."""
    encodings = tokenizer.encode_batch_fast(texts, add_special_tokens=False)
    ids = [np.asarray(encoding.ids, dtype=np.int32) for encoding in encodings]
    for k, review in enumerate(ids):
        if len(review) == 0:
            raise ValueError(f"review {k} has no words: {texts[k][:60]!r}")
    unknown = np.zeros(len(ids), dtype=np.int8)
    return PreparedSplit(np.concatenate(ids), np.array([len(r) for r in ids], dtype=np.int32), unknown, unknown)


class SentimentModel(mlflow.pyfunc.PythonModel):
    """The pyfunc model; artifacts "checkpoint" (Lightning) and "tokenizer" (tokenizer.json)."""

    def __init__(self, max_len: int, keep: str) -> None:
        # The run's data.max_len and data.keep: reviews are cut exactly as they were in training.
        self.max_len, self.keep = max_len, keep

    def load_context(self, context) -> None:
        self.classifier = RecurrentModule.load_from_checkpoint(context.artifacts["checkpoint"], map_location="cpu")
        self.classifier.eval()
        self.tokenizer = Tokenizer.from_file(context.artifacts["tokenizer"])

    # Served through the signature, the input arrives as a DataFrame; called directly, a list of str works too.
    def predict(self, context, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        probability = self.probabilities(review_texts(model_input))
        return pd.DataFrame({"probability": probability, "label": np.where(probability > 0.5, "pos", "neg")})

    @torch.inference_mode()
    def probabilities(self, texts: list[str]) -> np.ndarray:
        # ReviewDataset and collate are the training path: truncation (`keep`), ids beyond the model's
        # vocabulary as <unk>, and padding all happen exactly as they did when the model learned.
        dataset = ReviewDataset(token_ids(self.tokenizer, texts), self.max_len, self.classifier.hparams.vocab_size,
                                self.keep)
        chunks = []
        for start in range(0, len(dataset), BATCH_SIZE):
            tokens, lengths, _ = collate([dataset[k] for k in range(start, min(start + BATCH_SIZE, len(dataset)))])
            chunks.append(torch.sigmoid(self.classifier(tokens, lengths)))
        return torch.cat(chunks).double().numpy()


def pinned_requirements() -> list[str]:
    # Without local labels (torch "2.13.0+cpu" -> "2.13.0"), so they install from PyPI, as MLflow's own do.
    return [f"{name}=={version(name).split('+')[0]}" for name in REQUIREMENTS]


@contextmanager
def use_tracking_uri(uri: str) -> Iterator[None]:
    """Point MLflow's fluent API (log_model, load_model) at `uri`, then put the process back as it was.

    `mlflow.set_tracking_uri` also writes $MLFLOW_TRACKING_URI, so that is restored too.
    """
    env_before = os.environ.get("MLFLOW_TRACKING_URI")
    uri_before = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(uri_before)
        if env_before is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = env_before


def log_sentiment_model(run_id: str, tracking_uri: str, checkpoint_path: str | Path, tokenizer_path: str | Path,
                        max_len: int, keep: str) -> ModelInfo:
    """Log a `SentimentModel` into run `run_id` under the name "model" (`runs:/<run_id>/model`).

    The run is resumed for the logging and left FINISHED (FAILED if logging fails); its caller
    `RunRecord` sets the final status right after.
    """
    with use_tracking_uri(tracking_uri), mlflow.start_run(run_id=run_id):
        return mlflow.pyfunc.log_model(
            name=MODEL_NAME,
            python_model=SentimentModel(max_len, keep),
            artifacts={"checkpoint": str(checkpoint_path), "tokenizer": str(tokenizer_path)},
            # rnnlab is not on any index: the model carries the code it was trained with.
            code_paths=[str(Path(__file__).parent)],
            signature=SIGNATURE,
            # MLflow stores it for `mlflow models predict` users and checks, by loading the model, that it serves.
            input_example=pd.DataFrame({TEXT_COLUMN: ["A wonderful film, great acting."]}),
            pip_requirements=pinned_requirements(),
        )
