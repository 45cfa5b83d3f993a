"""The model each training run logs, used for real: in-process, `python -m rnnlab.predict`, `mlflow models predict`;
and a store someone else wrote to: planted models that would run code if loaded, which predict must not run.

One tiny real training run (module-scoped) into a temporary sqlite store, registered as the champion as the
compare stage does it; no mocks.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

import mlflow
import pandas as pd
import pytest
import pytorch_lightning as pl
import torch
import yaml
from fastapi.testclient import TestClient
from mlflow.exceptions import MlflowException
from mlflow.pyfunc import scoring_server
from mlflow.utils.mlflow_tags import MLFLOW_MODEL_VERSIONS
from packaging.requirements import Requirement
from tokenizers import Tokenizer

from rnnlab.predict import model_files
from rnnlab.models.recurrent_module import RecurrentModule
from rnnlab.serve.pyfunc import SERVED_CODE
from rnnlab.serve.registry import ALIAS, REGISTERED_MODEL, logged_model, register_champion
from rnnlab.serve.sentiment import Sentiment, load_classifier
from rnnlab.tracking import use_tracking_uri
from rnnlab.train import train
from tests.helpers.project import run_module
from tests.helpers.training import EXPERIMENT, compose_tiny

TEXTS = ["A wonderful film, great acting.", "Awful, boring, a waste of time."]
VOCAB_SIZE = 40  # below the prepared vocabulary, so some known words must become <unk>
MAX_LEN = 12


@pytest.fixture(scope="module")
def store(prepared_dir, tmp_path_factory) -> dict:  # noqa: F811
    """A store holding one finished run with its model, registered as the champion, and a better-scoring run
    that has no model."""
    root = tmp_path_factory.mktemp("store")
    # artifact_location keeps the artifacts in the temporary folder, not in ./mlruns of the working directory.
    cfg = compose_tiny(prepared_dir, root, "trainer.max_epochs=1", f"data.vocab_size={VOCAB_SIZE}",
                       f"data.max_len={MAX_LEN}", f"+logger.artifact_location={root}/artifacts")
    trained = train(cfg)
    uri = f"sqlite:///{root}/mlflow.db"
    register_champion(uri, trained.run_id)
    client = mlflow.MlflowClient(uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    bare = client.create_run(experiment.experiment_id, run_name="no-model")
    client.log_metric(bare.info.run_id, "test_acc", 1.0)
    client.set_terminated(bare.info.run_id, "FINISHED")
    return {"root": root, "uri": uri, "run_id": trained.run_id, "bare_run_id": bare.info.run_id,
            "tokenizer": prepared_dir / "tokenizer.json"}


@pytest.fixture(scope="module")
def model(store):
    with use_tracking_uri(store["uri"]):
        return mlflow.pyfunc.load_model(f"runs:/{store['run_id']}/model")


def predict_cli(store: dict, *args: str, stdin=None) -> subprocess.CompletedProcess:
    return run_module("rnnlab.predict", *args, cwd=store["root"], env={"MLFLOW_TRACKING_URI": store["uri"]},
                      stdin=stdin)


def test_run_logs_a_model_with_a_signature(store, model):
    assert mlflow.MlflowClient(store["uri"]).get_run(store["run_id"]).info.status == "FINISHED"
    signature = model.metadata.signature
    assert signature.inputs.input_names() == ["text"]
    assert [(c.name, c.type.name) for c in signature.outputs.inputs] == [("probability", "double"),
                                                                         ("label", "string")]
    assert mlflow.active_run() is None  # the run resumed to log the model was let go
    # Models from code: MLflow keeps served_model.py and runs it to load the model; no pickled Python object.
    flavor = model.metadata.flavors["python_function"]
    assert flavor["loader_module"] == "mlflow.pyfunc.loaders.code_model" and "python_model" not in flavor
    assert flavor["config"] == {"data.max_len": MAX_LEN, "data.keep": "last"}
    with use_tracking_uri(store["uri"]):
        files = {Path(f.path).name for f in mlflow.artifacts.list_artifacts(f"runs:/{store['run_id']}/model")}
    assert "served_model.py" in files and not any(name.endswith((".pkl", ".pickle")) for name in files)


def test_registered_version_is_linked_to_the_logged_model(store):
    # Both pages agree: the run page (the version's run_id) and the logged model's page (its mlflow.modelVersions).
    client = mlflow.MlflowClient(store["uri"])
    version = client.get_model_version_by_alias(REGISTERED_MODEL, ALIAS)
    model = logged_model(client, store["run_id"])
    # The version's link to the logged model is its source: MLflow's sqlite registry does not store model_id.
    assert version.run_id == store["run_id"] and version.source == f"models:/{model.model_id}"
    assert json.loads(model.tags[MLFLOW_MODEL_VERSIONS]) == [{"name": REGISTERED_MODEL, "version": version.version}]
    register_champion(store["uri"], store["run_id"])  # compare rerun: same version, listed once
    listed = json.loads(logged_model(client, store["run_id"]).tags[MLFLOW_MODEL_VERSIONS])
    assert listed == [{"name": REGISTERED_MODEL, "version": version.version}]


def test_model_carries_only_the_code_it_serves(store):
    with use_tracking_uri(store["uri"]):
        folder = Path(mlflow.artifacts.download_artifacts(f"runs:/{store['run_id']}/model"))
    package = folder / "code" / "rnnlab"
    carried = sorted(str(path.relative_to(package)) for path in package.rglob("*") if path.is_file())
    assert carried == sorted(SERVED_CODE)


# The served model loaded as in an environment built from its own requirements.txt: run with `python -S`, so
# site-packages is not on the path, and given instead a folder (argv[2]) mirroring only the files of the
# distributions those requirements install; rnnlab comes from the model's own code folder, as nothing else has
# it. Prints the file of every module imported.
LOAD_APART = """
import json, site, sys
site.addsitedir(sys.argv[2])
import mlflow, pandas
model = mlflow.pyfunc.load_model(sys.argv[1])
model.predict(pandas.DataFrame({"text": ["A wonderful film.", "Awful."]}))
print(json.dumps({name: getattr(module, "__file__", None) for name, module in list(sys.modules.items())}))
"""


def mirror_installed(distributions: set[str], folder: Path) -> None:
    """Symbolic links in `folder` to every installed file of `distributions`, laid out as in site-packages."""
    for name in distributions:
        try:
            files = distribution(name).files or []
        except PackageNotFoundError:  # a dependency only on another platform
            continue
        for file in files:
            if file.parts[0] == "..":  # scripts in bin/, not importable
                continue
            source = Path(file.locate())
            if source.exists():
                (folder / file).parent.mkdir(parents=True, exist_ok=True)
                (folder / file).unlink(missing_ok=True)
                (folder / file).symlink_to(source)


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def distributions_installed_with(requirements: list[str]) -> set[str]:
    """The distributions pip installs for `requirements` (their dependencies, with extras and markers followed),
    as installed here."""
    found: set[str] = set()
    pending = [Requirement(line) for line in requirements]
    while pending:
        requirement = pending.pop()
        name = canonical(requirement.name)
        if name in found:
            continue
        found.add(name)
        try:
            requires = distribution(requirement.name).requires or []
        except PackageNotFoundError:  # an optional dependency on another platform
            continue
        for line in requires:
            dependency = Requirement(line)
            extras = requirement.extras or {""}
            if dependency.marker is None or any(dependency.marker.evaluate({"extra": e}) for e in extras):
                pending.append(dependency)
    return found


def test_served_model_imports_only_what_it_declares(store, tmp_path):
    uri = f"runs:/{store['run_id']}/model"
    with use_tracking_uri(store["uri"]):
        requirements_file = Path(mlflow.pyfunc.get_model_dependencies(uri))
    requirements = [line for line in requirements_file.read_text().splitlines() if line and not line.startswith("#")]
    installed = distributions_installed_with(requirements)
    assert {"mlflow", "torch", "pytorch-lightning", "tokenizers"} <= installed
    assert not {"hydra-core", "omegaconf", "rnnlab"} & installed
    mirror_installed(installed, tmp_path / "site")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"MLFLOW_TRACKING_URI": store["uri"]}
    result = subprocess.run([sys.executable, "-S", "-c", LOAD_APART, uri, str(tmp_path / "site")], cwd=tmp_path,
                            env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    modules = json.loads(result.stdout.splitlines()[-1])
    assert "hydra" not in modules and "omegaconf" not in modules
    # Every rnnlab module came from the model's own code: what it carries is enough.
    served = {name: file for name, file in modules.items() if name.split(".")[0] == "rnnlab"}
    assert "rnnlab.serve.sentiment" in served
    assert all(f"{os.sep}code{os.sep}rnnlab{os.sep}" in file for file in served.values()), served


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_model_loads_in_a_venv_made_from_its_requirements(store, model, tmp_path):
    # The real thing the test above stands in for: a new virtual environment, `pip install -r requirements.txt`
    # (torch==2.13.0 and the rest, from the index pip is configured with), the model loaded from its folder.
    with use_tracking_uri(store["uri"]):
        folder = Path(mlflow.artifacts.download_artifacts(f"runs:/{store['run_id']}/model", dst_path=str(tmp_path)))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=600)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    pip = [str(venv / "bin" / "pip"), "install", "--quiet", "-r", str(folder / "requirements.txt")]
    installed = subprocess.run(pip, env=env, capture_output=True, text=True, timeout=3000)
    assert installed.returncode == 0, installed.stderr[-3000:]
    load = ("import json, sys, mlflow, pandas; model = mlflow.pyfunc.load_model(sys.argv[1]); "
            "print(json.dumps(model.predict(pandas.DataFrame({'text': sys.argv[2:]}))['probability'].tolist()))")
    result = subprocess.run([str(venv / "bin" / "python"), "-c", load, str(folder), *TEXTS], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    served = model.predict(pd.DataFrame({"text": TEXTS}))["probability"].tolist()
    assert json.loads(result.stdout.splitlines()[-1]) == pytest.approx(served, abs=1e-6)


def test_tracking_uri_is_put_back(store, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///elsewhere.db")
    before = mlflow.get_tracking_uri()
    with use_tracking_uri(store["uri"]):
        assert mlflow.get_tracking_uri() == store["uri"]
    assert mlflow.get_tracking_uri() == before and os.environ["MLFLOW_TRACKING_URI"] == "sqlite:///elsewhere.db"


def test_pyfunc_predicts_probability_and_label(model):
    # Through the signature the input is a DataFrame; the Python model itself also takes a list of str.
    for result in (model.predict(pd.DataFrame({"text": TEXTS})), model.unwrap_python_model().predict(None, TEXTS)):
        assert list(result.columns) == ["probability", "label"] and len(result) == 2
        assert result["probability"].dtype == "float64"
        assert result["probability"].between(0, 1).all()
        assert set(result["label"]) <= {"pos", "neg"}
        assert ((result["probability"] > 0.5) == (result["label"] == "pos")).all()


def test_text_is_cut_and_mapped_as_in_training(store, model):
    vocab = Tokenizer.from_file(str(store["tokenizer"])).get_vocab()
    beyond = sorted(word for word, index in vocab.items() if index >= VOCAB_SIZE and word.isalpha())
    assert beyond, "the tiny vocabulary should be larger than the model's"
    probability = lambda text: model.predict(pd.DataFrame({"text": [text]}))["probability"][0]  # noqa: E731
    # A word the model's vocabulary lacks is <unk>, like a word never seen at all.
    assert probability(f"great film {beyond[0]}") == probability("great film zyzzyva")
    # keep=last: only the last MAX_LEN tokens count.
    tail = "the acting is great and the story is moving . loved it"
    assert len(tail.split()) == MAX_LEN
    assert probability(f"awful boring bad {tail}") == probability(tail)


@pytest.mark.parametrize("bad, message", [
    ([], "no reviews"),
    (pd.DataFrame({"review": ["good"]}), "column 'text'"),
    (["fine", 3], "review 1 is int"),
    (["   "], "review 0 has no words"),
    ("just a string", "list of str"),
])
def test_pyfunc_rejects_bad_input(model, bad, message):
    with pytest.raises(MlflowException, match=message):
        model.unwrap_python_model().predict(None, bad)


def test_served_model_checks_its_input(model):
    # As MlflowException INVALID_PARAMETER_VALUE: what MLflow's scoring server answers as a plain message.
    for bad, message in ((pd.DataFrame({"text": [None]}), "review 0 is NoneType"),
                         (pd.DataFrame({"text": []}, dtype=str), "no reviews"),
                         (pd.DataFrame({"text": [""]}), "review 0 has no words")):
        with pytest.raises(MlflowException, match=message) as raised:
            model.predict(bad)
        assert raised.value.error_code == "INVALID_PARAMETER_VALUE"
    with pytest.raises(MlflowException, match="missing inputs"):  # the signature, before the model sees it
        model.predict(pd.DataFrame({"review": ["A wonderful film."]}))


def test_cli_uses_the_champion(store, model):
    result = predict_cli(store, *TEXTS)  # the model-less run scores higher: the score does not choose
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"the model of run {store['run_id']}" in result.stderr
    assert f"models:/{REGISTERED_MODEL}@{ALIAS} (version 1)" in result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 2
    # The weights read into rnnlab's own classes answer as the served pyfunc model does.
    served = model.predict(pd.DataFrame({"text": TEXTS}))
    for line, text, expected, expected_label in zip(lines, TEXTS, served["probability"], served["label"]):
        probability, label, preview = line.split("\t")
        assert probability == f"{expected:.4f}" and label == expected_label and preview == text


def test_cli_run_id_and_file(store, tmp_path):
    review = tmp_path / "review.txt"
    review.write_text("A wonderful film.\nGreat acting, great music.\n")
    result = predict_cli(store, "--run-id", store["run_id"], "--file", str(review), "--tracking-uri", store["uri"])
    assert result.returncode == 0, result.stderr[-3000:]
    [line] = result.stdout.splitlines()
    assert line.split("\t")[2] == "A wonderful film. Great acting, great music."


def test_cli_reads_stdin_and_drops_a_byte_order_mark(store, tmp_path):
    """A file saved with a BOM (Windows editors), the same file on stdin, and the file without: one answer."""
    plain, marked = tmp_path / "plain.txt", tmp_path / "bom.txt"
    plain.write_bytes(b"great film")
    marked.write_bytes(b"\xef\xbb\xbfgreat film")
    # Kept, the mark would be part of the first word, which then means something else to the model.
    tokenizer = Tokenizer.from_file(str(store["tokenizer"]))
    assert tokenizer.encode("\ufeffgreat film").ids != tokenizer.encode("great film").ids
    with open(marked, "rb") as stdin:
        result = predict_cli(store, "great film", "--file", str(plain), "--file", str(marked), "--file", "-",
                             stdin=stdin)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert len(lines) == 4 and len(set(lines)) == 1, lines
    assert lines[0].split("\t")[2] == "great film"


@pytest.mark.parametrize("case, says", [
    ("character-device", "/dev/zero is a character device, not a review file: pass a regular file, or pipe"),
    ("fifo", "review.fifo is a FIFO, not a review file"),
    ("directory", "is a directory, not a review file"),
    ("10-GB-file", "huge.txt is 10,000,000,000 bytes: a review file may hold at most 1,000,000 bytes (1 MB)"),
    ("endless-stdin", "stdin holds more than 1,000,000 bytes (1 MB), the most one review may hold"),
    ("stdin-twice", "--file - given more than once"),
])
def test_cli_refuses_what_is_not_one_review(tmp_path, case, says):
    """Inputs that never end, or that would wait forever for a writer: refused at once, memory untouched."""
    fifo, huge = tmp_path / "review.fifo", tmp_path / "huge.txt"
    os.mkfifo(fifo)  # no writer ever opens it: reading it would wait forever
    with open(huge, "wb") as f:
        f.truncate(10_000_000_000)  # sparse: a real 10 GB file that takes no disk space
    args = {
        "character-device": ["--file", "/dev/zero"],
        "fifo": ["--file", str(fifo)],
        "directory": ["--file", str(tmp_path)],
        "10-GB-file": ["--file", str(huge)],
        "endless-stdin": ["--file", "-"],
        "stdin-twice": ["--file", "-", "--file", "-"],
    }[case]
    with open("/dev/zero", "rb") as zeros:
        # A hang or a read of everything would run into the timeout (the FIFO: forever; /dev/zero: 10 GB in 12 s).
        result = run_module("rnnlab.predict", *args, cwd=tmp_path, stdin=zeros, timeout=60)
    assert result.returncode == 1 and result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith("predict: error: ") and says in line, line


@pytest.mark.parametrize("case, says", [
    ("empty", "review 1 is empty"),
    ("blank", "review 2 is empty"),
    ("binary-file", "is not UTF-8 text"),
    ("unknown-run", "not found"),
    ("run-without-model", "has no logged model"),
    ("no-champion", "no model registered as models:/rnnlab-imdb@champion"),
    ("no-store", "no MLflow store"),
])
def test_cli_bad_input_is_one_error_line(store, tmp_path, case, says):
    binary = tmp_path / "review.bin"
    binary.write_bytes(b"\xff\xd8\xff\xe0 not text")
    empty_uri = f"sqlite:///{tmp_path}/empty.db"
    if case == "no-champion":
        mlflow.MlflowClient(empty_uri).create_experiment(EXPERIMENT)
    args = {
        "empty": [""],
        "blank": [TEXTS[0], "  \n\t "],
        "binary-file": ["--file", str(binary)],
        "unknown-run": [TEXTS[0], "--run-id", "0123456789abcdef0123456789abcdef"],
        "run-without-model": [TEXTS[0], "--run-id", store["bare_run_id"]],
        "no-champion": [TEXTS[0], "--tracking-uri", empty_uri],
        "no-store": [TEXTS[0], "--tracking-uri", f"sqlite:///{tmp_path}/missing.db"],
    }[case]
    result = predict_cli(store, *args)
    assert result.returncode == 1, result.stderr[-3000:]
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith("predict: error: ") and says in line
    if case == "no-champion":
        assert "run `dvc repro`" in line and "--run-id" in line
    assert not (tmp_path / "missing.db").exists()  # a mistyped store is not created


def test_mlflow_models_predict_serves_the_model(store, tmp_path):
    request = tmp_path / "reviews.json"
    request.write_text(json.dumps({"dataframe_records": [{"text": t} for t in TEXTS]}))
    mlflow_cli = Path(sys.executable).parent / "mlflow"
    result = subprocess.run(
        [str(mlflow_cli), "models", "predict", "-m", f"runs:/{store['run_id']}/model", "-i", str(request),
         "--content-type", "json", "--env-manager", "local", "-o", str(tmp_path / "out.json")],
        cwd=tmp_path, env={**os.environ, "MLFLOW_TRACKING_URI": store["uri"]},
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    predictions = json.loads((tmp_path / "out.json").read_text())["predictions"]
    assert len(predictions) == 2
    for row in predictions:
        assert 0 <= row["probability"] <= 1 and row["label"] in ("pos", "neg")


def test_scoring_server_answers_bad_input_without_a_traceback(model, monkeypatch):
    # The app `mlflow models serve` runs, given requests without a port.
    monkeypatch.setenv("_MLFLOW_IS_IN_SERVING_ENVIRONMENT", "false")  # init sets it; put back afterwards
    server = TestClient(scoring_server.init(model))
    answer = server.post("/invocations", json={"dataframe_records": [{"text": ""}]})
    assert answer.status_code == 400
    body = answer.json()
    assert body["error_code"] == "INVALID_PARAMETER_VALUE" and "stack_trace" not in body
    assert body["message"].endswith("Error: review 0 has no words: ''")
    answer = server.post("/invocations", json={"dataframe_records": [{"text": t} for t in TEXTS]})
    assert answer.status_code == 200 and len(answer.json()["predictions"]) == 2


def test_usage_mistakes_are_one_line(tmp_path):
    result = run_module("rnnlab.predict", "--no-such-flag", "Great.", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip() == "predict: error: unrecognized arguments: --no-such-flag"


# A store others can write to (a team server). What such a writer can plant, and what predict does with it.


class Payload:
    """Pickled, this becomes a call that writes a marker file: what a hostile pickle would do instead."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').write('code from the store ran')",)


