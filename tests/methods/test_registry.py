"""edge_cl.methods.registry's aliases: another name of a registered method ('multihead' is 'contexts') resolves to
the method's own name wherever methods are named; clashes are refused naming both."""

from __future__ import annotations

import pytest

from edge_cl import OnlineLearner, methods, models
from edge_cl.methods import registry
from edge_cl.methods.contexts import Contexts


def test_multihead_is_another_name_of_contexts():
    assert registry.aliases()["multihead"] == "contexts"
    assert methods.get("MultiHead") is Contexts
    assert methods.parse("der++ + multihead") == ["der++", "contexts"]
    assert methods.canonical("multihead+der++") == "contexts+der++"
    assert "multihead" not in methods.available()  # the contract suite runs each method once, under its own name


def test_a_learner_built_by_the_alias_is_the_method_under_its_own_name():
    learner = OnlineLearner(models.mlp(6, [8], 3), budget_bytes=100_000, method="der++ + multihead", device="cpu")
    assert learner.method == "der+++contexts" and isinstance(learner.get_method("contexts"), Contexts)


def test_naming_one_method_twice_through_its_alias_is_refused():
    with pytest.raises(ValueError, match="names a method twice"):
        methods.parse("contexts + multihead")


def test_alias_clashes_are_refused_naming_the_owner():
    with pytest.raises(ValueError, match="'er' is already the name of method 'er'"):
        registry.register_alias("er", "contexts")
    with pytest.raises(ValueError, match="'multihead' is already the name of method 'contexts'"):
        registry.register_alias("multihead", "der++")
    with pytest.raises(ValueError, match="'nonesuch' is not a registered method"):
        registry.register_alias("heads", "nonesuch")
    registry.register_alias("multihead", "contexts")  # the same alias again is no clash


def test_unknown_method_errors_offer_the_aliases():
    with pytest.raises(ValueError, match=r"also multihead \(= contexts\)"):
        methods.get("frobnicate")
