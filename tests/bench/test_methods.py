import pytest

from edge_cl.bench.methods import method_spec, parse_methods


def test_parse_methods_keeps_order_and_drops_duplicates():
    assert parse_methods("sgd, er,er+mas,er") == ["sgd", "er", "er+mas"]


def test_parse_methods_names_the_bad_one():
    with pytest.raises(ValueError, match="'gem'"):
        parse_methods("er,gem")
    with pytest.raises(ValueError, match="no method"):
        parse_methods(" , ")


@pytest.mark.parametrize("name,importance,replay", [("sgd", None, 0), ("er", None, 10), ("ewc", "ewc", 0),
                                                     ("mas", "mas", 0), ("er+ewc", "ewc", 10), ("er+mas", "mas", 10)])
def test_learner_kwargs(name, importance, replay):
    kw = method_spec(name).learner_kwargs(10, "plateau")
    assert kw["importance"] == importance and kw["replay_batch"] == replay
    assert kw["trigger"] == ("plateau" if importance else None)


def test_bare_equivalents():
    assert method_spec("er+mas").bare_equivalent == "bare-er"
    assert method_spec("ewc").bare_equivalent == "bare-sgd"
    with pytest.raises(ValueError, match="joint"):
        method_spec("joint")
