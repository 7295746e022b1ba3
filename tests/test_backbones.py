"""Backbones: every chain equals its network, prefixes chain, every parameter lands in one group, and the
hub adapters load real files through their real code paths, offline."""

from __future__ import annotations

import collections
import copy
import hashlib
import importlib
import json
import os
import shutil
import urllib.error
import urllib.request

import pytest
import torch
from safetensors.torch import save as safetensors_save
from torch import nn

from headstart.auto.candidates import HUB_IMAGE_BACKBONES, HUB_TEXT_BACKBONES
from headstart.backbones import create_backbone, get_spec, list_backbones
from headstart.backbones.hub_access import why_unreachable
from headstart.errors import UserError

for _module in ("efficientnet_lite", "hf_hub", "mobilenet_v2", "timm_hub", "torchvision_hub"):
    importlib.import_module(
        f"headstart.backbones.{_module}"
    )  # importing registers, whatever the registry's lazy loader does

SITE = os.path.dirname(os.path.dirname(torch.__file__))
GRACE_HOPPER = os.path.join(SITE, "matplotlib", "mpl-data", "sample_data", "grace_hopper.jpg")
CHINA = os.path.join(SITE, "sklearn", "datasets", "images", "china.jpg")


# ---- helpers ---------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _seed_and_threads():
    # Tiny tensors: one thread is fastest, and several threads spin badly when another process holds the cores.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(threads)


def assert_close_scaled(actual: torch.Tensor, expected: torch.Tensor, tol: float = 1e-4):
    """Equal up to `tol` of the expected values' scale (randomly initialised nets can have tiny outputs,
    where a fixed absolute tolerance would accept anything)."""
    assert actual.shape == expected.shape
    scale = expected.abs().max()
    assert scale > 0 and torch.isfinite(scale)
    assert expected.std() > 1e-3 * scale, "degenerate reference: all outputs alike"
    err = (actual - expected).abs().max() / scale
    assert err < tol, f"relative error {err:.2e}"


def assert_chain(backbone, x: torch.Tensor, features: torch.Tensor | None = None, logits: torch.Tensor | None = None):
    """body(x) equals the network's pre-logits features / source_head(body(x)) its logits; prefixes chain."""
    assert_group_names(backbone)
    body = backbone.body.eval()
    with torch.no_grad():
        out = body(x)
        assert out.shape == (x.shape[0], backbone.width)
        if features is not None:
            assert_close_scaled(out, features)
        if logits is not None:
            assert_close_scaled(backbone.source_head(out), logits)
        n = len(body.group_names)
        assert n >= 3
        for k in range(1, n):
            torch.testing.assert_close(body.run(body.run(x, 0, k), k), out, rtol=0, atol=0)


def assert_group_names(backbone):
    """Every layer group of the body has a name of its own, and none takes a name the Classifier gives its own
    groups: a model's groups (body, then "adapters" once LoRA adds them, then "head") are all distinct."""
    from headstart.backbones.base import RESERVED_GROUP_NAMES
    from headstart.model import Classifier

    names = backbone.body.group_names
    assert len(set(names)) == len(names), names
    assert not set(names) & set(RESERVED_GROUP_NAMES), names
    model = Classifier(backbone, 2)
    assert model.group_names == names + ["head"]
    assert [m for _, m in model.layer_groups()][-1] is model.head


def assert_partition(backbone, network: nn.Module, classifier: nn.Module | None = None):
    """Every parameter/buffer of `network` is in exactly one group (or the classifier); each group owns some;
    the body's state dict has unique tensors (safetensors refuses shared ones)."""
    body = backbone.body
    named = list(body.named_parameters(remove_duplicate=False)) + list(body.named_buffers(remove_duplicate=False))
    assert len({id(t) for _, t in named}) == len(named), "a tensor is registered twice in the body"
    head_params = sum(p.numel() for p in classifier.parameters()) if classifier is not None else 0
    assert sum(p.numel() for p in body.parameters()) + head_params == sum(p.numel() for p in network.parameters())
    for name, group in body.groups.items():
        assert sum(p.numel() for p in group.parameters()) > 0, f"group {name} owns no parameters"
    safetensors_save(body.state_dict())  # raises on shared tensors


