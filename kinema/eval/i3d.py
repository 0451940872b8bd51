"""Inception-3D (Carreira & Zisserman 2017, "Quo Vadis, Action Recognition?"): the
Kinetics-400 action classifier whose logits define FVD (Unterthiner et al. 2018).

The layout is Inception-v1 with every 2D kernel inflated to 3D, TensorFlow "SAME" padding
(computed from each input's size) and BatchNorm with eps 1e-3, as in DeepMind's checkpoint.
Module names follow the common PyTorch port of that checkpoint (``Conv3d_1a_7x7`` ...
``Mixed_5c``, ``logits``; each unit is ``conv3d`` + ``bn``; Inception branches ``b0``,
``b1a``/``b1b``, ``b2a``/``b2b``, ``b3b``), so its state dicts load strictly.

Weights are never downloaded: :func:`load_detector` reads a local file the user provides.
At ``width=1`` the network has 12,697,264 parameters, counted on the meta device: 12,287,264
up to ``Mixed_5c`` (14,560 of them BatchNorm scales and shifts) and 410,000 in the 1x1x1
logits layer (1024 x 400 + 400); running statistics not counted. ``width < 1`` keeps the
architecture with fewer channels, for tests.
"""

from __future__ import annotations

import logging
import os
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from kinema.errors import KinemaError

log = logging.getLogger(__name__)

Triple = tuple[int, int, int]

# Inception blocks: output channels of branch 0 (1x1x1), branch 1 (1x1x1 -> 3x3x3),
# branch 2 (1x1x1 -> 3x3x3) and branch 3 (3x3x3 max-pool -> 1x1x1); max-pools in between.
BLOCKS: tuple[tuple[str, tuple[int, ...] | tuple[Triple, Triple]], ...] = (
    ("Mixed_3b", (64, 96, 128, 16, 32, 32)),
    ("Mixed_3c", (128, 128, 192, 32, 96, 64)),
    ("MaxPool3d_4a_3x3", ((3, 3, 3), (2, 2, 2))),
    ("Mixed_4b", (192, 96, 208, 16, 48, 64)),
    ("Mixed_4c", (160, 112, 224, 24, 64, 64)),
    ("Mixed_4d", (128, 128, 256, 24, 64, 64)),
    ("Mixed_4e", (112, 144, 288, 32, 64, 64)),
    ("Mixed_4f", (256, 160, 320, 32, 128, 128)),
    ("MaxPool3d_5a_2x2", ((2, 2, 2), (2, 2, 2))),
    ("Mixed_5b", (256, 160, 320, 32, 128, 128)),
    ("Mixed_5c", (384, 192, 384, 48, 128, 128)),
)
LOGITS_POOL: Triple = (2, 7, 7)  # average pool before the logits (stride 1, no padding)
MIN_FRAMES = 9  # the logits pool needs 2 time steps after three stride-2 stages
SIZE = 224  # the input size the network was trained at (7 x 7 before the logits pool)


@dataclass
class I3DConfig:
    """num_classes: logits (400 for Kinetics-400). width: channel multiplier (1 = the real
    network; smaller only for tests). in_channels: 3 (RGB)."""

    num_classes: int = 400
    width: float = 1.0
    in_channels: int = 3

    def channels(self, c: int) -> int:
        return max(1, round(c * self.width))


def same_pad(x: torch.Tensor, kernel: Triple, stride: Triple) -> torch.Tensor:
    """Zero-pad ``(B, C, T, H, W)`` as TensorFlow's "SAME" (the extra pixel at the end)."""
    pads: list[int] = []
    for size, k, s in zip(reversed(x.shape[2:]), reversed(kernel), reversed(stride), strict=True):
        total = max(k - (s if size % s == 0 else size % s), 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads)


class Unit3D(nn.Module):
    """Conv3d (no bias) + BatchNorm (eps 1e-3) + ReLU with SAME padding; ``norm=False``:
    a plain biased conv (the logits layer)."""

    def __init__(
        self, cin: int, cout: int, kernel: Triple, stride: Triple = (1, 1, 1), norm: bool = True
    ):
        super().__init__()
        self.kernel, self.stride = kernel, stride
        self.conv3d = nn.Conv3d(cin, cout, kernel, stride, bias=not norm)
        self.bn = nn.BatchNorm3d(cout, eps=1e-3, momentum=0.01) if norm else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv3d(same_pad(x, self.kernel, self.stride))
        return x if self.bn is None else F.relu(self.bn(x))


