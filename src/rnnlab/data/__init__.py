"""The data: download -> prepare (DVC stages), then the datamodules that feed training."""
