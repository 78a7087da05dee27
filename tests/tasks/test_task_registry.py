"""The task contract: a task added by one class and one registry entry reaches the config, the command line
and evaluation without any other change."""

import pytest
import torch
from conftest import tiny_vit
from torch.utils.data import TensorDataset

from dynamicvit.cli import build_parser
from dynamicvit.config import RunConfig, validate
from dynamicvit.tasks import TASKS, get_task, register_task, task_of
from dynamicvit.tasks.classify import ClassifyTask
from dynamicvit.tasks.evaluate import evaluate


class CountTask(ClassifyTask):
    """A toy task: its metric is the number of images evaluated."""

    name = "count"
    help = "a toy task for the registry test"

    def evaluate(self, model, dataset, cfg, batch_size, decisions_fn, reference) -> dict:
        return {"counted": len(dataset)}


@pytest.fixture
def count_task():
    task = register_task(CountTask())
    yield task
    TASKS.remove(task.name)


def test_registered_task_reaches_config_cli_and_evaluation(count_task):
    assert get_task("count") is count_task
    validate(RunConfig.of(task="count", dense=True), training=False)  # accepted as a --task value
    args = build_parser().parse_args(["train", "--task", "count"])
    assert args.task == "count"
    model = tiny_vit()
    assert task_of(model).name == "classify"  # a model without a task attribute is a classifier
    model.task = "count"
    assert task_of(model) is count_task
    data = TensorDataset(torch.randn(5, 3, 32, 32), torch.zeros(5, dtype=torch.long))
    assert evaluate(model, data) == {"counted": 5}


def test_unknown_task_is_one_line_error():
    with pytest.raises(ValueError, match="--task must be one of classify, segment, detect, got 'count'"):
        get_task("count")
    with pytest.raises(ValueError, match="--task must be one of"):
        validate(RunConfig.of(task="count"), training=False)


class DrawnCountTask(CountTask):
    """The toy task with a picture of its own: one PNG byte string per call."""

    name = "drawn-count"
    picture = "the number of images, drawn"

    def save_picture(self, model, dataset, path, count=4) -> None:
        with open(path, "wb") as f:
            f.write(b"%d" % min(count, len(dataset)))


def test_a_task_says_what_it_draws_and_eval_lists_it():
    task = register_task(DrawnCountTask())
    try:
        eval_parser = build_parser()._subparsers._group_actions[0].choices["eval"]
        (picture,) = [a.help for a in eval_parser._actions if "--picture" in a.option_strings]
        assert "drawn-count: the number of images, drawn" in picture
        assert "segment: inputs, labels" in picture
        assert "classify:" not in picture  # the classifier draws no picture
    finally:
        TASKS.remove(task.name)
    with pytest.raises(NotImplementedError, match="the classify task draws no picture"):
        get_task("classify").save_picture(tiny_vit(), [], "x.png")
