"""Turn dataset items into JSON: tensors become lists, non-finite floats become null."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch


def jsonable(obj: Any) -> Any:
    """A JSON-serialisable copy of ``obj`` (dicts, lists, tensors, arrays, numbers)."""
    if isinstance(obj, torch.Tensor | np.ndarray):
        obj = obj.tolist()
    elif isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, dict):
        return {k: jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj
