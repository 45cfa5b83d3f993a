"""The model the pipeline stands behind: MLflow registered model "rnnlab-imdb", alias "champion".

The compare stage points the alias at the pipeline's best run (highest test_acc) with `register_champion`;
`python -m rnnlab.predict` uses `models:/rnnlab-imdb@champion` unless given a run.
"""

from __future__ import annotations

import json

import mlflow
from mlflow.entities import LoggedModel
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.utils.mlflow_tags import MLFLOW_MODEL_VERSIONS

from rnnlab.errors import first_line
from rnnlab.tracking import NoStore, missing_store, quick_http, redact, use_tracking_uri

REGISTERED_MODEL = "rnnlab-imdb"


ALIAS = "champion"


CHAMPION_URI = f"models:/{REGISTERED_MODEL}@{ALIAS}"


LOGGED_MODEL = "model"  # the name each IMDB run logs its served model under: runs:/<run id>/model


def logged_model(client: mlflow.MlflowClient, run_id: str) -> LoggedModel | None:
    """The newest model named LOGGED_MODEL that run `run_id` logged; None if it logged none."""
    run = client.get_run(run_id)
    found = client.search_logged_models(
        [run.info.experiment_id], filter_string=f"source_run_id = '{run_id}' AND name = '{LOGGED_MODEL}'",
        order_by=[{"field_name": "creation_timestamp", "ascending": False}], max_results=1,
    )
    return found[0] if found else None


def champion(client: mlflow.MlflowClient) -> ModelVersion | None:
    """The version the alias points at; None if there is no such registered model or alias yet."""
    try:
        return client.get_model_version_by_alias(REGISTERED_MODEL, ALIAS)
    except MlflowException as e:
        # No registered model: RESOURCE_DOES_NOT_EXIST; a registered model without the alias: INVALID_PARAMETER_VALUE.
        if e.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise


def link_to_version(client: mlflow.MlflowClient, model: LoggedModel, version: ModelVersion) -> None:
    """Name `version` on the logged model's own page, which otherwise says "Not registered".

    MLflow's UI reads a logged model's versions from its tag "mlflow.modelVersions" (a JSON list of name and
    version); `mlflow.register_model` sets it, `MlflowClient.create_model_version` does not. That function is
    used anyway because it keeps the run id on the version (the run page's "rnnlab-imdb v1").
    """
    entry = {"name": version.name, "version": version.version}  # as mlflow.register_model writes it
    listed = json.loads(model.tags.get(MLFLOW_MODEL_VERSIONS, "[]"))
    if entry not in listed:
        client.set_logged_model_tags(model.model_id, {MLFLOW_MODEL_VERSIONS: json.dumps([*listed, entry])})


def register_champion(tracking_uri: str, run_id: str, tags: dict[str, str] | None = None) -> tuple[ModelVersion, bool]:
    """Make run `run_id`'s logged model the champion: (its version, whether the alias moved).

    A run already champion keeps its version, so rerunning compare does not pile up versions.
    NoStore when the store or the run is not there or the run logged no model.
    """
    why = missing_store(tracking_uri)
    if why:
        raise NoStore(why)
    client = mlflow.MlflowClient(tracking_uri)
    # The sqlite registry checks a version's source through the process-wide tracking URI.
    with quick_http(), use_tracking_uri(tracking_uri):
        try:
            model = logged_model(client, run_id)
            if model is None:
                raise NoStore(f"run {run_id} logged no model {LOGGED_MODEL!r}")
            current = champion(client)
            if current is not None and current.run_id == run_id:
                if current.model_id == model.model_id:  # registered before the link was written
                    link_to_version(client, model, current)
                return current, False
            try:
                client.create_registered_model(
                    REGISTERED_MODEL, description="The best model of rnnlab's pipeline; the compare stage moves "
                                                  f"alias {ALIAS!r} to the best run of each `dvc repro`.")
            except MlflowException as e:
                if e.error_code != "RESOURCE_ALREADY_EXISTS":
                    raise
            version = client.create_model_version(REGISTERED_MODEL, f"models:/{model.model_id}", run_id=run_id,
                                                  model_id=model.model_id, tags=tags)
            link_to_version(client, model, version)
            client.set_registered_model_alias(REGISTERED_MODEL, ALIAS, version.version)
            return version, True
        except MlflowException as e:
            # A server's URL may carry a password or token; the message goes to a terminal and to DVC's logs.
            raise NoStore(f"{redact(tracking_uri)}: {redact(first_line(e))}") from e
