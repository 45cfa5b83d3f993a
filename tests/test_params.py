"""One source of truth: params.yaml (read by DVC) must be exactly conf/ (read by Hydra) composed."""

from __future__ import annotations

from rnnlab.params import compose_params
from tests.helpers.project import PROJECT_ROOT


def test_params_yaml_is_conf_composed(tmp_path):
    composed = tmp_path / "params.yaml"
    compose_params(composed)
    assert composed.read_text() == (PROJECT_ROOT / "params.yaml").read_text(), (
        "params.yaml has drifted from conf/: run `python -m rnnlab.params` and commit the result"
    )
