"""Hydra configuration: every group option composes, bad values fail before work starts, DVC and Hydra agree."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from rnnlab.cells import CELLS, PLAIN
from rnnlab.cli import UserError
from rnnlab.composition import compose_config
from rnnlab.train import build_data_and_model
from tests.helpers.project import PROJECT_ROOT, copy_project, run_module

CONF = PROJECT_ROOT / "conf"


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml") if not p.stem.startswith("_"))


@pytest.mark.parametrize(
    "override",
    [f"{group}={option}" for group in ("data", "model", "trainer", "logger", "callbacks", "experiment")
     for option in options(group)],
)
def test_every_group_option_composes_and_builds(override, prepared_dir):
    cfg = compose_config([override, f"paths.prepared_dir={prepared_dir}"])
    if "vocab_size" in cfg.data:
        cfg.data.vocab_size = None  # the tiny prepared vocabulary, smaller than experiment=article's 10,000
    OmegaConf.to_container(cfg, resolve=True)  # every interpolation resolves
    datamodule, model = build_data_and_model(cfg)  # and every setting passes the constructors' checks
    assert model.task == datamodule.task


def test_group_options_exist():
    assert options("model") == ["bag", "gru", "lstm", "rnn"]
    assert {"default", "gpu", "ddp", "ddp_sim"} <= set(options("trainer"))
    assert {"article", "best"} <= set(options("experiment"))


def test_cpu_trainers_and_callbacks_instantiate():
    for trainer in ("default", "ddp_sim"):
        cfg = compose_config([f"trainer={trainer}"])
        built = instantiate(cfg.trainer, logger=False, enable_checkpointing=False)
        assert built.max_epochs == cfg.trainer.max_epochs
    assert all(instantiate(c) is not None for c in compose_config([]).callbacks.values())
    assert compose_config([]).callbacks.model_checkpoint.monitor == "val_acc"  # what `test` and the export use


def test_article_experiment_is_the_keras_setup():
    cfg = compose_config(["experiment=article"])
    assert (cfg.data.vocab_size, cfg.data.max_len, cfg.data.batch_size) == (10000, 500, 128)
    assert (cfg.model.embedding_dim, cfg.model.hidden_size, cfg.model.pooling) == (32, 32, "last")
    assert cfg.model.optimizer._target_ == "torch.optim.RMSprop" and cfg.trainer.max_epochs == 10


def test_choosing_a_cell_by_group_or_by_key_is_the_same():
    """The DVC train stages set `model.cell=<cell>` on params.yaml (the baseline stage also `model.impl=plain`, a
    cell without recurrence's one implementation); Hydra users pick `model=<cell>`."""
    for cell in options("model"):
        impl = [] if CELLS[cell].recurrent else [f"model.impl={PLAIN}"]
        assert compose_config([f"model={cell}"]) == compose_config([f"model.cell={cell}", *impl])


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.cell=transformer",
         "model: cell='transformer' is unknown: choose rnn | lstm | gru | mingru | minlstm | qrnn | bag"),
        ("model.impl=cuda", "model: impl='cuda' is unknown: choose fused | explicit | sequence"),
        ("model.pooling=median", "model: pooling='median' is unknown: choose last | max | mean"),
        ("model.hidden_size=0", "model: hidden_size=0 must be a positive integer"),
        ("model.embedding_dim=-3", "model: embedding_dim=-3 must be a positive integer"),
        ("model.num_layers=true", "model: num_layers=True must be a positive integer"),
        ("data.max_len=0", "data: max_len=0 must be a positive integer"),
        ("data.keep=middle", "data: keep='middle' is unknown: choose first | last"),
        ("model.dropout=1.0", "model: dropout=1.0 must be a number in [0, 1)"),
        ("model.dropout=-0.1", "model: dropout=-0.1 must be a number in [0, 1)"),
        ("data.vocab_size=50000", "data: vocab_size=50000 exceeds the prepared vocabulary (58)"),
        ("model.optimizer.lr=-1", "model.optimizer: Invalid learning rate: -1"),
        ("+model.optimizer.betas=[2,0]", "model.optimizer: Invalid beta parameter at index 0: 2"),
    ],
)
def test_bad_values_are_refused(override, message, prepared_dir):
    cfg = compose_config([f"paths.prepared_dir={prepared_dir}", override])
    with pytest.raises(UserError) as error:
        build_data_and_model(cfg)
    assert str(error.value) == message


