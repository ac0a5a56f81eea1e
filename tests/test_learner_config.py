"""No setting changes which method runs: the default is the same everywhere, and a setting only tunes a method
of the combination that declares it."""

from __future__ import annotations

import numpy as np
import pytest

from edge_cl import methods, models
from edge_cl.learner import OnlineLearner
from edge_cl.learner_config import DEFAULT_METHOD, LearnerConfig, saved_config
from edge_cl.river import Classifier


def _settings() -> list[tuple[str, str]]:
    """(setting, a registered method declaring it) for every setting of every registered method."""
    out: dict[str, str] = {}
    for name in methods.available():
        for key in methods.get(name).Settings.model_fields:
            out.setdefault(key, name)
    return sorted(out.items())


def _example_value(method: str, key: str) -> object:
    field = methods.get(method).Settings.model_fields[key]
    return field.default


@pytest.mark.parametrize("key,owner", _settings())
def test_a_setting_never_changes_the_default_method(key, owner):
    value = _example_value(owner, key)
    if key in methods.get(DEFAULT_METHOD).Settings.model_fields:
        assert LearnerConfig(budget_bytes=1_000_000, **{key: value}).method == DEFAULT_METHOD
        return
    with pytest.raises(ValueError, match=rf"{key} is a setting of method.*{owner}.*runs none of them"):
        LearnerConfig(budget_bytes=1_000_000, **{key: value})


@pytest.mark.parametrize("replay_batch", [0, 1, 10])
def test_replay_batch_never_changes_the_default_method(replay_batch):
    if replay_batch == 0:
        with pytest.raises(ValueError, match="replay_batch=0 turns replay off"):
            LearnerConfig(budget_bytes=1_000_000, replay_batch=0)
    else:
        assert LearnerConfig(budget_bytes=1_000_000, replay_batch=replay_batch).method == DEFAULT_METHOD


def test_one_default_everywhere():
    from edge_cl.cli.bench import DEFAULT_METHODS
    from edge_cl.config import DaemonLearnerConfig

    learner = OnlineLearner(models.mlp(4, [8], 2), budget_bytes=200_000, device="cpu")
    assert learner.method == DEFAULT_METHOD
    assert DaemonLearnerConfig().method == DEFAULT_METHOD
    assert DEFAULT_METHODS.split(",")[0] == DEFAULT_METHOD
    river = Classifier(num_classes=2)
    river.learn_one({"a": 0.1, "b": 0.2}, True)
    assert river.learner is not None and river.learner.method == DEFAULT_METHOD


def test_saved_pre_plugin_settings_load_but_new_ones_are_checked():
    saved = {"budget_bytes": 100_000, "method": "er", "method_params": {"importance_every": 3}}
    assert saved_config(saved).method == "er" and saved_config(saved).method_params == {}
    with pytest.raises(ValueError, match="importance_every is a setting"):
        LearnerConfig.model_validate(saved)


def test_river_adapter_learns_with_the_default():
    rng = np.random.default_rng(0)
    clf = Classifier(num_classes=2, batch_size=4)
    for _ in range(40):
        x = rng.standard_normal(3)
        clf.learn_one({"a": x[0], "b": x[1], "c": x[2]}, bool(x[0] > 0))
    assert clf.learner is not None and clf.learner.step == 10
