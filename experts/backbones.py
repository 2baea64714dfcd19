"""Probe networks for Task2Vec: a registry of backbones and one uniform ``Probe`` structure.

A ``Probe`` exposes what the embedding needs and nothing else:

- ``features(x)``: penultimate features, (N, 3, H, W) -> (N, D), run as a list of *stages* so that
  a cached intermediate activation can be fed back in (``skip_layers``);
- ``classifier``: the linear head (replaced per task by Task2Vec);
- ``fisher_modules()``: the modules with weights that the embedding covers, in network order
  (convolutions, batch-norm layers and, for VGG, the hidden fully-connected layers; never the
  classifier). ``embedding_dim`` is the sum of their output channels.

Weights come from a local torchvision state dict the user names, or from torchvision's ImageNet
weights only when they are already in the local torch hub cache (this module never downloads,
at import time or later); otherwise the probe is randomly initialised (seeded) and says so in
its ``ProbeInfo``, which later stages copy into every output row.

Choices that differ from the reference code (awslabs/aws-cv-task2vec ``models.py``):

- ``resnet13`` is a torchvision ResNet with ``BasicBlock`` and layers [1, 1, 1, 1]: 9 3x3/7x7
  convolutions + 3 1x1 projection convolutions + the classifier = 13 weighted layers. The paper
  names a ResNet-13 without defining it; torchvision has no ImageNet weights for it.
- VGG-13-BN's hidden fully-connected layers (fc6, fc7) belong to the feature extractor and are
  covered by the embedding (the reference covers "every module with a weight except the
  classifier"; it has no VGG probe). Dropout is always in eval mode.
- ``tiny_resnet`` (widths 8-16-32-64, a 3x3 stem without max-pool, ~80k parameters) exists for
  tests on 32x32 inputs; it is not a paper probe.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable

import torch
import torchvision.models as tvm
from torch import nn
from torchvision.models.resnet import BasicBlock

from experts.probe_weights import imagenet_cache_path, load_body_weights, load_state_dict_file, resolve_weights

__all__ = [
    "BackboneSpec", "Probe", "ProbeInfo", "create_backbone", "get_backbone", "list_backbones",
    "register_backbone", "load_state_dict_file", "imagenet_cache_path",
]


@dataclass(frozen=True)
class ProbeInfo:
    """Where a probe came from; every embedding and output row carries it."""

    name: str
    pretrained: bool
    weights_source: str  # "file:<path>", "torchvision-cache:<enum> <path>" or "random:seed=<n>"
    feature_dim: int  # D of the penultimate features
    embedding_dim: int  # Monte-Carlo embedding length (conv + batch-norm filters)
    variational_dim: int  # variational embedding length (conv filters only)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class BackboneSpec:
    """How to build one architecture (random init) and cut it into stages."""

    name: str
    build: Callable[[], nn.Module]  # a torchvision-style network, random init
    classifier: str  # attribute path of its classifier, e.g. "fc" or "classifier.6"
    stages: Callable[[nn.Module], list[nn.Module]]  # network -> stages; the last one ends in (N, D)
    feature_dim: int
    imagenet_weights: str | None = None  # torchvision enum, e.g. "ResNet34_Weights.IMAGENET1K_V1"


_BACKBONES: dict[str, Callable[[], BackboneSpec]] = {}


def register_backbone(fn: Callable[[], BackboneSpec]) -> Callable[[], BackboneSpec]:
    """Register a backbone under its function's name (the function returns its ``BackboneSpec``)."""
    if fn.__name__ in _BACKBONES:
        raise ValueError(f"backbone {fn.__name__!r} registered twice")
    _BACKBONES[fn.__name__] = fn
    return fn


def list_backbones() -> list[str]:
    return sorted(_BACKBONES)


def get_backbone(name: str) -> BackboneSpec:
    try:
        return _BACKBONES[name]()
    except KeyError:
        raise KeyError(f"unknown probe {name!r}; known: {', '.join(list_backbones())}") from None