def test_train_cli_refuses_bad_config_in_one_line(tmp_path, prepared_dir):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    result = run_module("rnnlab.train", "model.cell=transformer", f"logger.tracking_uri={uri}",
                        f"paths.prepared_dir={prepared_dir}",
                        f"hydra.run.dir={tmp_path}/out", cwd=PROJECT_ROOT)
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert errors == ["train: error: model: cell='transformer' is unknown: choose rnn | lstm | gru | mingru | minlstm "
                      "| qrnn | bag"]
    assert not (tmp_path / "mlflow.db").exists()  # refused before any run was created


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A copy of the project: conf/local/ is this machine's (git-ignored), so a test writes there, never in the
    checkout. Its commands run the copy's sources, so that CONFIG_DIR is the copy's conf/."""
    return copy_project(tmp_path_factory.mktemp("project"))


GLOBAL = b"# @package _global_\n"


BROKEN = [
    ("invalid YAML", GLOBAL + b"trainer: [accelerator: gpu\n", None,
     "conf/local/default.yaml is not valid YAML: expected ',' or ']', but got '<stream end>' (line 3, column 1)"),
    ("binary", GLOBAL + b"\xff\xd8\xff\xe0\x00\x10JFIF", None,
     "conf/local/default.yaml is not UTF-8 text (invalid start byte at byte 20)"),
    ("a list", GLOBAL + b"- trainer.accelerator=gpu\n", None,
     "conf/local/default.yaml must hold settings (key: value), not a list"),
    ("no package line", b"logger:\n  tracking_uri: sqlite:///elsewhere.db\n", None,
     ("conf/local/default.yaml does not start with `# @package _global_`: without it, its settings would land "
      "under `local.` and be ignored")),
    ("a number as tracking URI", GLOBAL + b"logger:\n  tracking_uri: 5\n", None,
     "logger.tracking_uri=5 must be a URI (text such as sqlite:///mlflow.db), or null"),
    ("params.yaml invalid", None, b"data: [x\n",
     "params.yaml is not valid YAML: expected ',' or ']', but got '<stream end>' (line 2, column 1)"),
    # The file as it should be: read, and its setting applied (the training data looked for where it says).
    ("valid", GLOBAL + b"paths:\n  prepared_dir: /nowhere-local\n", None,
     "data: /nowhere-local/tokenizer.json not found: run `dvc repro prepare` first"),
]


@pytest.mark.parametrize(("case", "local", "params", "message"), BROKEN, ids=[case[0] for case in BROKEN])
def test_a_broken_machine_config_is_one_line(project, tmp_path, case, local, params, message):
    """conf/local/default.yaml and params.yaml are edited by hand; Hydra reports their mistakes as 9-30 lines of
    traceback, or (no `# @package _global_`) not at all."""
    local_file, params_file = project / "conf" / "local" / "default.yaml", project / "params.yaml"
    committed = params_file.read_bytes()
    args = ["--config-dir", ".", "--config-name", "params"] if params else []
    try:
        if local is not None:
            local_file.write_bytes(local)
        if params is not None:
            params_file.write_bytes(params)
        # A store of the test's own, unless the local file's is the case (the command line would override it).
        store = [] if case == "a number as tracking URI" else [f"logger.tracking_uri=sqlite:///{tmp_path}/mlflow.db"]
        result = run_module("rnnlab.train", *args, *store, f"hydra.run.dir={tmp_path}/out", cwd=project,
                            env={"PYTHONPATH": str(project / "src")})
    finally:
        local_file.unlink(missing_ok=True)
        params_file.write_bytes(committed)
    assert result.returncode == 1, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert errors == [f"train: error: {message}"]
    assert not (tmp_path / "mlflow.db").exists()  # refused before any run was created


# The cases of BROKEN that are the machine's file itself: `python -m rnnlab.params` composes conf/ with it too
BROKEN_LOCAL_FILES = [case for case in BROKEN if case[1] is not None and case[3].startswith("conf/local/")]


@pytest.mark.parametrize(("case", "local", "params", "message"), BROKEN_LOCAL_FILES,
                         ids=[case[0] for case in BROKEN_LOCAL_FILES])
def test_params_checks_the_machine_config_as_train_does(project, case, local, params, message):
    """`python -m rnnlab.params` composes conf/local/default.yaml into params.yaml: a broken one is the same one
    line as for train, and params.yaml is left as it was."""
    local_file, params_file = project / "conf" / "local" / "default.yaml", project / "params.yaml"
    committed = params_file.read_bytes()
    try:
        local_file.write_bytes(local)
        result = run_module("rnnlab.params", cwd=project, env={"PYTHONPATH": str(project / "src")})
    finally:
        local_file.unlink(missing_ok=True)
    assert result.returncode == 1, result.stderr[-3000:]
    assert [line for line in result.stderr.splitlines() if line.strip()] == [f"params: error: {message}"]
    assert params_file.read_bytes() == committed
