"""The river adapter runs under river's own evaluation on a drifting synthetic stream."""

import itertools

import pytest
from river import datasets, evaluate, metrics, preprocessing
from river.datasets import synth

from edge_cl.river import Classifier


def drifting_sea(seed: int = 1):
    return synth.ConceptDriftStream(stream=synth.SEA(seed=seed, variant=0),
                                    drift_stream=synth.SEA(seed=seed, variant=2), seed=seed, position=1500, width=50)


def test_progressive_val_score_on_a_concept_drift_stream():
    model = preprocessing.StandardScaler() | Classifier(num_classes=2, budget_bytes=200_000, lr=0.05)
    stream = itertools.islice(drifting_sea(), 3000)
    metric = evaluate.progressive_val_score(stream, model, metrics.Accuracy())
    # SEA's majority class is about 60%; an online MLP reaches well above it.
    assert metric.get() > 0.8, metric
    assert model["Classifier"].learner.samples_learned == 3000 // 8 * 8


def test_learns_rivers_bundled_phishing_dataset():
    model = preprocessing.StandardScaler() | Classifier(num_classes=2, budget_bytes=200_000)
    metric = evaluate.progressive_val_score(datasets.Phishing(), model, metrics.Accuracy())
    assert metric.get() > 0.75


def test_labels_map_in_order_and_too_many_labels_is_clear():
    clf = Classifier(num_classes=2, batch_size=1)
    assert clf.predict_one({"a": 1.0}) is None  # nothing learned yet
    clf.learn_one({"a": 1.0, "b": 0.0}, "yes")
    clf.learn_one({"a": 0.0, "b": 1.0}, "no")
    assert set(clf.predict_proba_one({"a": 1.0})) == {"yes", "no"}
    assert clf.predict_one({"a": 1.0}) in {"yes", "no"}
    with pytest.raises(ValueError, match="raise num_classes"):
        clf.learn_one({"a": 0.5}, "maybe")


def test_clone_keeps_parameters():
    clf = Classifier(hidden=(8,), num_classes=3, lr=0.01)
    twin = clf.clone()
    assert twin.hidden == (8,) and twin.num_classes == 3 and twin.lr == 0.01 and twin.learner is None


def test_method_names_any_registered_method():
    from edge_cl.river import Classifier

    clf = Classifier(num_classes=2, budget_bytes=200_000, method="er+ewc")
    for i in range(20):
        clf.learn_one({"a": float(i % 2), "b": 1.0}, i % 2)
    assert clf.learner is not None and clf.learner.method == "er+ewc"


def test_docs_river_example_prints_what_the_docs_say(capsys):
    """The figure in the river example (docs/learner.md) is what the example prints (it runs the default learner)."""
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "docs" / "learner.md").read_text()
    section = readme[readme.index("## river"):]
    code = section[section.index("```python") + len("```python"):]
    code = code[:code.index("```")]
    claimed = re.search(r"# Accuracy: ([0-9.]+%)", code)
    assert claimed is not None
    exec(compile(code, "docs/learner.md", "exec"), {"__name__": "__docs__"})  # noqa: S102 - our own docs
    assert capsys.readouterr().out.strip() == f"Accuracy: {claimed.group(1)}"
