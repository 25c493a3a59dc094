"""Pretrained weights: torchvision's VGG16 classifier as fc6/fc7 convolutions, and loading from files."""
import pytest
import torch
from torchvision.models import mobilenet_v3_large, resnet50, vgg16

from fcn_core.models import (
    BackboneWeightsError,
    build_model,
    convert_vgg16_classifier,
    list_backbones,
    load_backbone_weights,
)


@pytest.fixture(scope="module")
def torchvision_vgg16():
    torch.manual_seed(0)
    return vgg16(weights=None).eval()  # random ImageNet-shaped weights: no download needed


@pytest.fixture(scope="module")
def vgg16_weights_file(tmp_path_factory, torchvision_vgg16):
    path = tmp_path_factory.mktemp("weights") / "vgg16.pth"
    torch.save(torchvision_vgg16.state_dict(), path)
    return path


@pytest.mark.slow
def test_convolutional_fc6_fc7_reproduce_the_classifier(torchvision_vgg16):
    converted = convert_vgg16_classifier(torchvision_vgg16.state_dict())
    assert converted["fc6.weight"].shape == (4096, 512, 7, 7)
    assert converted["fc7.weight"].shape == (4096, 4096, 1, 1)
    pool5 = torch.randn(2, 512, 7, 7)
    with torch.inference_mode():
        expected = torchvision_vgg16.classifier[:6](pool5.flatten(1))  # fc6, relu, dropout, fc7, relu, dropout
        fc6 = torch.nn.functional.conv2d(pool5, converted["fc6.weight"], converted["fc6.bias"]).relu()
        fc7 = torch.nn.functional.conv2d(fc6, converted["fc7.weight"], converted["fc7.bias"]).relu()
    assert fc7.shape == (2, 4096, 1, 1)
    torch.testing.assert_close(fc7.flatten(1), expected, atol=1e-4, rtol=1e-4)


@pytest.mark.slow
def test_loaded_backbone_matches_torchvision_vgg16_at_224(torchvision_vgg16, vgg16_weights_file):
    """In compact mode the backbone sees the 224x224 image as torchvision does; fc7 at the centre of its 7x7 map
    covers exactly pool5's 7x7 window, so it equals torchvision's classifier output."""
    model = build_model("fcn32s", 21, alignment="compact").eval()
    loaded = load_backbone_weights(model, vgg16_weights_file)
    assert "features.0.weight" in loaded and "fc6.weight" in loaded
    images = torch.randn(1, 3, 224, 224)
    with torch.inference_mode():
        expected = torchvision_vgg16.classifier[:6](torchvision_vgg16.features(images).flatten(1))  # (1, 4096)
        fc7 = model.backbone(images)["fc7"]  # (1, 4096, 7, 7)
    assert fc7.shape == (1, 4096, 7, 7)
    torch.testing.assert_close(fc7[:, :, 3, 3], expected, atol=1e-4, rtol=1e-4)


@pytest.mark.slow
def test_reference_model_loads_the_same_file(vgg16_weights_file, torchvision_vgg16):
    model = build_model("fcn8s", 21)
    load_backbone_weights(model, vgg16_weights_file)
    torch.testing.assert_close(model.backbone.features[0].weight, torchvision_vgg16.features[0].weight)
    assert model.backbone.features[0].padding == (100, 100)


def test_narrow_models_cannot_take_imagenet_weights(tmp_path):
    path = tmp_path / "vgg16.pth"
    torch.save({"features.0.weight": torch.zeros(64, 3, 3, 3)}, path)
    with pytest.raises(BackboneWeightsError, match="width_multiplier=1.0 only") as error:
        load_backbone_weights(build_model("fcn8s", 3, width_multiplier=1 / 32), path)
    assert "\n" not in str(error.value)


