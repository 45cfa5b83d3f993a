"""Apply a trained model to your own reviews: P(positive) and a label for each, one line per review.

    python -m rnnlab.predict "A wonderful film, great acting."          # the pipeline's champion
    python -m rnnlab.predict "Loved it." "A waste of time." --run-id <run id>
    python -m rnnlab.predict --file review.txt --tracking-uri sqlite:///mlflow.db
    xclip -o | python -m rnnlab.predict --file -                         # stdin

Without --run-id it uses models:/rnnlab-imdb@champion: the best run of the pipeline, which the compare stage
of `dvc repro` registers. The store is --tracking-uri, else $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db.
Of the run's model it downloads two files, the checkpoint and tokenizer.json, and reads them into rnnlab's own
classes: the weights with `weights_only=True`, so no code stored with a model runs here, whoever wrote it.
A review file (or stdin) is UTF-8 text of at most 1 MB, a leading byte-order mark dropped; a device or FIFO
given as a file is refused rather than read (it may never end): pipe it to `--file -`.
Each review gets one tab-separated line on stdout: probability of positive, label (pos/neg), the review's start.
Which run's model answered goes to stderr; an error is one `predict: error: ...` line there, and exit status 1.
"""

from __future__ import annotations

import os
import posixpath
import stat
import sys
import tempfile
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, BinaryIO

from rnnlab.cli import ArgumentParser, first_line

if TYPE_CHECKING:
    import mlflow
    import pandas as pd
    from mlflow.entities import LoggedModel

    from rnnlab.serve.sentiment import Sentiment

PREVIEW = 60


class PredictError(Exception):
    pass


# A review is a few kilobytes (IMDB's longest is 14 kB); a file or stdin larger than this is not one review, and
# reading it whole could fill the memory (`--file /dev/zero` grew to 10 GB in 12 s before this cap).
MAX_REVIEW_BYTES = 1_000_000
STDIN = "-"
MAX_LEN = 2**31 - 1  # the largest data.max_len a run can have
BOM = "\ufeff"  # Windows editors start UTF-8 files with it; left in, it joins the first word and changes the answer


