"""The model builder: everything that makes a model for use – a run's dense model and data sets from its
config, its reduced student, the eval-mode model of a training checkpoint or of a name with no checkpoint –
and the evaluation of a run. Commands that do not train build through here and import nothing from
:mod:`dynamicvit.train`."""

from dynamicvit.builder.data import build_dense_for_data, build_run_dataset, data_for, dataset_task
from dynamicvit.builder.evaluate import evaluate_checkpoint, evaluate_run, load_for_eval
from dynamicvit.builder.models import (
    build_dense,
    build_pair,
    build_untrained,
    configure_reducer,
    load_trained,
    reduce,
    set_keep_mode,
    trunk,
)

__all__ = [
    "build_dense",
    "build_dense_for_data",
    "build_pair",
    "build_run_dataset",
    "build_untrained",
    "configure_reducer",
    "data_for",
    "dataset_task",
    "evaluate_checkpoint",
    "evaluate_run",
    "load_for_eval",
    "load_trained",
    "reduce",
    "set_keep_mode",
    "trunk",
]