def hostile_python_model(marker: Path) -> mlflow.pyfunc.PythonModel:
    # A class local to a function: cloudpickle stores its code by value, so it runs wherever it is unpickled.
    class Hostile(mlflow.pyfunc.PythonModel):
        def load_context(self, context) -> None:
            marker.write_text("code from the store ran")

        def predict(self, context, model_input, params=None):
            marker.write_text("code from the store ran")
            return [1.0] * len(model_input)

    return Hostile()


def plant(uri: str, folder: Path, marker: Path, checkpoint: str | Path | None, tokenizer: Path,
          max_len: int = MAX_LEN) -> str:
    """A FINISHED run scoring test_acc 1.0 with a cloudpickled model named "model"; its "checkpoint" artifact:
    None (none), "pickled" (a pickle that writes `marker` when loaded), "junk" (not a checkpoint at all),
    "outside" (its MLmodel rewritten to name a file beyond the model's folder) or a Path (that file)."""
    client = mlflow.MlflowClient(uri)
    artifacts = {"tokenizer": str(tokenizer)}
    if isinstance(checkpoint, Path):
        artifacts["checkpoint"] = str(checkpoint)
    elif checkpoint:
        path = folder / "best.ckpt"
        if checkpoint == "junk":
            path.write_bytes(b"not a checkpoint")
        else:
            torch.save({"state_dict": Payload(marker), "hyper_parameters": {}}, path)
        artifacts["checkpoint"] = str(path)
    with use_tracking_uri(uri):
        with mlflow.start_run(experiment_id=client.get_experiment_by_name(EXPERIMENT).experiment_id,
                              run_name="lstm-fused-seed0") as run:
            mlflow.log_params({"data.max_len": max_len, "data.keep": "last"})
            mlflow.log_metric("test_acc", 1.0)
            # pip_requirements given: MLflow would otherwise load the model to infer them.
            mlflow.pyfunc.log_model(name="model", python_model=hostile_python_model(marker), artifacts=artifacts,
                                    pip_requirements=["mlflow"])
    if checkpoint == "outside":
        model = logged_model(client, run.info.run_id)
        with use_tracking_uri(uri):
            mlmodel = Path(mlflow.artifacts.download_artifacts(f"{model.artifact_location}/MLmodel",
                                                               dst_path=str(folder)))
        description = yaml.safe_load(mlmodel.read_text())
        description["flavors"]["python_function"]["artifacts"]["checkpoint"]["path"] = "../../best.ckpt"
        mlmodel.write_text(yaml.safe_dump(description))
        client.log_model_artifact(model.model_id, str(mlmodel))
    return run.info.run_id