def tensor_multiset(tensors) -> collections.Counter:
    return collections.Counter(
        (tuple(t.shape), hashlib.sha1(t.detach().cpu().contiguous().numpy().tobytes()).hexdigest()) for t in tensors
    )


def assert_same_weights(backbone, reference_state: dict[str, torch.Tensor]):
    """The body + source head hold exactly the reference tensors (by value), each once."""
    mine = list(backbone.body.state_dict().values())
    if backbone.source_head is not None:
        mine += list(backbone.source_head.state_dict().values())
    assert tensor_multiset(mine) == tensor_multiset(reference_state.values())


def assert_rebuilds_offline(backbone, name: str, x: torch.Tensor):
    """arch_config is JSON and rebuilds the same architecture with pretrained=False; the state loads strictly."""
    config = json.loads(json.dumps(backbone.arch_config))
    rebuilt = create_backbone(name, pretrained=False, arch_config=config)
    assert rebuilt.body.group_names == backbone.body.group_names
    assert rebuilt.preprocessing == backbone.preprocessing
    assert rebuilt.width == backbone.width
    rebuilt.body.load_state_dict(backbone.body.state_dict(), strict=True)
    with torch.no_grad():
        assert torch.equal(rebuilt.body.eval()(x), backbone.body.eval()(x))


def assert_one_line_user_error(excinfo, *words):
    message = str(excinfo.value)
    assert "\n" not in message
    for w in words:
        assert w in message


@pytest.fixture
def offline_hub(monkeypatch, tmp_path):
    """No Hugging Face network, and an empty cache."""
    import huggingface_hub.constants as hc

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))


def preprocess(path: str, p) -> torch.Tensor:
    from PIL import Image
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import v2 as T

    transform = T.Compose(
        [
            T.Resize(p.resize_size, interpolation=InterpolationMode(p.interpolation)),
            T.CenterCrop(p.input_size),
            T.ToImage(),
            T.ToDtype(torch.float32, scale=True),
            T.Normalize(p.mean, p.std),
        ]
    )
    return transform(Image.open(path).convert("RGB"))[None]


def top(backbone, x: torch.Tensor, k: int = 5) -> list[tuple[str, float]]:
    with torch.no_grad():
        probs = backbone.source_head(backbone.body.eval()(x)).softmax(-1)[0]
    values, idx = probs.topk(k)
    return [(backbone.source_classes[i], float(v)) for v, i in zip(values, idx)]


# ---- registry ----------------------------------------------------------------------------------------


def test_registry_lists_offline_backbones_and_adapters():
    names = {s.name for s in list_backbones()}
    assert {"mobilenet_v2", "efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"} <= names
    for bad in ("timm:no_such_model_xyz", "torchvision:no_such_model_xyz"):
        with pytest.raises(UserError) as e:
            get_spec(bad)
        assert_one_line_user_error(e, "no_such_model_xyz")
    assert get_spec("timm:local-dir:/somewhere").offline
    assert not get_spec("timm:resnet18").offline
    assert get_spec("hf:/some/folder").offline and not get_spec("hf:google/vit-base-patch16-224").offline


# ---- layer group names ----------------------------------------------------------------------------------

REGISTERED_GROUPS = {
    "mobilenet_v2": ["stem", "stage1", "stage2", "stage3", "stage4"],
    "efficientnet_lite0": ["stem", "stage1", "stage2", "stage3", "stage4", "conv_head"],
    "efficientnet_lite1": ["stem", "stage1", "stage2", "stage3", "stage4", "conv_head"],
    "efficientnet_lite2": ["stem", "stage1", "stage2", "stage3", "stage4", "conv_head"],
    "minilm-l6": ["embeddings"] + [f"layer{i}" for i in range(1, 7)] + ["pooler"],
}


def test_every_registered_backbone_is_listed_here():
    assert {s.name for s in list_backbones()} == set(REGISTERED_GROUPS)


@pytest.mark.parametrize("name", list(REGISTERED_GROUPS))
def test_every_registered_backbone_names_its_groups_once_and_leaves_head_to_the_classifier(name):
    """The body's last group has a name of its own (EfficientNet-Lite's 1x1 conv_head used to be "head",
    beside the new classifier's head, so `--strategy head` trained both)."""
    b = create_backbone(name)
    assert b.body.group_names == REGISTERED_GROUPS[name]
    assert_group_names(b)


