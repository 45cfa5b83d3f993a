"""Apply a trained model to your own reviews: P(positive) and a label for each, one line per review.

    python -m rnnlab.predict "A wonderful film, great acting."          # the best run of imdb-cells
    python -m rnnlab.predict "Loved it." "A waste of time." --run-id <run id>
    python -m rnnlab.predict --file review.txt --tracking-uri sqlite:///mlflow.db

Without --run-id it uses the FINISHED run with the highest test_acc among those that logged a model.
The store is --tracking-uri, else $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db. Each review gets one
tab-separated line on stdout: probability of positive, label (pos/neg), the review's start. Which run's
model answered goes to stderr; an error is one `predict: error: ...` line there, and exit status 1.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from rnnlab.cli import ArgumentParser

if TYPE_CHECKING:
    import mlflow
    import pandas as pd

EXPERIMENT = "imdb-cells"  # conf/logger/mlflow.yaml's experiment_name
PREVIEW = 60


class PredictError(Exception):
    pass


def read_reviews(texts: list[str], files: list[Path]) -> list[str]:
    """The reviews from the command line, then one per file; each must hold some text."""
    reviews = list(texts)
    for path in files:
        try:
            text = path.read_bytes().decode("utf-8")
        except OSError as e:
            raise PredictError(f"cannot read {path}: {e.strerror}") from e
        except UnicodeDecodeError as e:
            raise PredictError(f"{path} is not UTF-8 text ({e.reason} at byte {e.start})") from e
        if "\0" in text:  # valid UTF-8, yet a binary file
            raise PredictError(f"{path} is not UTF-8 text (it holds NUL bytes)")
        reviews.append(text)
    if not reviews:
        raise PredictError("no review given: pass review text or --file PATH")
    for k, review in enumerate(reviews):
        if not review.strip():
            raise PredictError(f"review {k + 1} is empty")
    return reviews


def check_store(tracking_uri: str) -> None:
    # Opening a sqlite URI creates the database; a mistyped path should be an error instead.
    if tracking_uri.startswith("sqlite:///"):
        path = Path(tracking_uri.removeprefix("sqlite:///").split("?")[0])
        if not path.is_file():
            raise PredictError(f"no MLflow store at {tracking_uri} ({path} does not exist): train a model first")


def model_run_ids(client: mlflow.MlflowClient, experiment_id: str, model_name: str) -> set[str]:
    """The runs of this experiment that logged a model called `model_name`."""
    found, token = set(), None
    while True:
        page = client.search_logged_models([experiment_id], filter_string=f"name = '{model_name}'", page_token=token)
        found.update(m.source_run_id for m in page if m.source_run_id)
        token = page.token
        if not token:
            return found


def pick_run(client: mlflow.MlflowClient, run_id: str | None, experiment: str, model_name: str) -> mlflow.entities.Run:
    """`run_id` if it exists and has a model, else the best finished run of `experiment` that has one."""
    from mlflow.exceptions import MlflowException

    if run_id:
        try:
            run = client.get_run(run_id)
        except MlflowException as e:
            raise PredictError(f"run {run_id} not found in {client.tracking_uri}") from e
        if run_id not in model_run_ids(client, run.info.experiment_id, model_name):
            raise PredictError(f"run {run_id} has no logged model (it predates model logging, or did not finish)")
        return run
    found = client.get_experiment_by_name(experiment)
    if found is None:
        raise PredictError(f"no experiment {experiment!r} in {client.tracking_uri}: train a model first")
    with_model = ", ".join(f"'{run_id}'" for run_id in sorted(model_run_ids(client, found.experiment_id, model_name)))
    best = client.search_runs(
        [found.experiment_id], filter_string=f"attributes.status = 'FINISHED' AND attributes.run_id IN ({with_model})",
        order_by=["metrics.test_acc DESC"], max_results=1,
    ) if with_model else []
    if not best:
        raise PredictError(f"no finished run with a logged model in experiment {experiment!r} at {client.tracking_uri}")
    return best[0]


def predict(reviews: list[str], run_id: str | None, experiment: str,
            tracking_uri: str | None) -> tuple[mlflow.entities.Run, pd.DataFrame]:
    """(the run used, its model applied to `reviews`: columns probability and label)."""
    # Imported here, not at the top: torch, Lightning and MLflow take ~10 s to import, and a mistyped
    # command (an empty review, a wrong file, --help) should answer at once.
    import mlflow
    import pandas as pd
    from mlflow.exceptions import MlflowException

    from rnnlab.serving import MODEL_NAME, TEXT_COLUMN, use_tracking_uri
    from rnnlab.tracking import resolve_tracking_uri

    tracking_uri = resolve_tracking_uri(tracking_uri)
    check_store(tracking_uri)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # stderr is for errors here
    try:
        client = mlflow.MlflowClient(tracking_uri)
        run = pick_run(client, run_id, experiment, MODEL_NAME)
        with use_tracking_uri(tracking_uri):
            model = mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/{MODEL_NAME}")
        return run, model.predict(pd.DataFrame({TEXT_COLUMN: reviews}))  # the signature's input: a text column
    except (ValueError, MlflowException) as e:
        message = str(e).strip()
        raise PredictError(message.splitlines()[0] if message else type(e).__name__) from e


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="predict", description=__doc__.splitlines()[0])
    parser.add_argument("texts", nargs="*", help="review text; quote each review")
    parser.add_argument("--file", type=Path, action="append", default=[], help="a file holding one review (repeatable)")
    parser.add_argument("--run-id", help="the MLflow run whose model to use (default: the best one)")
    parser.add_argument("--experiment", default=EXPERIMENT, help=f"where to look for the best run ({EXPERIMENT})")
    parser.add_argument("--tracking-uri", help="MLflow store (default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db)")
    args = parser.parse_args(argv)
    try:
        reviews = read_reviews(args.texts, args.file)
        run, result = predict(reviews, args.run_id, args.experiment, args.tracking_uri)
    except PredictError as e:
        print(f"predict: error: {e}", file=sys.stderr)
        return 1
    print(f"predict: the model of run {run.info.run_id} ({run.info.run_name})", file=sys.stderr)
    for review, probability, label in zip(reviews, result["probability"], result["label"]):
        preview = " ".join(review.split())
        preview = preview if len(preview) <= PREVIEW else preview[: PREVIEW - 3] + "..."
        print(f"{probability:.4f}\t{label}\t{preview}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