class MaxPool3d(nn.Module):
    """Max-pool with SAME padding. Zeros pad instead of -inf: every input follows a ReLU,
    so a zero never wins over a real value and the result is TensorFlow's."""

    def __init__(self, kernel: Triple, stride: Triple):
        super().__init__()
        self.kernel, self.stride = kernel, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool3d(same_pad(x, self.kernel, self.stride), self.kernel, self.stride)


class Inception(nn.Module):
    """Four parallel branches concatenated on channels."""

    def __init__(self, cin: int, c: Sequence[int]):
        super().__init__()
        one, three = (1, 1, 1), (3, 3, 3)
        self.b0 = Unit3D(cin, c[0], one)
        self.b1a, self.b1b = Unit3D(cin, c[1], one), Unit3D(c[1], c[2], three)
        self.b2a, self.b2b = Unit3D(cin, c[3], one), Unit3D(c[3], c[4], three)
        self.b3a, self.b3b = MaxPool3d(three, one), Unit3D(cin, c[5], one)
        self.out_channels = c[0] + c[2] + c[4] + c[5]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat(
            [
                self.b0(x),
                self.b1b(self.b1a(x)),
                self.b2b(self.b2a(x)),
                self.b3b(self.b3a(x)),
            ],
            dim=1,
        )