@pytest.mark.parametrize("model_type", ["bert", "roberta", "xlm-roberta", "camembert", "electra", "distilbert"])
def test_hf_text_encoder_families_name_their_groups_once(model_type, tmp_path, offline_hub):
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    from headstart.backbones.text_encoders import minilm_folder

    size = (
        dict(dim=32, n_layers=2, n_heads=2, hidden_dim=64)
        if model_type == "distilbert"
        else dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
    )
    AutoModel.from_config(
        AutoConfig.for_model(model_type, vocab_size=1000, max_position_embeddings=64, **size)
    ).save_pretrained(tmp_path)
    AutoTokenizer.from_pretrained(minilm_folder()).save_pretrained(tmp_path)
    b = create_backbone(f"hf:{tmp_path}")
    assert b.body.group_names == ["embeddings", "layer1", "layer2", "pooler"]
    assert_group_names(b)


def test_a_duplicate_or_reserved_group_name_is_a_clear_error(monkeypatch):
    from headstart.backbones import registry
    from headstart.backbones.base import Backbone, BackboneSpec, GroupedBody, Preprocessing

    a, b = nn.Linear(2, 2), nn.Linear(2, 2)
    with pytest.raises(RuntimeError, match="two layer groups are named 'stage1'"):
        GroupedBody([("stem", a), ("stage1", b), ("stage1", nn.Identity())], "timm:x")
    for reserved in ("head", "adapters"):
        with pytest.raises(RuntimeError, match=f"timm:x.*{reserved!r}.*reserved"):
            GroupedBody({"stem": a, reserved: b}, "timm:x")
    with pytest.raises(RuntimeError, match="not a plain name"):
        GroupedBody([("", a)])

    # an adapter whose body escaped GroupedBody's check is still refused where the backbone is built
    def make_spec(rest):
        def build(pretrained=True, arch_config=None):
            body = GroupedBody({"stem": a, "stage1": b})
            body.groups["head"] = nn.Identity()
            return Backbone(f"fake:{rest}", body, 2, Preprocessing((0.5,) * 3, (0.5,) * 3, 8, 8), False, "random")

        return BackboneSpec(f"fake:{rest}", "fake", True, None, build)

    monkeypatch.setitem(registry.ADAPTERS, "fake", make_spec)
    with pytest.raises(RuntimeError) as e:
        create_backbone("fake:net")
    assert "fake:net" in str(e.value) and "'head'" in str(e.value) and "\n" not in str(e.value)


def _former_state(state: dict[str, torch.Tensor], group: str) -> dict[str, torch.Tensor]:
    """A state dict as headstart wrote it when the body's last group was called "head"."""
    old = {k.replace(f"body.groups.{group}.", "body.groups.head.", 1): v for k, v in state.items()}
    assert len(old) == len(state) and any(k.startswith("body.groups.head.") for k in old)
    return old


@pytest.mark.parametrize(
    "name,group",
    [
        ("efficientnet_lite0", "conv_head"),
        ("torchvision:efficientnet_b0", "lastconv"),
        ("torchvision:mobilenet_v3_small", "lastconv"),
    ],
)
def test_weights_saved_under_the_former_group_name_head_still_load(name, group, tmp_path, monkeypatch):
    """A run folder holds its layer groups in config.json, but inference rebuilds the model from the backbone
    name and loads model.safetensors strictly by parameter name. Renaming the last group changes only the
    `body.groups.<group>.` part of those names (what is inside the group keeps its names); weights saved
    under `body.groups.head.` load into the renamed group, and today's weights load as they are."""
    from safetensors.torch import save_file

    from headstart.files import load_weights
    from headstart.model import Classifier

    monkeypatch.setattr(
        urllib.request, "urlopen", lambda *a, **k: (_ for _ in ()).throw(urllib.error.URLError("offline"))
    )
    torch.manual_seed(0)
    model = Classifier(create_backbone(name, pretrained=False), 3).eval()
    with torch.no_grad():
        for m in model.modules():  # statistics and weights that differ from a fresh build's
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    assert model.group_names[-2:] == [group, "head"]
    old = _former_state(state, group)

    def inside(keys, g):
        return sorted(k[len(f"body.groups.{g}.") :] for k in keys if k.startswith(f"body.groups.{g}."))

    assert inside(old, "head") == inside(state, group)  # the same names inside the group
    assert set(old) - {k for k in old if k.startswith("body.groups.head.")} == set(state) - {
        k for k in state if k.startswith(f"body.groups.{group}.")
    }  # and everywhere else
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = model(x)
    for saved in (old, state):
        save_file(saved, str(tmp_path / "model.safetensors"))
        torch.manual_seed(1)
        fresh = Classifier(
            create_backbone(
                name,
                pretrained=False,
                arch_config=json.loads(json.dumps(create_backbone(name, pretrained=False).arch_config)),
            ),
            3,
        ).eval()
        load_weights(tmp_path / "model.safetensors", fresh)  # strict
        assert all(torch.equal(fresh.state_dict()[k], v) for k, v in state.items())
        with torch.no_grad():
            assert torch.equal(fresh(x), expected)