def take_champion(uri: str, run_id: str) -> None:
    """What a writer can do to the registry: a version of rnnlab-imdb from the planted run, and the alias moved."""
    client = mlflow.MlflowClient(uri)
    model = logged_model(client, run_id)
    with use_tracking_uri(uri):
        version = client.create_model_version(REGISTERED_MODEL, f"models:/{model.model_id}", run_id=run_id,
                                              model_id=model.model_id)
    client.set_registered_model_alias(REGISTERED_MODEL, ALIAS, version.version)


REFUSED = "best.ckpt refused: it holds pickled objects, not plain weights (Unsupported global: GLOBAL exec"


@pytest.mark.parametrize("checkpoint, champion, by_run_id, says", [
    ("pickled", False, False, None),  # the best score in the store, but not the champion: not looked at
    (None, True, False, "is not an rnnlab model (its MLmodel names no checkpoint and tokenizer)"),
    ("pickled", True, False, REFUSED),
    ("junk", True, False, "best.ckpt is not an rnnlab checkpoint (Unsupported operand"),
    ("outside", True, False, "is not an rnnlab model (its MLmodel names '../../best.ckpt')"),
    ("pickled", False, True, REFUSED),  # chosen by hand, it is still only read as weights
])
def test_a_planted_model_is_not_run(store, tmp_path, checkpoint, champion, by_run_id, says):
    # A copy of the store, so the planted runs and the moved alias stay in this test.
    shutil.copyfile(store["root"] / "mlflow.db", tmp_path / "mlflow.db")
    uri, marker = f"sqlite:///{tmp_path}/mlflow.db", tmp_path / "marker"
    planted = plant(uri, tmp_path, marker, checkpoint, store["tokenizer"])
    if champion:
        take_champion(uri, planted)
    # The plant is live: loaded as MLflow loads a pyfunc model, or the checkpoint as a plain pickle, it runs.
    with use_tracking_uri(uri):
        mlflow.pyfunc.load_model(f"runs:/{planted}/model")
    assert marker.exists()
    marker.unlink()
    if checkpoint in ("pickled", "outside"):
        torch.load(tmp_path / "best.ckpt", weights_only=False)
        assert marker.exists()
        marker.unlink()

    result = predict_cli({**store, "uri": uri}, TEXTS[0], *(["--run-id", planted] if by_run_id else []))

    assert not marker.exists()
    if says is None:  # the champion answered
        assert result.returncode == 0, result.stderr[-3000:]
        assert f"the model of run {store['run_id']}" in result.stderr and planted not in result.stderr
        assert len(result.stdout.splitlines()) == 1
    else:
        assert result.returncode == 1 and result.stdout == ""
        [line] = result.stderr.splitlines()
        assert line.startswith("predict: error: ") and says in line, line
        assert planted in line


