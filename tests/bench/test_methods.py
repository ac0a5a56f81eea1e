import pytest

from edge_cl import methods
from edge_cl.bench.methods import is_learner_method, method_spec, parse_methods


def test_parse_methods_keeps_order_and_drops_duplicates():
    assert parse_methods("sgd, er,er+mas,er, ER + MAS") == ["sgd", "er", "er+mas"]


def test_parse_methods_names_the_bad_one():
    with pytest.raises(ValueError, match="'gem'"):
        parse_methods("er,gem")
    with pytest.raises(ValueError, match="no method"):
        parse_methods(" , ")


@pytest.mark.parametrize("name,replay,consolidates", [("sgd", 0, False), ("er", 10, False), ("ewc", 0, True),
                                                      ("mas", 0, True), ("er+ewc", 10, True), ("er+mas", 10, True)])
def test_learner_kwargs(name, replay, consolidates):
    kw = method_spec(name).learner_kwargs(10, "plateau")
    assert kw["method"] == name and kw["replay_batch"] == replay
    assert kw["trigger"] == ("plateau" if consolidates else None)


@pytest.mark.parametrize("name", methods.available())
def test_every_registered_method_is_a_bench_method(name):
    assert is_learner_method(name) and parse_methods(f"{name},joint") == [name, "joint"]


def test_bare_equivalents():
    assert method_spec("er+mas").bare_equivalent == "bare-er"
    assert method_spec("ewc").bare_equivalent == "bare-sgd"
    with pytest.raises(ValueError, match="joint"):
        method_spec("joint")