# ---- mobilenet_v2 --------------------------------------------------------------------------------------


def test_mobilenet_v2_chain_and_partition():
    from torchvision.models import mobilenet_v2

    from headstart.backbones.mobilenet_v2 import weights_path

    b = create_backbone("mobilenet_v2")
    ref = mobilenet_v2(weights=None)
    ref.load_state_dict(torch.load(weights_path(), map_location="cpu", weights_only=True))
    ref.eval()
    assert_same_weights(b, ref.state_dict())
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        feats = torch.flatten(nn.functional.adaptive_avg_pool2d(ref.features(x), 1), 1)
        logits = ref(x)
    assert_chain(b, x, feats, logits)
    assert_partition(b, ref, ref.classifier)


# ---- EfficientNet-Lite ----------------------------------------------------------------------------------


def test_efficientnet_lite0_loads_package_weights_and_chains():
    import timm

    from headstart.backbones.efficientnet_lite import load_by_position, weights_path

    b = create_backbone("efficientnet_lite0")
    assert b.body.group_names == ["stem", "stage1", "stage2", "stage3", "stage4", "conv_head"]
    assert b.width == 1280 and len(b.source_classes) == 1000 and b.source_classes[0] == "tench"
    p = b.preprocessing
    assert (p.input_size, p.resize_size, p.interpolation) == (224, 256, "bicubic")
    assert p.mean == pytest.approx((127 / 255,) * 3) and p.std == pytest.approx((128 / 255,) * 3)

    state = torch.load(weights_path("efficientnet_lite0"), map_location="cpu", weights_only=True)
    assert len([k for k in state if not k.endswith("num_batches_tracked")]) == 247
    ref = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    load_by_position(ref, state, "test")
    ref.eval()
    assert_same_weights(b, {k: v for k, v in ref.state_dict().items()})
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert_chain(b, x, ref.forward_head(ref.forward_features(x), pre_logits=True), ref(x))
    assert_partition(b, ref, ref.classifier)
    # the stem is conv_stem + bn1 + the stride-2 blocks, each stage one resolution
    with torch.no_grad():
        sizes = [b.body.run(x, 0, k).shape[-1] for k in range(1, 5)]
    assert sizes == [32, 16, 8, 4]


def test_efficientnet_lite0_classifies_real_photos():
    b = create_backbone("efficientnet_lite0")
    palace = top(b, preprocess(CHINA, b.preprocessing))
    assert palace[0][0] == "palace" and palace[0][1] > 0.2, palace
    hopper = top(b, preprocess(GRACE_HOPPER, b.preprocessing))
    assert hopper[0][0] in {"military uniform", "academic gown", "mortarboard", "suit", "bow tie", "Windsor tie"}, (
        hopper
    )
    assert "military uniform" in [name for name, _ in hopper], hopper


@pytest.mark.parametrize("variant,size", [("efficientnet_lite1", 240), ("efficientnet_lite2", 260)])
def test_efficientnet_lite1_lite2_classify(variant, size):
    b = create_backbone(variant)
    assert b.preprocessing.input_size == size
    assert top(b, preprocess(CHINA, b.preprocessing))[0][0] == "palace"