def trained_checkpoint(store: dict, folder: Path) -> Path:
    """The champion's own checkpoint, downloaded as predict downloads it."""
    client = mlflow.MlflowClient(store["uri"])
    checkpoint, _ = model_files(logged_model(client, store["run_id"]), store["uri"], str(folder))
    return checkpoint


def run_measured(args: list[str], cwd: Path, env: dict[str, str]) -> tuple[int, str, str, int]:
    """`python -m rnnlab.predict args`: (exit status, stdout, stderr, the process's peak memory in bytes)."""
    with open(cwd / "out.txt", "w+") as out, open(cwd / "err.txt", "w+") as err:
        process = subprocess.Popen([sys.executable, "-m", "rnnlab.predict", *args], cwd=cwd,
                                   env={**os.environ, **env}, stdout=out, stderr=err)
        deadline = time.monotonic() + 120  # a refusal takes seconds; building the planted network takes minutes
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)  # this child's own rusage, not all children's
            if pid:
                break
            if time.monotonic() > deadline:
                process.kill()
            time.sleep(0.05)
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return process.returncode, out.read(), err.read(), usage.ru_maxrss * 1024  # Linux: kilobytes


@pytest.mark.parametrize("plant_as, says", [
    ("max_len", "has data.max_len=1000000000000, data.keep='last': not an rnnlab run (max_len is 1 to 2,147,483,647"),
    ("hidden_size", ("best.ckpt is not an rnnlab checkpoint: its hyperparameters (cell='lstm', impl='fused', "
                     "vocab_size=40, embedding_dim=8, hidden_size=12000, num_layers=1) do not match its weights "
                     "(net.decoder.weight: [1, 12000] for those, [1, 8] in the file)")),
    ("num_layers", "best.ckpt is not an rnnlab checkpoint (num_layers=1000000000 for"),
    ("nan", "best.ckpt refused: its weights are not all finite numbers (NaN or inf in net.embedding.weight)"),
])
def test_a_planted_champion_with_impossible_settings_is_refused(store, tmp_path, plant_as, says):
    """The champion's real checkpoint, rewritten as anyone who can write to the store could: refused in one
    line, before the network they describe is built."""
    shutil.copyfile(store["root"] / "mlflow.db", tmp_path / "mlflow.db")
    uri, marker = f"sqlite:///{tmp_path}/mlflow.db", tmp_path / "marker"
    checkpoint = tmp_path / "best.ckpt"
    contents = torch.load(trained_checkpoint(store, tmp_path / "download"), weights_only=True)
    if plant_as == "hidden_size":  # 2.9 GB of LSTM weights for 12000 units: what building that network costs
        contents["hyper_parameters"]["hidden_size"] = 12000
    if plant_as == "num_layers":
        contents["hyper_parameters"]["num_layers"] = 10**9
    if plant_as == "nan":
        contents["state_dict"] = {k: torch.full_like(v, float("nan")) if v.is_floating_point() else v
                                  for k, v in contents["state_dict"].items()}
    torch.save(contents, checkpoint)
    planted = plant(uri, tmp_path, marker, checkpoint, store["tokenizer"],
                    max_len=10**12 if plant_as == "max_len" else MAX_LEN)
    take_champion(uri, planted)

    status, stdout, stderr, peak = run_measured([TEXTS[0]], tmp_path, {"MLFLOW_TRACKING_URI": uri})

    assert status == 1 and stdout == "", stderr[-3000:]
    [line] = stderr.splitlines()
    assert line.startswith("predict: error: ") and says in line, line
    assert planted in line
    assert peak < 1.5e9, f"predict's memory peaked at {peak / 1e9:.1f} GB"  # 12000 units built: over 2.9 GB
    assert not marker.exists()