def test_wrong_or_missing_files_are_refused_in_one_line(tmp_path):
    model = build_model("fcn8s", 3)
    not_vgg = tmp_path / "other.pth"
    torch.save({"classifier.0.weight": torch.zeros(10, 10)}, not_vgg)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"\x00" * 64)
    for source, message in (
        (not_vgg, "not a torchvision VGG16 state dict"),
        (garbage, "refused by weights-only loading"),
        (tmp_path / "absent.pth", "no weights file"),
    ):
        with pytest.raises(BackboneWeightsError, match=message) as error:
            load_backbone_weights(model, source)
        assert "\n" not in str(error.value)


@pytest.mark.parametrize("backbone", list_backbones())
def test_imagenet_download_failure_says_to_pass_a_file(backbone, tmp_path, monkeypatch):
    """No network here (a proxy on a closed port stands in for an offline machine): one actionable line."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # no cached weights
    for variable in ("https_proxy", "HTTPS_PROXY"):
        monkeypatch.setenv(variable, "http://127.0.0.1:9")
    model = build_model("fcn32s", 3, backbone=backbone, width_multiplier=1 / 32 if backbone == "vgg16" else 1.0)
    with pytest.raises(BackboneWeightsError, match="could not download .*pass the local file path instead") as error:
        load_backbone_weights(model, "imagenet")
    assert "\n" not in str(error.value)


@pytest.mark.slow
def test_resnet50_loads_torchvision_weights_from_a_file(tmp_path):
    torch.manual_seed(0)
    reference = resnet50(weights=None).eval()
    path = tmp_path / "resnet50.pth"
    torch.save(reference.state_dict(), path)
    model = build_model("fcn8s", 3, backbone="resnet50").eval()
    assert len(load_backbone_weights(model, path)) == len(reference.state_dict()) - 2  # all but fc.weight, fc.bias
    images = torch.randn(1, 3, 64, 80)
    with torch.inference_mode():
        layers = torch.nn.Sequential(*list(reference.children())[:-2])  # conv1 ... layer4
        torch.testing.assert_close(model.backbone(images)["layer4"], layers(images))


def test_mobilenet_v3_large_loads_torchvision_weights_from_a_file(tmp_path):
    torch.manual_seed(0)
    reference = mobilenet_v3_large(weights=None).eval()
    path = tmp_path / "mobilenet_v3_large.pth"
    torch.save(reference.state_dict(), path)
    model = build_model("fcn8s", 3, backbone="mobilenet_v3_large").eval()
    classifier = [key for key in reference.state_dict() if key.startswith("classifier.")]
    assert len(load_backbone_weights(model, path)) == len(reference.state_dict()) - len(classifier)
    images = torch.randn(1, 3, 40, 56)
    with torch.inference_mode():
        taps = model.backbone(images)
        torch.testing.assert_close(taps["features16"], reference.features(images))  # (1, 960, 2, 2)
        torch.testing.assert_close(taps["features6"], reference.features[:7](images))  # (1, 40, 5, 7)
    assert [info.stride for info in model.backbone.feature_info] == [8, 16, 32]
    assert taps["features12"].shape[-2:] == (3, 4)  # ceil(40/16), ceil(56/16)


def test_mobilenet_weights_of_another_architecture_are_refused_in_one_line(tmp_path):
    path = tmp_path / "resnet50.pth"
    torch.save({"fc.weight": torch.zeros(1000, 2048)}, path)
    with pytest.raises(BackboneWeightsError, match="do not fit MobileNetV3LargeBackbone.*MobileNetV3LargeBackbone"):
        load_backbone_weights(build_model("fcn32s", 3, backbone="mobilenet_v3_large"), path)


@pytest.mark.parametrize("backbone", list_backbones())
def test_each_backbone_names_torchvision_imagenet_weights_that_exist(backbone):
    """The names are resolved only when weights are downloaded; a typo must not wait for that day."""
    from torchvision.models import get_weight

    model = build_model("fcn8s", 3, backbone=backbone, width_multiplier=1 / 32 if backbone == "vgg16" else 1.0)
    weights = get_weight(model.backbone.imagenet_weights)
    assert weights.meta["categories"] and len(weights.meta["categories"]) == 1000
    assert weights.url.startswith("https://download.pytorch.org/")
