"""Output head + cross-entropy in chunks, never materialising all ``(M, V)`` logits.

A 64K-way head and its fp32 cross-entropy dominate a token-LM training step; computing the
logits of all ``M = B*N`` rows at once costs ``M*V*4`` bytes (plus as much again saved for
backward). Here logits exist for ``chunk`` rows at a time, and the gradients of the hidden
states and of the head weight are computed in the same pass (the softmax is at hand then),
so backward only scales them: the same FLOPs as the plain version, no recomputation,
``O(chunk * V)`` extra memory.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


class _ChunkedLinearCE(torch.autograd.Function):
    """Mean cross-entropy of ``hidden @ weight.T`` against ``targets``; see
    :func:`chunked_cross_entropy`."""

    @staticmethod
    def forward(ctx, hidden, weight, targets, chunk):
        need_h, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        ctx.weight_dtype = weight.dtype
        m = hidden.shape[0]
        fdt = torch.promote_types(hidden.dtype, torch.float32)  # fp32 at least
        loss = hidden.new_zeros((), dtype=fdt)
        correct = hidden.new_zeros((), dtype=fdt)
        grad_h = torch.empty_like(hidden) if need_h else None
        grad_w = torch.zeros_like(weight, dtype=fdt) if need_w else None
        for a in range(0, m, chunk):
            h, y = hidden[a : a + chunk], targets[a : a + chunk]
            logits = F.linear(h, weight).to(fdt)  # (c, V); bf16 matmul under autocast
            lse = logits.logsumexp(-1)
            loss += (lse - logits.gather(1, y[:, None]).squeeze(1)).sum()
            correct += (logits.argmax(-1) == y).sum()
            if need_h or need_w:
                # d(mean CE)/d(logits) = (softmax - onehot) / M
                g = (logits - lse[:, None]).exp_()
                g[torch.arange(len(y), device=g.device), y] -= 1.0
                g /= m
                if need_h:
                    grad_h[a : a + chunk] = (g.to(weight.dtype) @ weight).to(hidden.dtype)
                if need_w:
                    grad_w += g.t() @ h.to(fdt)
        ctx.save_for_backward(grad_h, grad_w)
        accuracy = correct / m
        ctx.mark_non_differentiable(accuracy)
        return loss / m, accuracy

    @staticmethod
    def backward(ctx, grad_loss, grad_acc):
        grad_h, grad_w = ctx.saved_tensors
        gh = None if grad_h is None else grad_h * grad_loss.to(grad_h.dtype)
        gw = None if grad_w is None else (grad_w * grad_loss).to(ctx.weight_dtype)
        return gh, gw, None, None


def chunked_cross_entropy(
    hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, chunk: int = 512
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean cross-entropy and accuracy of the head ``weight`` applied to ``hidden``.

    Args:
        hidden: ``(M, D)`` final hidden states (any float dtype).
        weight: ``(V, D)`` output head (``nn.Linear(D, V, bias=False).weight``).
        targets: ``(M,)`` long in ``[0, V)``.
        chunk: rows whose ``(chunk, V)`` fp32 logits are formed at once.

    Returns:
        ``(loss, accuracy)``: scalar tensors (fp32; fp64 for fp64 inputs). ``loss`` equals
        ``F.cross_entropy(hidden @ weight.T, targets)`` and is differentiable w.r.t.
        ``hidden`` and ``weight``.
    """
    if not torch.is_grad_enabled() or not (hidden.requires_grad or weight.requires_grad):
        with torch.no_grad():
            return _ChunkedLinearCE.forward(_NoGradCtx(), hidden, weight, targets, chunk)
    return _ChunkedLinearCE.apply(hidden, weight, targets, chunk)


class _NoGradCtx:
    """Stand-in for autograd's ctx when no gradient is wanted (evaluation)."""

    needs_input_grad = (False, False, False, False)

    def save_for_backward(self, *tensors) -> None:
        pass

    def mark_non_differentiable(self, *tensors) -> None:
        pass