def test_load_by_position_refuses_mismatches():
    import timm

    from headstart.backbones.efficientnet_lite import load_by_position, weights_path

    state = torch.load(weights_path("efficientnet_lite0"), map_location="cpu", weights_only=True)
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    short = dict(list(state.items())[:-2])
    with pytest.raises(UserError) as e:
        load_by_position(model, short, "lite0")
    assert_one_line_user_error(e, "245 tensors", "247")
    bad = dict(state)
    bad["_conv_stem.weight"] = torch.zeros(16, 3, 3, 3)
    with pytest.raises(UserError) as e:
        load_by_position(model, bad, "lite0")
    assert_one_line_user_error(e, "_conv_stem.weight", "conv_stem.weight")


# ---- timm ---------------------------------------------------------------------------------------------

TIMM_TINY = {
    "resnet": ("resnet18", dict(layers=[1, 1, 1, 1]), 64, ["stem", "stage1", "stage2", "stage3", "stage4"]),
    "efficientnet": ("tinynet_e", {}, 64, ["stem", "stage1", "stage2", "stage3", "stage4", "conv_head"]),
    "mobilenetv3": ("mobilenetv3_small_050", {}, 64, ["stem", "stage1", "stage2", "stage3", "stage4", "conv_head"]),
    "convnext": (
        "convnext_atto",
        dict(depths=(1, 1, 1, 1), dims=(8, 16, 24, 32)),
        64,
        ["stem", "stage1", "stage2", "stage3", "stage4"],
    ),
    "vit_token": (
        "vit_tiny_patch16_224",
        dict(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2),
        32,
        ["embed", "block1", "block2", "final"],
    ),
    "vit_avg_reg": (
        "vit_tiny_patch16_224",
        dict(
            img_size=32, patch_size=8, embed_dim=32, depth=3, num_heads=2, global_pool="avg", reg_tokens=2, fc_norm=True
        ),
        32,
        ["embed", "block1", "block2", "block3", "final"],
    ),
}


@pytest.mark.parametrize("family", list(TIMM_TINY))
def test_timm_local_dir(family, tmp_path, offline_hub):
    import timm
    from timm.models import save_for_hf

    arch, kwargs, size, groups = TIMM_TINY[family]
    labels = ["ant", "bee", "cat", "dog", "eel"]
    ref = timm.create_model(arch, pretrained=False, num_classes=5, **kwargs).eval()
    folder = tmp_path / "model"
    save_for_hf(ref, folder, model_config={"label_names": labels}, safe_serialization=True)
    assert (folder / "model.safetensors").is_file()

    name = f"timm:local-dir:{folder}"
    b = create_backbone(name)
    assert b.body.group_names == groups
    assert b.source_classes == labels and b.source_head.out_features == 5
    assert b.preprocessing.input_size == ref.pretrained_cfg["input_size"][-1] or b.preprocessing.input_size == size
    assert_same_weights(b, ref.state_dict())
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        assert_chain(b, x, ref.forward_head(ref.forward_features(x), pre_logits=True), ref(x))
    assert_partition(b, ref, ref.get_classifier())

    shutil.rmtree(folder)  # the rebuild must not need the folder (nor the network)
    assert_rebuilds_offline(b, name, x)


def test_timm_part_follows_dtype_and_copies(tmp_path):
    import timm
    from timm.models import save_for_hf

    arch, kwargs, size, _ = TIMM_TINY["vit_avg_reg"]
    ref = timm.create_model(arch, pretrained=False, num_classes=5, **kwargs).eval()
    save_for_hf(ref, tmp_path, safe_serialization=True)
    b = create_backbone(f"timm:local-dir:{tmp_path}")
    x = torch.randn(2, 3, size, size)
    body = copy.deepcopy(b.body).double().eval()
    with torch.no_grad():
        assert_close_scaled(body(x.double()).float(), b.body.eval()(x))
        for p in body.parameters():
            p.add_(1.0)  # the copy is independent of the original
        assert not torch.allclose(body(x.double()).float(), b.body(x))
    # load_state_dict(assign=True) replaces the Parts' own parameters (cls/reg tokens, pos_embed): the model
    # code that the Part runs must see the new ones, exactly as with an in-place load
    state = {k: v * 1.5 for k, v in b.body.state_dict().items()}
    assigned, copied = (create_backbone(f"timm:local-dir:{tmp_path}").body.eval() for _ in range(2))
    assigned.load_state_dict(state, assign=True)
    copied.load_state_dict(state)
    with torch.no_grad():
        assert torch.equal(assigned(x), copied(x))
        assert not torch.allclose(copied(x), b.body.eval()(x))
    owner = b.body.groups["final"]._owner  # the timm model whose forward_head the last group runs
    assert not owner.training
    b.body.train()
    assert all(m.training for m in b.body.modules()) and owner.training
    b.body.eval()
    assert not any(m.training for m in b.body.modules()) and not owner.training


