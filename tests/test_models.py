"""Model registry: every model fits its data, maps [0, 1] pixels to logits, normalises inside."""

import pytest
import torch

from distill_core.data import load_dataset
from distill_core.models import Normalize, build_model, list_models


@pytest.fixture(scope="module")
def infos():
    return {n: load_dataset(n, "test")[1] for n in ("moons", "digits", "mnist-5k")}


def _cifar_info(infos):
    from dataclasses import replace

    return replace(infos["mnist-5k"], name="cifar-like", input_shape=(3, 32, 32), mean=(0.5,) * 3, std=(0.25,) * 3)


@pytest.mark.parametrize("name", ["mlp", "papernot-cnn", "small-cnn", "resnet8", "resnet20", "resnet18"])
@pytest.mark.parametrize("data", ["digits", "mnist-5k", "cifar"])
def test_every_image_model_outputs_logits(infos, name, data):
    info = _cifar_info(infos) if data == "cifar" else infos[data]
    model = build_model(name, info).eval()
    x = torch.rand(3, *info.input_shape)
    assert model(x).shape == (3, info.num_classes)


def test_mlp_on_points_and_cnns_refuse_points(infos):
    assert build_model("mlp", infos["moons"])(torch.rand(5, 2)).shape == (5, 2)
    for name in set(list_models()) - {"mlp"}:
        with pytest.raises(ValueError, match="mlp"):
            build_model(name, infos["moons"])


def test_papernot_cnn_has_the_papers_widths(infos):
    grey = build_model("papernot-cnn", infos["mnist-5k"])
    widths = [m.out_channels for m in grey.modules() if isinstance(m, torch.nn.Conv2d)]
    fcs = [m.out_features for m in grey.modules() if isinstance(m, torch.nn.Linear)]
    assert widths == [32, 32, 64, 64] and fcs == [200, 200, 10]
    colour = build_model("papernot-cnn", _cifar_info(infos))
    assert [m.out_channels for m in colour.modules() if isinstance(m, torch.nn.Conv2d)] == [64, 64, 128, 128]
    assert [m.out_features for m in colour.modules() if isinstance(m, torch.nn.Linear)] == [256, 256, 10]


def test_normalisation_is_the_first_layer_and_saved(infos):
    info = infos["mnist-5k"]
    model = build_model("papernot-cnn", info)
    norm = model[0]
    assert isinstance(norm, Normalize)
    x = torch.rand(2, 1, 28, 28)
    assert torch.allclose(norm(x), (x - info.mean[0]) / info.std[0])
    assert any(k.endswith("mean") for k in model.state_dict())


def test_unknown_model_names_choices(infos):
    with pytest.raises(ValueError, match="choose from"):
        build_model("vit", infos["digits"])
