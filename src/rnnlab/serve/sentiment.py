"""A trained model applied to review text: raw text in, P(positive) and a label out.

`Sentiment` is the model itself: the weights of a checkpoint in rnnlab's own `RecurrentModule`, read with
`weights_only=True`, and a tokenizer.json, so loading one runs no code that came with the files.
`python -m rnnlab.predict` uses it directly on a run's two files.

Every IMDB training run also logs it as an MLflow pyfunc model under the name "model" (see `rnnlab.run.record`),
for `mlflow models predict` and pyfunc users. That model is "models from code": the file
`rnnlab/serve/served_model.py`, the part of rnnlab it imports, the best checkpoint and the tokenizer; nothing
pickled. It needs nothing but its pip requirements:

    mlflow.pyfunc.load_model("runs:/<run id>/model").predict(pd.DataFrame({"text": ["A wonderful film."]}))
    mlflow models predict -m runs:/<run id>/model -i reviews.json --content-type json --env-manager local

with reviews.json as {"dataframe_records": [{"text": "A wonderful film."}]}. The answer has one row per
review: `probability` (P(positive), a float) and `label` ("pos" above 0.5, as training's accuracy counts
it, else "neg"). Loading a pyfunc model runs the code stored with it: do that only with a store you trust
for code (README, "What a tracking store must be trusted for").
"""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from tokenizers import Tokenizer

from rnnlab.errors import first_line
from rnnlab.data.arrays import PreparedSplit
from rnnlab.data.imdb import ReviewDataset, collate
from rnnlab.models.recurrent_module import RecurrentModule

TEXT_COLUMN = "text"


BATCH_SIZE = 256


class BadInput(ValueError):
    """Input that is not review text (no reviews, a review not a str or without words); one line says which."""


def review_texts(model_input: Any) -> list[str]:
    """The reviews in `model_input`: a DataFrame with a string column `text`, or a list of str."""
    if isinstance(model_input, pd.DataFrame):
        if TEXT_COLUMN not in model_input.columns:
            raise BadInput(f"expected a column {TEXT_COLUMN!r} of review text, "
                           f"got columns {list(model_input.columns)}")
        texts = model_input[TEXT_COLUMN].tolist()
    elif isinstance(model_input, (list, tuple)):
        texts = list(model_input)
    else:
        raise BadInput(f"expected a DataFrame with a {TEXT_COLUMN!r} column or a list of str, "
                       f"got {type(model_input).__name__}")
    if not texts:
        raise BadInput("no reviews given")
    for k, text in enumerate(texts):
        if not isinstance(text, str):
            raise BadInput(f"review {k} is {type(text).__name__} {text!r}, not text")
    return texts


def token_ids(tokenizer: Tokenizer, texts: list[str]) -> PreparedSplit:
    """`texts` encoded at full length, in the layout `prepare` writes (labels and ratings unknown: zero)."""
    encodings = tokenizer.encode_batch_fast(texts, add_special_tokens=False)
    ids = [np.asarray(encoding.ids, dtype=np.int32) for encoding in encodings]
    for k, review in enumerate(ids):
        if len(review) == 0:
            raise BadInput(f"review {k} has no words: {texts[k][:60]!r}")
    unknown = np.zeros(len(ids), dtype=np.int8)
    return PreparedSplit(np.concatenate(ids), np.array([len(r) for r in ids], dtype=np.int32), unknown, unknown)


class UnusableModelFile(ValueError):
    """A checkpoint or tokenizer file that is not what rnnlab writes; one line says which and why."""


def load_classifier(checkpoint: str | Path) -> RecurrentModule:
    """The network of a Lightning checkpoint, on the CPU, ready to predict.

    `weights_only=True`: tensors and plain values only. A file holding pickled objects (code, in effect) is
    refused rather than run, so a checkpoint from a store written by others can do no more than predict badly.
    Its hyperparameters are checked against its weights before the network is built (`check_contents`): a
    15 MB file claiming hidden_size=12000 would otherwise have 2.9 GB allocated before it is refused.
    """
    name = Path(checkpoint).name
    try:
        # Loading warns about a file's pickle protocol and the like; the caller's one line is the answer.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            check_contents(torch.load(checkpoint, map_location="cpu", weights_only=True), name)
            classifier = RecurrentModule.load_from_checkpoint(checkpoint, map_location="cpu", weights_only=True)
    except UnusableModelFile:
        raise
    except pickle.UnpicklingError as e:
        reason = unpickler_reason(e)
        if reason.startswith("Unsupported global"):  # a class or function to call: the pickle would run code
            raise UnusableModelFile(f"{name} refused: it holds pickled objects, not plain weights ({reason})") from e
        raise UnusableModelFile(f"{name} is not an rnnlab checkpoint ({reason})") from e
    # Any other failure on a file from the store (not a zip, keys missing, hyperparameters RecurrentModule
    # rejects, tensors of the wrong shape) means the same to the user: not an rnnlab checkpoint.
    except Exception as e:
        raise UnusableModelFile(f"{name} is not an rnnlab checkpoint ({first_line(e)})") from e
    return classifier.eval()