def test_timm_metadata_preprocessing():
    import timm

    from headstart.backbones.timm_hub import preprocessing_of

    p = preprocessing_of(timm.create_model("resnet18", pretrained=False))  # resnet18.a1_in1k: crop 0.95 bicubic
    assert (p.input_size, p.resize_size, p.interpolation) == (224, 235, "bicubic")
    assert p.mean == pytest.approx((0.485, 0.456, 0.406))


@pytest.mark.parametrize("name", ["hf-hub:timm/resnet18.a1_in1k", "resnet18"])
def test_timm_hub_offline_is_a_user_error(name, offline_hub):
    with pytest.raises(UserError) as e:
        create_backbone(f"timm:{name}")
    assert_one_line_user_error(e, "could not download", "local-dir")


def test_timm_unknown_family_and_missing_folder(tmp_path, offline_hub):
    import timm

    from headstart.backbones.timm_hub import cut_timm_model

    with pytest.raises(UserError) as e:
        cut_timm_model(timm.create_model("regnetx_002", pretrained=False), "timm:regnetx_002")
    assert_one_line_user_error(e, "cannot yet cut", "RegNet", "supported families")
    # refused from the name, before any download is tried (offline, a download would fail differently)
    for name in ("regnetx_002", "deit_tiny_distilled_patch16_224"):
        with pytest.raises(UserError) as e:
            create_backbone(f"timm:{name}")
        assert_one_line_user_error(e, "cannot yet cut", name)
    with pytest.raises(UserError) as e:
        create_backbone(f"timm:local-dir:{tmp_path / 'nothing'}")
    assert_one_line_user_error(e, "no timm model folder")


# ---- torchvision ----------------------------------------------------------------------------------------


def test_torchvision_loads_weights_from_torch_hub_cache(tmp_path, monkeypatch):
    from torchvision.models import MobileNet_V3_Small_Weights, mobilenet_v3_small

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    weights = MobileNet_V3_Small_Weights.DEFAULT
    ref = mobilenet_v3_small(weights=None).eval()  # random: the test knows they are these weights
    target = tmp_path / "hub" / "checkpoints" / weights.url.rsplit("/", 1)[-1]
    target.parent.mkdir(parents=True)
    torch.save(ref.state_dict(), target)

    def no_network(*args, **kwargs):
        raise urllib.error.URLError("no network in tests")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    b = create_backbone("torchvision:mobilenet_v3_small")
    assert b.body.group_names == ["stem", "stage1", "stage2", "stage3", "stage4", "lastconv"]
    assert b.width == 1024 and b.source_classes[0] == "tench" and len(b.source_classes) == 1000
    p = b.preprocessing
    assert (p.input_size, p.resize_size, p.interpolation) == (224, 256, "bilinear")
    assert p.mean == pytest.approx((0.485, 0.456, 0.406))
    assert_same_weights(b, {k: v for k, v in ref.state_dict().items()})
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        feats = ref.classifier[1](ref.classifier[0](torch.flatten(ref.avgpool(ref.features(x)), 1)))
        assert_chain(b, x, feats, ref(x))
    assert_partition(b, ref, ref.classifier[3])
    assert_rebuilds_offline(b, "torchvision:mobilenet_v3_small", x)

    target.unlink()  # not cached and no network: a one-line UserError
    with pytest.raises(UserError) as e:
        create_backbone("torchvision:mobilenet_v3_small")
    assert_one_line_user_error(e, "could not download", weights.url.rsplit("/", 1)[-1])


