"""The engine calls a task's optional members as they are (no probing), so every task mlmkit
ships must have every member `engine.task.Task` lists: `TaskBase` gives the defaults."""

from __future__ import annotations

import pytest

from mlmkit.char_mlm.task import CharMLMTask, SpanTask
from mlmkit.engine.task import Task, TaskBase, standard_metrics
from mlmkit.finetune.sequence_task import ClassificationTask
from mlmkit.finetune.token_task import TokenClassificationTask
from mlmkit.token_mlm.task import TokenMLMTask


def _members() -> list[str]:
    methods = [n for n, v in vars(Task).items() if callable(v) and not n.startswith("_")]
    attributes = [n for n in Task.__annotations__ if n != "model"]  # (the model is set per instance)
    return methods + attributes


@pytest.mark.parametrize("cls", [TokenMLMTask, CharMLMTask, ClassificationTask, TokenClassificationTask])
def test_every_shipped_task_has_every_member_the_engine_calls(cls):
    assert [m for m in _members() if not hasattr(cls, m)] == []


def test_the_defaults_are_the_ones_the_protocol_documents():
    base = TaskBase()
    doc = Task.__doc__
    assert base.batch_size is None and "None: the engine takes `train.batch_size`" in doc
    assert (base.rank, base.world_size, base.saved_submodule) == (0, 1, "")
    assert base.param_groups(None) == [] and base.load_data_state([None]) is None
    assert base.model_files(None, None) is None and base.sample_text(None, 3) is None and base.describe() == {}
    totals = {"loss_sum": 6.0, "targets": 3, "correct": 1}
    assert base.eval_metrics(totals) == standard_metrics(totals)
    optional = doc.split("Optional", 1)[1]
    assert all(f"`{m}" in optional for m in ("batch_size", "rank", "world_size", "saved_submodule", "param_groups",
                                             "load_data_state", "eval_metrics", "model_files", "sample_text",
                                             "describe"))


def test_an_evaluation_only_task_has_what_evaluate_calls():
    """`SpanTask` (`mlmkit eval` of a character model) is evaluated, never trained."""
    assert all(hasattr(SpanTask, m) for m in ("eval_batches", "forward", "eval_metrics"))