def check_contents(contents: Any, name: str) -> None:
    """Refuse a checkpoint whose weights are not all finite, or whose hyperparameters describe other weights.

    The network its hyperparameters describe is built on the meta device: shapes only, no memory. A
    `num_layers` beyond the file's tensor count cannot be real, and is refused before that network is built
    (building a billion layers takes long, even on meta).
    """
    if not isinstance(contents, dict) or not isinstance(contents.get("state_dict"), dict) \
            or not isinstance(contents.get("hyper_parameters"), dict):
        raise UnusableModelFile(f"{name} is not an rnnlab checkpoint (no state_dict and hyper_parameters)")
    weights, hparams = contents["state_dict"], contents["hyper_parameters"]
    for key, tensor in weights.items():
        if not isinstance(tensor, torch.Tensor):
            raise UnusableModelFile(f"{name} is not an rnnlab checkpoint ({key} is not a tensor)")
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise UnusableModelFile(f"{name} refused: its weights are not all finite numbers (NaN or inf in {key})")
    layers = hparams.get("num_layers", 1)
    if not isinstance(layers, int) or layers > len(weights):
        raise UnusableModelFile(f"{name} is not an rnnlab checkpoint (num_layers={layers!r} for "
                                f"{len(weights)} tensors)")
    with torch.device("meta"):
        expected = RecurrentModule(**hparams).state_dict()
    settings = ", ".join(f"{k}={hparams[k]!r}" for k in ("cell", "impl", "vocab_size", "embedding_dim",
                                                          "hidden_size", "num_layers") if k in hparams)
    for key in sorted(expected.keys() | weights.keys()):
        found = tuple(weights[key].shape) if key in weights else None
        wanted = tuple(expected[key].shape) if key in expected else None
        if found != wanted:
            raise UnusableModelFile(
                f"{name} is not an rnnlab checkpoint: its hyperparameters ({settings}) do not match its weights "
                f"({key}: {'none' if wanted is None else list(wanted)} for those, "
                f"{'none' if found is None else list(found)} in the file)")


def unpickler_reason(error: pickle.UnpicklingError) -> str:
    """What torch's weights-only unpickler refused (e.g. "Unsupported global: GLOBAL posix.system ..."),
    without its advice to load the file with `weights_only=False`."""
    _, found, rest = str(error).partition("WeightsUnpickler error:")
    lines = [line.strip() for line in rest.splitlines() if line.strip()] if found else []
    return lines[0].split(". ")[0] if lines else first_line(error)


def load_tokenizer(path: str | Path) -> Tokenizer:
    try:
        return Tokenizer.from_file(str(path))
    except Exception as e:  # the tokenizers library raises a bare Exception on a malformed file
        raise UnusableModelFile(f"{Path(path).name} is not a tokenizer.json ({first_line(e)})") from e


class Sentiment:
    """A classifier and its tokenizer, with the run's data.max_len and data.keep: reviews are cut exactly
    as they were in training."""

    def __init__(self, classifier: RecurrentModule, tokenizer: Tokenizer, max_len: int, keep: str) -> None:
        self.classifier, self.tokenizer, self.max_len, self.keep = classifier, tokenizer, max_len, keep

    @classmethod
    def from_files(cls, checkpoint: str | Path, tokenizer: str | Path, max_len: int, keep: str) -> Sentiment:
        return cls(load_classifier(checkpoint), load_tokenizer(tokenizer), max_len, keep)

    def predict(self, model_input: Any) -> pd.DataFrame:
        """Columns probability and label, one row per review of `model_input` (see `review_texts`)."""
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
        probability = torch.cat(chunks).double().numpy()
        # Finite weights can still overflow to inf - inf; "nan neg" would be an answer, and a wrong one.
        bad = ~np.isfinite(probability)
        if bad.any():
            raise ValueError(f"the model's answer is {probability[bad][0]}, not a probability, for {bad.sum()} of "
                             f"{len(probability)} reviews: its weights are unusable")
        return probability