def file_kind(mode: int) -> str:
    for test, kind in ((stat.S_ISDIR, "a directory"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return kind
    return "not a regular file"


def read_capped(stream: BinaryIO, name: str) -> bytes:
    """At most MAX_REVIEW_BYTES of `stream`, refusing more: one byte beyond the cap is read to know."""
    data = stream.read(MAX_REVIEW_BYTES + 1)
    if len(data) > MAX_REVIEW_BYTES:
        raise PredictError(f"{name} holds more than {MAX_REVIEW_BYTES:,} bytes (1 MB), the most one review may hold")
    return data


def read_file(path: Path) -> bytes:
    """A review file's bytes: a regular file of at most MAX_REVIEW_BYTES.

    Anything else is refused before a byte is read: a device (/dev/zero never ends) or a FIFO (opening one
    waits for a writer, reading it waits for the writer to close: predict could hang). Piped text goes to
    `--file -`. O_NONBLOCK makes opening a FIFO return at once instead of waiting; on a regular file it does
    nothing. The kind is checked on the opened file (fstat), so the path cannot be swapped in between.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        raise PredictError(f"cannot read {path}: {e.strerror}") from e
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise PredictError(f"{path} is {file_kind(info.st_mode)}, not a review file: "
                               f"pass a regular file, or pipe the text to --file {STDIN}")
        if info.st_size > MAX_REVIEW_BYTES:  # known without reading it
            raise PredictError(f"{path} is {info.st_size:,} bytes: a review file may hold at most "
                               f"{MAX_REVIEW_BYTES:,} bytes (1 MB)")
        with os.fdopen(os.dup(fd), "rb") as stream:
            return read_capped(stream, str(path))  # capped all the same: the file may grow meanwhile
    except OSError as e:
        raise PredictError(f"cannot read {path}: {e.strerror}") from e
    finally:
        os.close(fd)


def decode(data: bytes, name: str) -> str:
    """`data` as text: UTF-8 without its byte-order mark, holding no NUL."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise PredictError(f"{name} is not UTF-8 text ({e.reason} at byte {e.start})") from e
    if "\0" in text:  # valid UTF-8, yet a binary file
        raise PredictError(f"{name} is not UTF-8 text (it holds NUL bytes)")
    return text.removeprefix(BOM)


def read_reviews(texts: list[str], files: list[Path], stdin: BinaryIO | None = None) -> list[str]:
    """The reviews from the command line, then one per file (`-`: stdin, read once); each must hold some text."""
    reviews = list(texts)
    if [str(path) for path in files].count(STDIN) > 1:
        raise PredictError(f"--file {STDIN} given more than once: stdin holds one review")
    for path in files:
        if str(path) == STDIN:
            stream = stdin if stdin is not None else sys.stdin.buffer
            reviews.append(decode(read_capped(stream, "stdin"), "stdin"))
        else:
            reviews.append(decode(read_file(path), str(path)))
    if not reviews:
        raise PredictError("no review given: pass review text or --file PATH")
    for k, review in enumerate(reviews):
        if not review.strip():
            raise PredictError(f"review {k + 1} is empty")
    return reviews


def model_files(model: LoggedModel, tracking_uri: str, folder: str) -> tuple[Path, Path]:
    """(checkpoint, tokenizer.json) of a logged rnnlab model, downloaded into `folder`; nothing else of it.

    Their names come from the model's MLmodel file (plain YAML); a name that reaches outside the model's
    `artifacts/` folder is refused, so a planted MLmodel cannot send the download elsewhere.
    """
    import mlflow
    import yaml

    def download(path: str) -> Path:
        uri = posixpath.join(model.artifact_location, path)
        return Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=folder, tracking_uri=tracking_uri))

    not_ours = f"model {model.model_id} of run {model.source_run_id} is not an rnnlab model"
    try:
        description = yaml.safe_load(download("MLmodel").read_text())
        artifacts = description["flavors"]["python_function"]["artifacts"]
        paths = [PurePosixPath(artifacts[name]["path"]) for name in ("checkpoint", "tokenizer")]
    except (yaml.YAMLError, KeyError, TypeError, UnicodeDecodeError) as e:
        raise PredictError(f"{not_ours} (its MLmodel names no checkpoint and tokenizer)") from e
    for path in paths:
        if len(path.parts) != 2 or path.parts[0] != "artifacts" or path.name in ("", ".", ".."):
            raise PredictError(f"{not_ours} (its MLmodel names {str(path)!r})")
    checkpoint, tokenizer = (download(str(path)) for path in paths)
    return checkpoint, tokenizer


def data_settings(run: mlflow.entities.Run) -> tuple[int, str]:
    """The run's data.max_len and data.keep, which the model's input must be cut by, as in training."""
    params = run.data.params
    try:
        max_len, keep = int(params["data.max_len"]), params["data.keep"]
    except (KeyError, ValueError) as e:
        raise PredictError(f"run {run.info.run_id} is not an rnnlab IMDB run (no valid data.max_len, data.keep)") from e
    # Review lengths are int32 (the prepared format): a longer cut is no cut, and overflows numpy's types.
    if not 1 <= max_len <= MAX_LEN or keep not in ("first", "last"):
        raise PredictError(f"run {run.info.run_id} has data.max_len={max_len}, data.keep={keep!r}: not an rnnlab run "
                           f"(max_len is 1 to {MAX_LEN:,}, keep first or last)")
    return max_len, keep


def get_run(client: mlflow.MlflowClient, run_id: str) -> mlflow.entities.Run:
    from mlflow.exceptions import MlflowException

    from rnnlab.tracking import redact

    try:
        return client.get_run(run_id)
    except MlflowException as e:
        raise PredictError(f"run {run_id} not found in {redact(client.tracking_uri)}") from e


