"""Optional adversarial loss: a 3D PatchGAN discriminator, hinge losses, adaptive weight.

The discriminator needs no causality: it judges whole clips. Its layers use kernel 3 with
padding 1, so single images (T = 1) work too.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class PatchDiscriminator3D(nn.Module):
    """``(B, 3, T, H, W)`` video in [-1, 1] -> ``(B, 1, T', H / 2**layers, W / 2**layers)``
    real/fake logits, one per space-time patch.

    The first conv halves space only; each further layer halves space and time and doubles
    the width (up to 8x ``channels``), with GroupNorm + LeakyReLU(0.2).
    """

    def __init__(self, in_channels: int = 3, channels: int = 64, layers: int = 3) -> None:
        super().__init__()
        mods: list[nn.Module] = [
            nn.Conv3d(in_channels, channels, 3, stride=(1, 2, 2), padding=1),
            nn.LeakyReLU(0.2),
        ]
        c = channels
        for i in range(1, layers):
            c_out = channels * min(2**i, 8)
            mods += [
                nn.Conv3d(c, c_out, 3, stride=2, padding=1, bias=False),
                nn.GroupNorm(min(32, c_out // 4), c_out),
                nn.LeakyReLU(0.2),
            ]
            c = c_out
        mods.append(nn.Conv3d(c, 1, 3, padding=1))
        self.net = nn.Sequential(*mods)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def hinge_d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Discriminator hinge loss ``mean(relu(1 - D(real))) + mean(relu(1 + D(fake)))``."""
    return F.relu(1.0 - real_logits.float()).mean() + F.relu(1.0 + fake_logits.float()).mean()


def hinge_g_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Generator loss ``-mean(D(fake))``."""
    return -fake_logits.float().mean()


def adaptive_gan_weight(
    recon_loss: torch.Tensor,
    gan_loss: torch.Tensor,
    last_layer: torch.Tensor,
    max_weight: float = 1e4,
    eps: float = 1e-4,
) -> torch.Tensor:
    """``||grad_w recon|| / (||grad_w gan|| + eps)`` at the decoder's last layer ``w``
    (VQGAN), clamped to ``[0, max_weight]`` and detached, so the GAN gradient arrives at the
    decoder with the size of the reconstruction gradient."""
    g_rec = torch.autograd.grad(recon_loss, last_layer, retain_graph=True)[0]
    g_gan = torch.autograd.grad(gan_loss, last_layer, retain_graph=True)[0]
    weight = g_rec.float().norm() / (g_gan.float().norm() + eps)
    return weight.clamp(0.0, max_weight).detach()


def frozen_call(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``module(x)`` with its parameters detached: gradients reach ``x`` but not ``module``.

    Lets the generator's GAN loss and the discriminator's loss share one backward pass and
    one optimizer without the generator loss training the discriminator.
    """
    params = {name: p.detach() for name, p in module.named_parameters()}
    return torch.func.functional_call(module, params, (x,))