def test_a_non_finite_answer_is_refused(store, tmp_path):
    """Finite weights can still overflow; a NaN out of the network is an error, not "nan neg"."""
    sentiment = Sentiment.from_files(trained_checkpoint(store, tmp_path), store["tokenizer"], MAX_LEN, "last")
    assert sentiment.predict(TEXTS)["probability"].between(0, 1).all()
    with torch.no_grad():
        sentiment.classifier.net.decoder.bias.fill_(float("nan"))  # as an overflow inside the network would leave it
    with pytest.raises(ValueError, match=r"^the model's answer is nan, not a probability, for 2 of 2 reviews"):
        sentiment.predict(TEXTS)


@pytest.mark.parametrize("init", ["pytorch", "keras"])
def test_a_checkpoint_of_either_init_loads(tmp_path, init):
    # The file check builds the described network on the meta device; Keras's init draws its seed there too
    # (experiment=article), which once made every such checkpoint "not an rnnlab checkpoint".
    torch.manual_seed(0)
    trained = RecurrentModule(cell="gru", impl="fused", vocab_size=50, embedding_dim=4, hidden_size=3, init=init)
    path = tmp_path / "best.ckpt"
    torch.save({"state_dict": trained.state_dict(), "hyper_parameters": dict(trained.hparams),
                "pytorch-lightning_version": pl.__version__}, path)
    loaded = load_classifier(path)
    assert all(torch.equal(loaded.state_dict()[key], value) for key, value in trained.state_dict().items())