def _tv_tiny(family: str) -> nn.Module:
    import torchvision.models as tvm
    from torchvision.models.convnext import CNBlockConfig

    if family == "resnet":
        return tvm.resnet18(weights=None)
    if family == "mobilenet_v2":
        return tvm.mobilenet_v2(weights=None, width_mult=0.35)
    if family == "mobilenet_v3":
        return tvm.mobilenet_v3_small(weights=None, width_mult=0.5)
    if family == "efficientnet":
        return tvm.efficientnet_b0(weights=None)
    if family == "convnext":
        setting = [
            CNBlockConfig(8, 16, 1),
            CNBlockConfig(16, 24, 1),
            CNBlockConfig(24, 32, 1),
            CNBlockConfig(32, None, 1),
        ]
        return tvm.ConvNeXt(setting, num_classes=7)
    if family == "vit":
        return tvm.VisionTransformer(
            image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64, num_classes=7
        )
    if family == "vit_repr":
        return tvm.VisionTransformer(
            image_size=32,
            patch_size=8,
            num_layers=2,
            num_heads=2,
            hidden_dim=32,
            mlp_dim=64,
            num_classes=7,
            representation_size=16,
        )
    raise AssertionError(family)


@pytest.mark.parametrize(
    "family,size,groups",
    [
        ("resnet", 64, ["stem", "stage1", "stage2", "stage3", "stage4"]),
        ("mobilenet_v2", 64, ["stem", "stage1", "stage2", "stage3", "stage4"]),
        ("mobilenet_v3", 64, ["stem", "stage1", "stage2", "stage3", "stage4", "lastconv"]),
        ("efficientnet", 64, ["stem", "stage1", "stage2", "stage3", "stage4", "lastconv"]),
        ("convnext", 64, ["stem", "stage1", "stage2", "stage3", "stage4"]),
        ("vit", 32, ["embed", "block1", "block2", "final"]),
        ("vit_repr", 32, ["embed", "block1", "block2", "final"]),
    ],
)
def test_torchvision_families_chain(family, size, groups):
    from headstart.backbones.base import Backbone, GroupedBody, Preprocessing
    from headstart.backbones.torchvision_hub import cut_torchvision_model

    net = _tv_tiny(family).eval()
    with torch.no_grad():  # BatchNorm statistics that make eval mode matter; no all-zero (ViT head) weights
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
        for p in net.parameters():
            if p.dim() > 1 and not p.any():
                p.normal_(0, 0.05)
    parts, head, width = cut_torchvision_model(net, family)
    b = Backbone(
        family,
        GroupedBody(parts),
        width,
        Preprocessing((0.5,) * 3, (0.5,) * 3, size, size),
        False,
        "random",
        source_head=head,
    )
    assert b.body.group_names == groups
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        logits = net(x)
    assert_chain(b, x, None, logits)
    assert_partition(b, net, head)


def test_torchvision_unknown_family():
    from torchvision.models import squeezenet1_0

    from headstart.backbones.torchvision_hub import cut_torchvision_model

    with pytest.raises(UserError) as e:  # refused from the name, before any download
        create_backbone("torchvision:squeezenet1_0")
    assert_one_line_user_error(e, "cannot yet cut", "SqueezeNet", "supported families")
    with pytest.raises(UserError) as e:
        cut_torchvision_model(squeezenet1_0(weights=None), "squeezenet1_0")
    assert_one_line_user_error(e, "cannot yet cut", "SqueezeNet")


# ---- Hugging Face transformers -------------------------------------------------------------------------


def _save_hf(folder, model, processor):
    model.save_pretrained(folder)
    processor.save_pretrained(folder)


def test_hf_vit_classifier_local_folder(tmp_path, offline_hub):
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    labels = {0: "cat", 1: "dog", 2: "fox"}
    config = ViTConfig(
        image_size=32,
        patch_size=8,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        num_labels=3,
        id2label=labels,
        label2id={v: k for k, v in labels.items()},
    )
    ref = ViTForImageClassification(config).eval()
    folder = tmp_path / "vit"
    _save_hf(
        folder,
        ref,
        ViTImageProcessor(
            size={"height": 32, "width": 32}, resample=3, image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5]
        ),
    )
    name = f"hf:{folder}"
    b = create_backbone(name)
    assert b.body.group_names == ["embed", "block1", "block2", "final"]
    assert b.source_classes == ["cat", "dog", "fox"] and b.width == 32
    p = b.preprocessing
    assert (p.input_size, p.resize_size, p.interpolation, p.mean) == (32, 32, "bicubic", (0.5, 0.5, 0.5))
    assert_same_weights(b, ref.state_dict())
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        out = ref(pixel_values=x, output_hidden_states=True)
        feats = ref.vit.layernorm(out.hidden_states[-1])[:, 0]
        assert_chain(b, x, feats, out.logits)
    assert_partition(b, ref, ref.classifier)
    x48 = torch.randn(2, 3, 48, 48)  # another input size: position embeddings interpolated, as transformers does
    with torch.no_grad():
        assert_chain(b, x48, None, ref(pixel_values=x48, interpolate_pos_encoding=True).logits)
    shutil.rmtree(folder)
    assert_rebuilds_offline(b, name, x)


