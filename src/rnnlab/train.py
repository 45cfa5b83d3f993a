"""Train one recurrent cell on IMDB and record the run in MLflow: the Hydra entry point.

    python -m rnnlab.train                                   # conf/config.yaml as it is (LSTM)
    python -m rnnlab.train model=gru trainer.max_epochs=2
    python -m rnnlab.train experiment=article               # the article's Keras setup
    python -m rnnlab.train -m model=rnn,lstm,gru seed=0,1,2  # a sweep: nine runs sharing one sweep id

The recipe: check config -> seed -> datamodule -> model -> callbacks -> logger -> trainer -> fit ->
test on the best checkpoint -> record -> return the best validation accuracy (what a sweeper optimises).
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

import hydra
import pytorch_lightning as pl
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import ModelCheckpoint

from rnnlab.config import ConfigError, check_config
from rnnlab.plots import plot_learning_curves
from rnnlab.serving import log_sentiment_model
from rnnlab.timing import TrainingTimer
from rnnlab.tracking import MarkInterrupted, flatten, run_tags


def train(cfg: DictConfig) -> float:
    """Train, test and record one run; returns the best validation accuracy (what a Hydra sweeper maximises)."""
    check_config(cfg)
    if HydraConfig.initialized():
        hydra_cfg = HydraConfig.get()
        sweep_id = hydra_cfg.sweep.dir if hydra_cfg.mode == RunMode.MULTIRUN else None
        return fit_and_record(cfg, Path(hydra_cfg.runtime.output_dir), sweep_id)
    # Called from Python (the adding sweep, tests): what the run leaves on disk is in MLflow (and export_dir)
    # by the end, so its working folder goes.
    with tempfile.TemporaryDirectory(prefix="rnnlab-") as output_dir:
        return fit_and_record(cfg, Path(output_dir), None)


def fit_and_record(cfg: DictConfig, output_dir: Path, sweep_id: str | None) -> float:
    pl.seed_everything(cfg.seed, workers=True)

    datamodule = instantiate(cfg.data)
    model = instantiate(cfg.model, **datamodule.model_inputs)

    timer = TrainingTimer()
    best = ModelCheckpoint(dirpath=output_dir / "checkpoints", filename="best", monitor="val_acc", mode="max")
    callbacks = [timer, best, MarkInterrupted(), *(instantiate(c) for c in cfg.callbacks.values())]

    run_name = cfg.logger.run_name or f"{cfg.model.cell}-{cfg.model.impl}-seed{cfg.seed}"
    logger = instantiate(cfg.logger, run_name=run_name)
    trainer: pl.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=logger, default_root_dir=output_dir)

    resolved = OmegaConf.to_container(cfg, resolve=True)
    try:
        if trainer.is_global_zero:
            # Creating the run here, before fit spawns DDP workers, makes every worker log into this one run.
            logger.log_hyperparams(flatten(resolved))
            tags = run_tags(cfg.model.cell, cfg.model.impl, cfg.data.get("data_dir"), cfg.trainer.accelerator, sweep_id)
            for key, value in tags.items():
                logger.experiment.set_tag(logger.run_id, key, value)
            logger.log_metrics({"n_params": sum(p.numel() for p in model.parameters())})
        trainer.fit(model, datamodule=datamodule)
        trainer.test(model, datamodule=datamodule, ckpt_path="best")
        if trainer.is_global_zero:
            record(cfg, resolved, trainer, logger, best, output_dir)
    except BaseException as e:
        if trainer.is_global_zero:
            # Lightning turns Ctrl-C into SystemExit after telling the logger; the logger remembers it.
            status = "KILLED" if isinstance(e, KeyboardInterrupt) or logger.interrupted else "FAILED"
            logger.experiment.set_terminated(logger.run_id, status)
        raise
    return best_score(best, logger)


def best_score(best: ModelCheckpoint, logger) -> float:
    """The best validation accuracy, the checkpoint's score. ddp_spawn hands the best checkpoint's path back to
    this process but not its score: then it is read from the run, where rank 0 logged every epoch's val_acc."""
    if best.best_model_score is not None:
        return float(best.best_model_score)
    return max(m.value for m in logger.experiment.get_metric_history(logger.run_id, "val_acc"))


def record(cfg, resolved: dict, trainer: pl.Trainer, logger, best: ModelCheckpoint, output_dir: Path) -> None:
    """Artifacts in MLflow (config, checkpoint, learning curves); for DVC, the checkpoint and a metrics JSON."""
    client, run_id = logger.experiment, logger.run_id
    run = client.get_run(run_id)
    logged = run.data.metrics  # latest value of each; DDP workers logged them here
    metric = lambda name: float(logged[name])  # noqa: E731
    history = {name: [m.value for m in sorted(client.get_metric_history(run_id, name), key=lambda m: m.step)]
               for name in ("train_loss", "val_loss", "val_acc", "epoch_time_s")}
    summary = {
        "cell": cfg.model.cell,
        "impl": cfg.model.impl,
        "seed": cfg.seed,
        "test_acc": metric("test_acc"),
        "test_loss": metric("test_loss"),
        "best_val_acc": best_score(best, logger),
        "fit_time_s": metric("fit_time_s"),
        "train_samples_per_s": metric("train_samples_per_s"),
        "epochs": trainer.current_epoch,
        "n_params": sum(p.numel() for p in trainer.lightning_module.parameters()),
        "device": run.data.tags.get("device"),
        "mlflow_run_id": run_id,
        "history": history,
    }
    config_path = output_dir / "config.yaml"
    config_path.write_text(OmegaConf.to_yaml(resolved))
    curves_path = output_dir / "learning_curves.png"
    loss_name = "BCE" if trainer.lightning_module.task == "binary" else "MSE"
    plot_learning_curves(history, f"{cfg.model.cell} ({cfg.model.impl})", curves_path, loss_name)
    for path in (config_path, curves_path):
        client.log_artifact(run_id, str(path))
    client.log_artifact(run_id, best.best_model_path, artifact_path="checkpoints")
    if "data_dir" in cfg.data:  # served models read review text; generated data (data=adding) have no tokenizer
        log_sentiment_model(run_id, logger._tracking_uri, best.best_model_path,
                            Path(cfg.data.data_dir) / "tokenizer.json", cfg.data.max_len, cfg.data.keep)
    if cfg.export_dir:
        export = Path(cfg.export_dir)
        export.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(best.best_model_path, export / "model.ckpt")
        (export / "metrics.json").write_text(json.dumps(summary, indent=2) + "\n")
    client.set_terminated(run_id, "FINISHED")


@hydra.main(version_base="1.3", config_path="../../conf", config_name="config")
def main(cfg: DictConfig) -> float:
    try:
        return train(cfg)
    except (ConfigError, FileNotFoundError) as e:
        print(f"train: error: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