class Probe(nn.Module):
    """A backbone cut into stages, plus a separate linear classifier.

    ``body`` is the torchvision network with its classifier slot replaced by ``nn.Identity`` (so
    its state-dict keys stay torchvision's). Never mutate a shared probe: Task2Vec deep-copies it.
    """

    def __init__(self, body: nn.Module, spec: BackboneSpec, classifier: nn.Linear, info: ProbeInfo) -> None:
        super().__init__()
        self.body = body
        self.classifier = classifier
        self.spec = spec
        self.info = info

    @property
    def stages(self) -> list[nn.Module]:
        return self.spec.stages(self.body)

    def features(self, x: torch.Tensor, start: int = 0) -> torch.Tensor:
        """Penultimate features (N, D), starting from stage ``start`` (x is that stage's input)."""
        for stage in self.stages[start:]:
            x = stage(x)
        return x

    def forward(self, x: torch.Tensor, start: int = 0) -> torch.Tensor:
        return self.classifier(self.features(x, start))

    def fisher_modules(self) -> list[tuple[str, nn.Module]]:
        """Modules the Monte-Carlo embedding covers, in network (definition) order."""
        kinds = (nn.Conv2d, nn.BatchNorm2d, nn.Linear)
        return [(n, m) for n, m in self.body.named_modules() if isinstance(m, kinds) and m.weight is not None]

    def variational_modules(self) -> list[tuple[str, nn.Module]]:
        """Modules the variational embedding covers (weights with >= 2 dims: conv and hidden linear)."""
        return [(n, m) for n, m in self.fisher_modules() if m.weight.dim() >= 2]

    def stage_of(self, module: nn.Module) -> int:
        """Index of the stage that contains ``module``."""
        for i, stage in enumerate(self.stages):
            if any(m is module for m in stage.modules()):
                return i
        raise ValueError("module is not part of this probe")

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the classifier by a zero-initialised ``Linear(D, num_classes)`` (see docs/task2vec.md)."""
        ref = self.classifier.weight
        self.classifier = nn.Linear(self.info.feature_dim, num_classes).to(device=ref.device, dtype=ref.dtype)
        nn.init.zeros_(self.classifier.weight)
        nn.init.zeros_(self.classifier.bias)


def create_backbone(
    name: str = "resnet34",
    *,
    weights: str | Path | None = None,
    num_classes: int = 1000,
    seed: int = 0,
) -> Probe:
    """Build a probe.

    Args:
        name: one of ``list_backbones()``.
        weights: a path to a torchvision state dict (loaded strictly, except the classifier);
            ``"imagenet"``: torchvision's ImageNet weights, which must already be in the torch hub
            cache; ``"random"``: random init; ``None``: the cached ImageNet weights if present,
            else random init (``info.pretrained`` says which).
        num_classes: outputs of the (freshly initialised) classifier.
        seed: seeds the random initialisation (the global RNG is left untouched).

    Raises:
        KeyError: unknown name. FileNotFoundError: missing weights file or uncached "imagenet".
        TaskSweepInputError: a weights file that is not a matching state dict.
    """
    spec = get_backbone(name)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        body = spec.build()
        classifier = nn.Linear(spec.feature_dim, num_classes)
    _set_attr(body, spec.classifier, nn.Identity())
    source = f"random:seed={seed}"
    state_path = resolve_weights(spec, weights)
    if state_path is not None:
        load_body_weights(body, spec, load_state_dict_file(state_path), source=str(state_path))
        from_cache = weights is None or weights == "imagenet"
        source = f"torchvision-cache:{spec.imagenet_weights} {state_path}" if from_cache else f"file:{state_path}"
    for m in body.modules():
        if isinstance(m, nn.ReLU):
            m.inplace = False  # in-place ReLUs would overwrite tensors the per-sample Fisher reads back
    info = ProbeInfo(name, state_path is not None, source, spec.feature_dim, 0, 0)
    probe = Probe(body, spec, classifier, info)
    dims = [m.weight.shape[0] for _, m in probe.fisher_modules()]
    vdims = [m.weight.shape[0] for _, m in probe.variational_modules()]
    probe.info = replace(info, embedding_dim=sum(dims), variational_dim=sum(vdims))
    return probe


def _set_attr(root: nn.Module, path: str, value: nn.Module) -> None:
    *parents, last = path.split(".")
    for p in parents:
        root = getattr(root, p)
    setattr(root, last, value)


# ---- architectures -------------------------------------------------------------------------------

def _resnet_stages(net: nn.Module) -> list[nn.Module]:
    stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
    return [stem, net.layer1, net.layer2, net.layer3, net.layer4, nn.Sequential(net.avgpool, nn.Flatten(1))]


def _densenet_stages(net: nn.Module) -> list[nn.Module]:
    f = net.features
    head = nn.Sequential(nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(1))
    return [f[0:4], f[4:6], f[6:8], f[8:10], f[10:12], head]


def _vgg_stages(net: nn.Module) -> list[nn.Module]:
    cuts = [i + 1 for i, m in enumerate(net.features) if isinstance(m, nn.MaxPool2d)]
    blocks = [net.features[a:b] for a, b in zip([0] + cuts[:-1], cuts)]
    return blocks + [nn.Sequential(net.avgpool, nn.Flatten(1), net.classifier[0:6])]


class _TinyResNet(nn.Module):
    """ResNet with BasicBlocks [1, 1, 1, 1], widths 8-16-32-64, 3x3 stem, no max-pool (tests only)."""

    def __init__(self, widths: tuple[int, ...] = (8, 16, 32, 64)) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, widths[0], 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU()
        self.maxpool = nn.Identity()
        blocks, cin = [], widths[0]
        for i, w in enumerate(widths):
            stride = 1 if i == 0 else 2
            down = None if stride == 1 and cin == w else nn.Sequential(
                nn.Conv2d(cin, w, 1, stride=stride, bias=False), nn.BatchNorm2d(w))
            blocks.append(nn.Sequential(BasicBlock(cin, w, stride=stride, downsample=down)))
            cin = w
        self.layer1, self.layer2, self.layer3, self.layer4 = blocks
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, 1000)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for stage in _resnet_stages(self):
            x = stage(x)
        return self.fc(x)


def _resnet(name: str, build: Callable[[], nn.Module], dim: int, weights: str | None) -> BackboneSpec:
    return BackboneSpec(name, build, "fc", _resnet_stages, dim, weights)


@register_backbone
def resnet34() -> BackboneSpec:
    return _resnet("resnet34", tvm.resnet34, 512, "ResNet34_Weights.IMAGENET1K_V1")


@register_backbone
def resnet18() -> BackboneSpec:
    return _resnet("resnet18", tvm.resnet18, 512, "ResNet18_Weights.IMAGENET1K_V1")


@register_backbone
def resnet13() -> BackboneSpec:
    return _resnet("resnet13", _resnet13_net, 512, None)


def _resnet13_net() -> nn.Module:
    return tvm.ResNet(BasicBlock, [1, 1, 1, 1])


@register_backbone
def tiny_resnet() -> BackboneSpec:
    return _resnet("tiny_resnet", _TinyResNet, 64, None)


@register_backbone
def densenet121() -> BackboneSpec:
    return BackboneSpec("densenet121", tvm.densenet121, "classifier", _densenet_stages, 1024,
                        "DenseNet121_Weights.IMAGENET1K_V1")


@register_backbone
def vgg13_bn() -> BackboneSpec:
    return BackboneSpec("vgg13_bn", tvm.vgg13_bn, "classifier.6", _vgg_stages, 4096, "VGG13_BN_Weights.IMAGENET1K_V1")