def chosen_run(client: mlflow.MlflowClient, run_id: str | None) -> tuple[mlflow.entities.Run, str]:
    """(the run whose model answers, how it was chosen in words): `run_id`, else the champion's run."""
    from rnnlab.serve.registry import CHAMPION_URI, champion
    from rnnlab.tracking import redact

    if run_id:
        return get_run(client, run_id), ""
    version = champion(client)
    if version is None:
        raise PredictError(f"no model registered as {CHAMPION_URI} in {redact(client.tracking_uri)} yet: "
                           "run `dvc repro` (its compare stage registers the best run), or pass --run-id")
    return get_run(client, version.run_id), f", {CHAMPION_URI} (version {version.version})"


def load_sentiment(client: mlflow.MlflowClient, run: mlflow.entities.Run) -> Sentiment:
    """The run's model, from its checkpoint and tokenizer.json only (see `model_files`)."""
    from rnnlab.serve.registry import logged_model
    from rnnlab.serve.sentiment import Sentiment, UnusableModelFile

    run_id = run.info.run_id
    model = logged_model(client, run_id)
    if model is None:
        raise PredictError(f"run {run_id} has no logged model (it predates model logging, or did not finish)")
    with tempfile.TemporaryDirectory(prefix="rnnlab-predict-") as folder:
        checkpoint, tokenizer = model_files(model, client.tracking_uri, folder)
        try:
            return Sentiment.from_files(checkpoint, tokenizer, *data_settings(run))
        except UnusableModelFile as e:
            raise PredictError(f"the model of run {run_id}: {e}") from e


def predict(reviews: list[str], run_id: str | None, tracking_uri: str | None) -> tuple[str, pd.DataFrame]:
    """(which model answered, in words; its answer for `reviews`: columns probability and label)."""
    # Imported here, not at the top: torch, Lightning and MLflow take ~10 s to import, and a mistyped
    # command (an empty review, a wrong file, --help) should answer at once.
    import mlflow
    from mlflow.exceptions import MlflowException

    from rnnlab.tracking import missing_store, quick_http, redact, resolve_tracking_uri

    tracking_uri = resolve_tracking_uri(tracking_uri)
    why = missing_store(tracking_uri)
    if why:
        raise PredictError(f"{why}: train a model first")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # stderr is for errors here
    try:
        with quick_http():
            client = mlflow.MlflowClient(tracking_uri)
            run, via = chosen_run(client, run_id)
            sentiment = load_sentiment(client, run)
        return f"the model of run {run.info.run_id} ({run.info.run_name}){via}", sentiment.predict(reviews)
    except (ValueError, OSError, MlflowException) as e:  # OSError: a file the model names is not there
        # A server's URL may carry a password or token, and MLflow's messages quote it.
        raise PredictError(redact(first_line(e))) from e


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="predict", description=__doc__.splitlines()[0])
    parser.add_argument("texts", nargs="*", help="review text; quote each review")
    parser.add_argument("--file", type=Path, action="append", default=[],
                        help=f"a UTF-8 file holding one review, at most {MAX_REVIEW_BYTES:,} bytes (1 MB); "
                             f"'{STDIN}' reads stdin (repeatable; a device or FIFO is refused: pipe it to '{STDIN}')")
    parser.add_argument("--run-id", help="the MLflow run whose model to use (default: models:/rnnlab-imdb@champion)")
    parser.add_argument("--tracking-uri", help="MLflow store (default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db)")
    args = parser.parse_args(argv)
    try:
        reviews = read_reviews(args.texts, args.file)
        answered_by, result = predict(reviews, args.run_id, args.tracking_uri)
    except PredictError as e:
        print(f"predict: error: {e}", file=sys.stderr)
        return 1
    print(f"predict: {answered_by}", file=sys.stderr)
    for review, probability, label in zip(reviews, result["probability"], result["label"]):
        preview = " ".join(review.split())
        preview = preview if len(preview) <= PREVIEW else preview[: PREVIEW - 3] + "..."
        print(f"{probability:.4f}\t{label}\t{preview}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
