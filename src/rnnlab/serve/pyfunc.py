"""The served model as MLflow logs it: a pyfunc "model from code" around `Sentiment`."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import version
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.models.model import ModelInfo
from mlflow.types import ColSpec, Schema

from rnnlab import PACKAGE_DIR
from rnnlab.serve.registry import LOGGED_MODEL as MODEL_NAME
from rnnlab.serve.sentiment import TEXT_COLUMN, BadInput, Sentiment
from rnnlab.tracking import use_tracking_uri

# The file MLflow runs to build the pyfunc model ("models from code").
MODEL_CODE = Path(__file__).with_name("served_model.py")


SIGNATURE = ModelSignature(
    inputs=Schema([ColSpec("string", TEXT_COLUMN)]),
    outputs=Schema([ColSpec("double", "probability"), ColSpec("string", "label")]),
)


# What the model imports at predict time; written down rather than inferred, which would load the model
# in a subprocess and take longer than the training runs of the tests. tests/test_predict.py loads a
# logged model apart from the project and checks that every package it imports comes with these.
# ninja: a model with model.impl=sequence builds its C++ kernel when loaded (torch runs ninja and the system's g++).
REQUIREMENTS = ("mlflow", "torch", "pytorch-lightning", "torchmetrics", "tokenizers", "numpy", "pandas", "ninja")


# The part of rnnlab the model carries (relative to the package folder): what served_model.py imports, and
# nothing else (no command line, so no Hydra; no search, bench or findings). The same test checks it is enough.
# Every module of rnnlab/cells goes: the registry imports them all, whichever cell the model is (a cell added
# through RNNLAB_CELLS, outside rnnlab, is not carried).
SERVED_CODE = (
    "__init__.py", "checks.py", "errors.py", "files.py", "sqlite_store.py", "tracking.py",
    *sorted(f"cells/{path.name}" for path in (PACKAGE_DIR / "cells").glob("*.py")),
    "data/__init__.py", "data/arrays.py", "data/base.py", "data/imdb.py", "data/sampler.py", "data/text.py",
    "models/__init__.py", "models/encoder.py", "models/explicit.py", "models/fused.py", "models/network.py",
    "models/recurrent_module.py", "models/scan.py", "models/sequence.py", "models/sequence_kernel.cpp",
    "serve/__init__.py", "serve/pyfunc.py", "serve/registry.py", "serve/sentiment.py", "serve/served_model.py",
)


class SentimentModel(mlflow.pyfunc.PythonModel):
    """The pyfunc model: artifacts "checkpoint" (Lightning) and "tokenizer" (tokenizer.json), model_config
    data.max_len and data.keep. Built by `served_model.py` when MLflow loads the model, never unpickled."""

    def load_context(self, context) -> None:
        config = context.model_config
        # models logged before the keys were renamed say "max_len" and "keep"
        max_len, keep = config.get("data.max_len", config.get("max_len")), config.get("data.keep", config.get("keep"))
        self.sentiment = Sentiment.from_files(context.artifacts["checkpoint"], context.artifacts["tokenizer"],
                                              int(max_len), keep)

    # Served through the signature, the input arrives as a DataFrame; called directly, a list of str works too.
    def predict(self, context, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        try:
            return self.sentiment.predict(model_input)
        except BadInput as e:
            # MLflow's scoring server answers an MlflowException with its message and HTTP status (400 for
            # INVALID_PARAMETER_VALUE); any other exception becomes a generic message with a stack trace.
            raise MlflowException.invalid_parameter_value(str(e)) from e


def pinned_requirements() -> list[str]:
    # Without local labels (torch "2.13.0+cpu" -> "2.13.0"), so they install from PyPI, as MLflow's own do.
    return [f"{name}=={version(name).split('+')[0]}" for name in REQUIREMENTS]


@contextmanager
def served_code() -> Iterator[Path]:
    """A temporary folder "rnnlab" holding the SERVED_CODE files of this package, for MLflow to copy."""
    with tempfile.TemporaryDirectory(prefix="rnnlab-served-") as folder:
        package = Path(folder) / "rnnlab"
        for name in SERVED_CODE:
            (package / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(PACKAGE_DIR / name, package / name)
        yield package


def log_sentiment_model(run_id: str, tracking_uri: str, checkpoint_path: str | Path, tokenizer_path: str | Path,
                        max_len: int, keep: str) -> ModelInfo:
    """Log the served model into run `run_id` under the name "model" (`runs:/<run_id>/model`): MODEL_CODE
    builds a `SentimentModel`, which reads the checkpoint and tokenizer logged with it.

    The run is resumed for the logging and left FINISHED (FAILED if logging fails); its caller
    `RunRecord` sets the final status right after.
    """
    with use_tracking_uri(tracking_uri), mlflow.start_run(run_id=run_id), served_code() as package:
        return mlflow.pyfunc.log_model(
            name=MODEL_NAME,
            # A path, not an object: MLflow stores the file instead of a cloudpickle, and runs it to load the model.
            python_model=str(MODEL_CODE),
            artifacts={"checkpoint": str(checkpoint_path), "tokenizer": str(tokenizer_path)},
            # MLflow 3 also logs model_config as run params: named as the run's own params (same values), it adds none
            model_config={"data.max_len": int(max_len), "data.keep": str(keep)},
            # rnnlab is not on any index: the model carries the code it was trained with, which MODEL_CODE imports.
            code_paths=[str(package)],
            signature=SIGNATURE,
            # MLflow stores it for `mlflow models predict` users and checks, by loading the model, that it serves.
            input_example=pd.DataFrame({TEXT_COLUMN: ["A wonderful film, great acting."]}),
            pip_requirements=pinned_requirements(),
        )
