"""What every encoder shares: the error for one that cannot be had, and how encoders run on a device.

torch is imported where it is used: importing it takes 2 s, and a page or command that only
recommends catalogue songs never needs it.
"""

from __future__ import annotations

import hashlib
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

DEVICE_SETTINGS = ("auto", "cpu", "cuda")
PRECISIONS = ("float16", "bfloat16")  # the autocast dtypes, as torch names them


class EncoderUnavailable(RuntimeError):
    """An encoder was asked for but cannot be had; the message says how to provide it."""


def fingerprint(model: torch.nn.Module, description: str) -> str:
    """Identifies a model by what it computes: its description and every weight, not its path.

    A collection records it, so that a model changed under the same name (a local folder or a
    weights file overwritten, say) can never mix its vectors with the old ones.
    """
    digest = hashlib.sha256(description.encode())
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode() + tensor.detach().float().cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class Runtime:
    """Where encoders run, at what precision, and how many inputs go through the model at once.

    `precision` names the autocast dtype ("float16"), or is None for plain float32. Outputs are float32 either way.
    `text_batch` counts lyrics windows of up to 256 tokens (models with longer windows take fewer).
    `decodes_jpeg`: JPEG covers are decoded on the device rather than by Pillow on the CPU.
    """

    device: str
    precision: str | None
    text_batch: int
    image_batch: int
    decodes_jpeg: bool = False

    def __post_init__(self) -> None:
        if self.precision not in (None, *PRECISIONS):
            raise ValueError(f"precision {self.precision!r} is not one of {', '.join(PRECISIONS)} (or None for float32)")

    @property
    def torch_device(self) -> torch.device:
        """The device as torch names it."""
        import torch

        return torch.device(self.device)

    def autocast(self) -> AbstractContextManager[object]:
        """The context that runs a model at this runtime's precision (a no-op for float32)."""
        import torch

        dtype = getattr(torch, self.precision) if self.precision else None
        return torch.autocast(self.device, dtype=dtype, enabled=dtype is not None)


RUNTIMES = {
    # float32 on the CPU: bf16 autocast is 25-40x slower on AVX2-only cores. Batches of 16 lyrics
    # windows and 8 covers were the fastest measured there; larger ones only add padding and cache misses.
    "cpu": Runtime("cpu", None, text_batch=16, image_batch=8),
    # fp16 autocast about doubles throughput on an H100/H200 (MiniLM 15k -> 31k windows/s, CNNs
    # 16k -> 24k covers/s), but only with batches of a few hundred: at 64 it gained nothing. Lyrics
    # windows ran 2.7x faster in batches of 1024 than of 256 on an H200 (10,100 against 3,700/s).
    "cuda": Runtime("cuda", "float16", text_batch=1024, image_batch=256, decodes_jpeg=True),
}


def resolve_runtime(device: str = "auto") -> Runtime:
    """The runtime for an EMBED_DEVICE value: `auto` is cuda when torch sees a GPU, else cpu.

    Raises EncoderUnavailable for `cuda` on a machine where torch sees no GPU.
    """
    import torch

    if device not in DEVICE_SETTINGS:
        raise EncoderUnavailable(f"EMBED_DEVICE={device!r} is not one of {', '.join(DEVICE_SETTINGS)}")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    elif device == "cuda" and not torch.cuda.is_available():
        raise EncoderUnavailable(
            "EMBED_DEVICE=cuda, but torch sees no CUDA GPU "
            f"(torch {torch.__version__}, built for CUDA {torch.version.cuda or 'none'}). "
            "Check the driver with nvidia-smi, or set EMBED_DEVICE=auto or cpu."
        )
    return RUNTIMES[device]