@pytest.mark.parametrize("with_classifier", [False, True])
def test_hf_dinov2_local_folder(tmp_path, offline_hub, with_classifier):
    from transformers import BitImageProcessor, Dinov2Config, Dinov2ForImageClassification, Dinov2Model

    config = Dinov2Config(
        image_size=32,
        patch_size=8,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        mlp_ratio=2,
        num_labels=4,
    )
    ref = (Dinov2ForImageClassification(config) if with_classifier else Dinov2Model(config)).eval()
    processor = BitImageProcessor(
        size={"shortest_edge": 40},
        crop_size={"height": 32, "width": 32},
        do_center_crop=True,
        resample=3,
        image_mean=[0.485, 0.456, 0.406],
        image_std=[0.229, 0.224, 0.225],
    )
    _save_hf(tmp_path, ref, processor)
    b = create_backbone(f"hf:{tmp_path}")
    p = b.preprocessing
    assert (p.input_size, p.resize_size, p.interpolation) == (32, 40, "bicubic")
    assert_same_weights(b, ref.state_dict())
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        if with_classifier:
            assert b.width == 64  # [class token, mean patch token], what Dinov2's classifier reads
            assert_chain(b, x, None, ref(pixel_values=x).logits)
            assert_partition(b, ref, ref.classifier)
        else:
            assert b.source_head is None and b.width == 32
            assert_chain(b, x, ref(pixel_values=x).pooler_output)
            assert_partition(b, ref)


def test_hf_hub_offline_is_a_user_error(offline_hub):
    with pytest.raises(UserError) as e:
        create_backbone("hf:google/vit-base-patch16-224")
    assert_one_line_user_error(e, "could not download", "hf:/path/to/folder")


def test_hf_unknown_family(tmp_path):
    from transformers import ConvNextConfig

    ConvNextConfig(num_channels=3, hidden_sizes=[8, 16, 24, 32], depths=[1, 1, 1, 1]).save_pretrained(tmp_path)
    with pytest.raises(UserError) as e:
        create_backbone(f"hf:{tmp_path}")
    assert_one_line_user_error(e, "cannot yet cut", "convnext", "supported model types")


@pytest.mark.parametrize("name", [n for n in HUB_IMAGE_BACKBONES if n.startswith("timm:")])
def test_the_curated_timm_backbones_are_cut_into_layer_groups(name):
    """The search's curated hub image backbones (probed when the Hub answers): their architectures, built
    without weights (no download), are cut into groups that chain to a pooled feature of the stated width."""
    assert get_spec(name).offline is False
    b = create_backbone(name, pretrained=False)
    assert b.body.group_names[0] == "stem" and len(b.body.group_names) >= 5
    assert_group_names(b)
    with torch.no_grad():
        assert b.body.eval()(torch.randn(2, 3, 64, 64)).shape == (2, b.width)


def test_the_curated_hub_backbones_are_hub_names_and_a_text_model_declares_its_pooling(offline_hub):
    from headstart.backbones.text_encoders import declared_pooling, minilm_folder

    assert all(get_spec(n).offline is False for n in HUB_TEXT_BACKBONES + HUB_IMAGE_BACKBONES)
    assert declared_pooling(minilm_folder()) == "mean"  # sentence-transformers' 1_Pooling/config.json
    # a hub id neither in the cache nor reachable declares nothing, at once (no download retried)
    assert (
        why_unreachable() == "HF_HUB_OFFLINE is set"
        and declared_pooling(HUB_TEXT_BACKBONES[0].removeprefix("hf:")) is None
    )
