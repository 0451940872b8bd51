"""torchrun + FSDP2 plumbing; everything here is a no-op in a single process.

Launch with ``torchrun --nproc_per_node=N script.py``: torchrun sets ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK`` and the rendezvous address; :func:`setup` then joins the
process group (NCCL on GPU, gloo on CPU). Without those variables no process group is
created and the model is used as is.
"""

from __future__ import annotations

import atexit
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)
from torch.distributed.tensor import DTensor, distribute_tensor

from kinema.errors import KinemaError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistEnv:
    """Where this process sits: rank, world size and the device it computes on."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def resolve_device(device: str = "auto", local_rank: int = 0) -> torch.device:
    """'auto' -> this rank's GPU if there is one, else CPU; 'cuda' -> this rank's GPU."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        if not torch.cuda.is_available():
            raise KinemaError("device 'cuda' was asked for but no GPU is visible; use 'cpu'")
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    if device == "cpu":
        return torch.device("cpu")
    raise KinemaError(f"unknown device {device!r}; valid: auto, cpu, cuda")


def setup(device: str = "auto") -> DistEnv:
    """Join the torchrun process group if there is one (idempotent) and pick the device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 and not dist.is_initialized():
        return DistEnv(device=resolve_device(device))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device, local_rank)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        if dev.type == "cuda":
            dist.init_process_group("nccl", device_id=dev)
        else:
            dist.init_process_group("gloo")
        atexit.register(_destroy)
    return DistEnv(dist.get_rank(), dist.get_world_size(), local_rank, dev)


def _destroy() -> None:
    """At exit: wait for every rank, then tear down. A rank that tears its gloo pairs down
    while a peer still uses them can abort that peer ("terminate called without an active
    exception", seen once in CI); after a failed rank torchrun stops the others anyway."""
    if not dist.is_initialized():
        return
    try:
        dist.barrier()
    except RuntimeError as e:  # a peer already gone: nothing left to wait for
        logger.debug("barrier at exit: %s", e)
    dist.destroy_process_group()


# ---------------------------------------------------------------------------- sharding


def fsdp_units(model: nn.Module) -> list[nn.Module]:
    """Sub-modules sharded as their own FSDP2 unit (before the root).

    ``model.fsdp_units()`` if the model defines it (e.g. its transformer blocks), else every
    element of every ``nn.ModuleList`` found walking down from the root (not inside another
    unit): the stacked blocks of a transformer or of a CNN stage.
    """
    if hasattr(model, "fsdp_units"):
        return list(model.fsdp_units())
    units: list[nn.Module] = []

    def visit(module: nn.Module) -> None:
        for child in module.children():
            if isinstance(child, nn.ModuleList):
                units.extend(child)
            else:
                visit(child)

    visit(model)
    return units


def shard_model(model: nn.Module, env: DistEnv, mp_policy: Any = None) -> nn.Module:
    """Broadcast rank 0's weights, then ``fully_shard`` each unit and the root, in place.

    Without ``mp_policy`` FSDP2 keeps parameters, all-gathers and gradient reduce-scatters
    in fp32; kinema's bf16 mode is ``torch.autocast`` around ``model.loss`` on top of that
    (works on CPU/gloo and GPU/NCCL). Pass a ``MixedPrecisionPolicy`` to gather in bf16.
    ``model.loss`` is registered as an FSDP forward method so it may use root parameters.
    """
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard, register_fsdp_forward_method

    broadcast_module_(model)
    mesh = init_device_mesh(env.device.type, (env.world_size,))
    kwargs = {"mesh": mesh}
    if mp_policy is not None:
        kwargs["mp_policy"] = mp_policy
    for unit in fsdp_units(model):
        fully_shard(unit, **kwargs)
    fully_shard(model, **kwargs)
    if callable(getattr(model, "loss", None)):
        register_fsdp_forward_method(model, "loss")
    return model


@torch.no_grad()
def broadcast_module_(model: nn.Module, src: int = 0) -> None:
    """Copy rank ``src``'s parameters and buffers to every rank (same initial weights)."""
    if not (dist.is_initialized() and dist.get_world_size() > 1):
        return
    for t in list(model.parameters()) + list(model.buffers()):
        dist.broadcast(t.data, src=src)


# ---------------------------------------------------------------------------- tensors


def is_dtensor(t: torch.Tensor) -> bool:
    return isinstance(t, DTensor)


def local_tensor(t: torch.Tensor) -> torch.Tensor:
    """This rank's shard of a DTensor (a view into it), or the tensor itself."""
    return t.to_local() if isinstance(t, DTensor) else t


def full_tensor(t: torch.Tensor) -> torch.Tensor:
    """The whole tensor (an all-gather for a DTensor; collective), or the tensor itself."""
    return t.full_tensor() if isinstance(t, DTensor) else t


def shard_like(full: torch.Tensor, like: DTensor) -> DTensor:
    """Cut a full tensor (present on every rank) into ``like``'s layout, without communication."""
    return distribute_tensor(
        full.to(like.device), like.device_mesh, like.placements, src_data_rank=None
    )


# ---------------------------------------------------------------------------- collectives


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def any_rank(flag: bool, device: torch.device) -> bool:
    """True on every rank if ``flag`` is true on any rank."""
    if not (dist.is_initialized() and dist.get_world_size() > 1):
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def all_gather_objects(obj: Any) -> list[Any]:
    """``[obj of rank 0, obj of rank 1, ...]`` (in-memory exchange, nothing touches disk)."""
    if not (dist.is_initialized() and dist.get_world_size() > 1):
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def barrier() -> None:
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


# ---------------------------------------------------------------------------- state dicts

_GATHER = StateDictOptions(full_state_dict=True, cpu_offload=True)


def gather_model_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Full (unsharded) CPU state dict on rank 0, ``{}`` on other ranks. Collective."""
    return get_model_state_dict(model, options=_GATHER)


def gather_optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    """Full optimizer state keyed by parameter name on rank 0, ``{}`` elsewhere. Collective."""
    return get_optimizer_state_dict(model, optimizer, options=_GATHER)


def load_model_state(
    model: nn.Module, state: dict[str, torch.Tensor], ignore: Iterable[str] = ()
) -> None:
    """Load a full state dict (held by every rank) into a plain or sharded model."""
    result = set_model_state_dict(
        model, state, options=StateDictOptions(full_state_dict=True, strict=False)
    )
    ignore = set(ignore)
    missing = [k for k in result.missing_keys if k not in ignore]
    if missing or result.unexpected_keys:
        raise KinemaError(
            f"checkpoint weights do not match {_class_name(model)}: missing {missing[:5]}, "
            f"unexpected {list(result.unexpected_keys)[:5]}"
        )


def load_optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer, state: dict) -> None:
    """Load a full name-keyed optimizer state (held by every rank)."""
    set_optimizer_state_dict(
        model, optimizer, state, options=StateDictOptions(full_state_dict=True)
    )


def _class_name(model: nn.Module) -> str:
    """The model's own class name, also after ``fully_shard`` swapped in ``FSDP<Name>``."""
    from torch.distributed.fsdp import FSDPModule

    cls = type(model)
    if isinstance(model, FSDPModule):
        for base in cls.__mro__[1:]:
            if (
                base is not FSDPModule
                and issubclass(base, nn.Module)
                and not issubclass(base, FSDPModule)
            ):
                return base.__name__
    return cls.__name__