class I3D(nn.Module):
    """Inception-3D. ``forward``: video ``(B, 3, T, H, W)`` in [-1, 1] (trained at
    ``T = 16``-64, ``H = W = 224``; ``T >= 9``) -> logits ``(B, num_classes)`` averaged over
    the remaining time (and space, for inputs larger than 224)."""

    def __init__(self, config: I3DConfig | None = None):
        super().__init__()
        self.config = cfg = config or I3DConfig()
        ch = cfg.channels
        layers: dict[str, nn.Module] = {
            "Conv3d_1a_7x7": Unit3D(cfg.in_channels, ch(64), (7, 7, 7), (2, 2, 2)),
            "MaxPool3d_2a_3x3": MaxPool3d((1, 3, 3), (1, 2, 2)),
            "Conv3d_2b_1x1": Unit3D(ch(64), ch(64), (1, 1, 1)),
            "Conv3d_2c_3x3": Unit3D(ch(64), ch(192), (3, 3, 3)),
            "MaxPool3d_3a_3x3": MaxPool3d((1, 3, 3), (1, 2, 2)),
        }
        cin = ch(192)
        for name, spec in BLOCKS:
            if name.startswith("MaxPool"):
                layers[name] = MaxPool3d(*spec)
            else:
                layers[name] = block = Inception(cin, [ch(c) for c in spec])
                cin = block.out_channels
        # Top-level names, in order, so state dict keys match the common port's.
        for name, layer in layers.items():
            self.add_module(name, layer)
        self._trunk = tuple(layers)
        self.feature_dim = cin
        self.logits = Unit3D(cin, cfg.num_classes, (1, 1, 1), norm=False)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, T, H, W)`` -> ``Mixed_5c`` activations ``(B, 1024 * width, T', H', W')``."""
        if x.ndim != 5 or x.shape[1] != self.config.in_channels or x.shape[2] < MIN_FRAMES:
            raise ValueError(
                f"I3D takes (B, {self.config.in_channels}, T >= {MIN_FRAMES}, H, W) video, "
                f"got {tuple(x.shape)}"
            )
        for name in self._trunk:
            x = getattr(self, name)(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.avg_pool3d(self.features(x), LOGITS_POOL, stride=1)
        return self.logits(h).mean((2, 3, 4))

    @classmethod
    def from_state_dict(cls, state: Mapping[str, torch.Tensor], where: str = "state dict") -> I3D:
        """An I3D with the width, classes and input channels the weights imply, loaded
        strictly (one-line :class:`KinemaError` naming ``where`` if it is not an I3D)."""
        first, last = state.get("Conv3d_1a_7x7.conv3d.weight"), state.get("logits.conv3d.weight")
        if first is None or last is None or first.ndim != 5 or last.ndim != 5:
            raise KinemaError(
                f"{where}: not an I3D state dict (no Conv3d_1a_7x7.conv3d.weight / "
                "logits.conv3d.weight of 5-D convolutions)"
            )
        config = I3DConfig(int(last.shape[0]), first.shape[0] / 64, int(first.shape[1]))
        with torch.device("meta"):
            net = cls(config)
        try:
            net.load_state_dict(state, strict=True, assign=True)
        except RuntimeError as e:
            missing = set(net.state_dict()) - set(state)
            extra = set(state) - set(net.state_dict())
            detail = (
                f"{len(missing)} missing keys (e.g. {min(missing)})"
                if missing
                else f"{len(extra)} unexpected keys (e.g. {min(extra)})"
                if extra
                else str(e).strip().splitlines()[-1].strip()
            )
            raise KinemaError(f"{where}: not an I3D state dict: {detail}") from None
        return net.float().eval()


class ScriptedDetector(nn.Module):
    """A TorchScript feature extractor, called with the clips :mod:`kinema.eval.fvd`
    prepares. Archives whose ``forward`` takes ``rescale`` / ``resize`` / ``return_features``
    (the StyleGAN-V port of the Kinetics-400 I3D) get them False / False / True: kinema
    has already resized to 224 and scaled to [-1, 1], and wants the 400 logits."""

    def __init__(self, module: torch.jit.ScriptModule):
        super().__init__()
        self.module = module
        names = {a.name for a in module.forward.schema.arguments}
        wanted = {"rescale": False, "resize": False, "return_features": True}
        self.kwargs = {k: v for k, v in wanted.items() if k in names}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x, **self.kwargs)


DETECTOR_SUFFIXES = (".safetensors", ".pt", ".pth")


def _is_torchscript(path: Path) -> bool:
    """TorchScript archives are zips holding ``code/`` and ``constants.pkl``; ``torch.save``
    zips hold only ``data.pkl`` and tensors."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        return any(n.endswith("/constants.pkl") or "/code/" in n for n in z.namelist())


def load_detector(path: str | os.PathLike, device: str | torch.device = "cpu") -> nn.Module:
    """The FVD feature extractor from a local file, in eval mode on ``device``.

    - ``.safetensors``: an :class:`I3D` state dict (preferred: plain tensors, no code);
    - ``.pt`` / ``.pth``: an :class:`I3D` state dict saved with ``torch.save``, read with
      ``torch.load(weights_only=True)`` only (tensors and plain containers, no arbitrary
      objects; that unpickler has had bypasses, fixed in torch 2.6 and 2.10, so prefer
      safetensors), or a TorchScript archive, read with ``torch.jit.load``. TorchScript
      does not unpickle arbitrary Python objects, but the archive is a program that runs
      when called: load only files you trust.

    The features are whatever the module returns, ``(B, D)``; for :class:`I3D` the 400
    Kinetics logits (see :mod:`kinema.eval.fvd`).
    """
    path = Path(path)
    if not path.is_file():
        raise KinemaError(
            f"detector file '{path}' does not exist"
            if not path.exists()
            else f"detector '{path}' is not a file"
        )
    suffix = path.suffix.lower()
    if suffix not in DETECTOR_SUFFIXES:
        raise KinemaError(
            f"unsupported detector file type '{suffix or path.name}' for '{path}'; use "
            ".safetensors (an I3D state dict) or .pt/.pth (a state dict or TorchScript archive)"
        )
    if suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            state = load_file(path)
        except Exception as e:  # safetensors raises several error types for a bad header
            raise KinemaError(f"'{path}' is not a readable safetensors file ({e})") from None
        net: nn.Module = I3D.from_state_dict(state, where=str(path))
    elif _is_torchscript(path):
        try:
            net = ScriptedDetector(torch.jit.load(path, map_location="cpu"))
        except Exception as e:
            raise KinemaError(f"'{path}' is not a loadable TorchScript archive ({e})") from None
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise KinemaError(
                f"'{path}' is not a state dict torch.load(weights_only=True) can read ({first})"
            ) from None
        if not isinstance(state, Mapping) or not all(
            isinstance(v, torch.Tensor) for v in state.values()
        ):
            raise KinemaError(f"'{path}' holds a {type(state).__name__}, not a state dict")
        net = I3D.from_state_dict(state, where=str(path))
    log.debug("FVD detector: %s (%s)", path, type(net).__name__)
    return net.to(device).eval().requires_grad_(False)


__all__ = [
    "I3D",
    "MIN_FRAMES",
    "SIZE",
    "I3DConfig",
    "ScriptedDetector",
    "load_detector",
]
