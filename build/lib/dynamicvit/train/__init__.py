"""Training: the run's configuration, builders, the trainer, evaluation and distributed helpers."""
