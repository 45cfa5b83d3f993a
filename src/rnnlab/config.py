"""Checks on a composed configuration, run before any work starts: one clear line per mistake."""

from __future__ import annotations

from omegaconf import DictConfig

from rnnlab.models.cells import EXPLICIT_CELLS
from rnnlab.models.classifier import POOLINGS
from rnnlab.models.encoder import IMPLS


class ConfigError(ValueError):
    pass


def check_config(cfg: DictConfig) -> None:
    model, data = cfg.model, cfg.data
    if model.cell not in EXPLICIT_CELLS:
        raise ConfigError(f"model.cell={model.cell!r} is unknown: choose {' | '.join(EXPLICIT_CELLS)}")
    if model.impl not in IMPLS:
        raise ConfigError(f"model.impl={model.impl!r} is unknown: choose {' | '.join(IMPLS)}")
    if model.pooling not in POOLINGS:
        raise ConfigError(f"model.pooling={model.pooling!r} is unknown: choose {' | '.join(POOLINGS)}")
    sizes = {"model.embedding_dim": model.embedding_dim, "model.hidden_size": model.hidden_size,
             "model.num_layers": model.num_layers, "data.batch_size": data.batch_size,
             "data.eval_batch_size": data.eval_batch_size, "trainer.max_epochs": cfg.trainer.max_epochs}
    for key in ("max_len", "seq_len", "train_size", "val_size", "test_size"):  # those this data set has
        if key in data:
            sizes[f"data.{key}"] = data[key]
    for name, value in sizes.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(f"{name}={value!r} must be a positive integer")
    if data.get("seq_len", 2) < 2:
        raise ConfigError(f"data.seq_len={data.seq_len} must be at least 2: one marker in each half")
    if not 0 <= model.dropout < 1:
        raise ConfigError(f"model.dropout={model.dropout!r} must be in [0, 1)")
    if data.get("vocab_size") is not None and data.vocab_size > cfg.prepare.vocab_size:
        raise ConfigError(f"data.vocab_size={data.vocab_size} exceeds prepare.vocab_size={cfg.prepare.vocab_size}")
