import pytest
import torch

from edge_cl import models


@pytest.mark.parametrize("builder,kwargs,dim", [
    (models.mlp, {"input_dim": 784, "hidden": [100, 100], "num_classes": 10}, 784),
    (models.cnn1d, {"channels": 6, "length": 50, "num_classes": 4}, 300),
    (models.cnn2d, {"height": 28, "width": 28, "num_classes": 10}, 784),
])
def test_builders_take_flat_inputs_and_rebuild_from_spec(builder, kwargs, dim):
    model = builder(**kwargs)
    assert model.input_dim == dim
    out = model(torch.zeros(3, dim))
    assert out.shape == (3, kwargs["num_classes"])
    rebuilt = models.build(model.spec)
    rebuilt.load_state_dict(model.state_dict())
    x = torch.randn(2, dim)
    torch.testing.assert_close(rebuilt(x), model(x))


def test_mlp_parameter_count_matches_der_protocol():
    model = models.mlp(784, [100, 100], 10)
    assert sum(p.numel() for p in model.parameters()) == 784 * 100 + 100 + 100 * 100 + 100 + 100 * 10 + 10


def test_cnn1d_accepts_windows_shaped_or_flat():
    model = models.cnn1d(channels=3, length=20, num_classes=2)
    x = torch.randn(4, 3, 20)
    torch.testing.assert_close(model(x), model(x.reshape(4, -1)))


def test_build_user_factory_records_spec():
    model = models.build({"type": "torch.nn:Linear", "in_features": 3, "out_features": 2})
    assert isinstance(model, torch.nn.Linear)
    assert model.spec["type"] == "torch.nn:Linear"


@pytest.mark.parametrize("spec,message", [
    ({"type": "transformer"}, "unknown"),
    ({"type": "mlp", "input_dim": 0, "num_classes": 3}, "input_dim"),
    ({"type": "mlp", "input_dim": 3, "num_classes": 2, "colour": 1}, "bad keys"),
    ({"type": "mlp", "input_dim": 3, "num_classes": 2, "activation": "swish"}, "activation"),
    ({"type": "nosuchpackage.x:f"}, "cannot be imported"),
    ({"input_dim": 3}, "'type'"),
])
def test_bad_specs_raise_clear_errors(spec, message):
    with pytest.raises(ValueError, match=message):
        models.build(spec)
