"""mmcls / mmpretrain ``.pth`` checkpoints: read without running code from them (the pickles inside are checked
first), their state dict found, and written back in the same layout."""
from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import torch

from poc.formats.cifar import check_opcodes
from poc.shared.errors import InputError, atomic_path, first_line, regular_file

TRUST_FLAG = "--trust_checkpoint"


def read_checkpoint(path, trust: bool = False, log=print) -> dict:
    """The file's top-level object, via ``torch.load(weights_only=True)`` unless ``trust`` is given."""
    path = regular_file(path, "checkpoint file")
    _check_pickles(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        # Only a well-formed file that names a type weights-only loading does not allow may be worth trusting.
        if "Unsupported global" not in str(err) and "weights_only" not in str(err).lower():
            raise InputError(path, f"not a readable PyTorch checkpoint ({first_line(err)})") from None
        if not trust:
            raise InputError(path, f"refused by weights-only loading ({first_line(err)}); if you trust this file, "
                                   f"pass {TRUST_FLAG} to load it fully and keep only the weights") from None
    except (RuntimeError, EOFError, ValueError, OSError, TypeError, KeyError, IndexError, AttributeError,
            MemoryError, RecursionError, LookupError, UnicodeError, OverflowError, zipfile.BadZipFile) as err:
        raise InputError(path, f"not a readable PyTorch checkpoint ({first_line(err)})") from None
    log(f"warning: {path}: {TRUST_FLAG} given: loading with weights_only=False (this can run code from the file)")
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # noqa: BLE001 - any failure of a full load is one line about this file
        raise InputError(path, f"could not be loaded ({type(err).__name__}: {str(err)[:160]})") from None


def _check_pickles(path: Path) -> None:
    """The pickles inside a checkpoint get the same opcode bounds as a data set pickle, before torch reads them."""
    if not zipfile.is_zipfile(path):
        return  # the legacy (non-zip) format: torch.load refuses it with weights_only, nothing unpickled here
    try:
        with zipfile.ZipFile(path) as z:
            for info in z.infolist():
                if info.filename.endswith(".pkl"):
                    if info.file_size > 64 << 20:
                        raise InputError(path, f"{info.filename} is {info.file_size} bytes: not a checkpoint's pickle")
                    check_opcodes(path, z.read(info))
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as err:
        raise InputError(path, f"not a readable PyTorch checkpoint ({first_line(err)})") from None


def extract_state_dict(path, obj) -> dict[str, torch.Tensor]:
    """The weights from the mmcls layout ({'state_dict', 'meta'}), a bare state dict, with or without
    a ``module.`` prefix (DataParallel)."""
    if not isinstance(obj, dict):
        raise InputError(path, f"expected a dict of weights, found {type(obj).__name__}")
    state = obj.get("state_dict", obj)
    if not isinstance(state, dict):
        raise InputError(path, f"'state_dict' is {type(state).__name__}, expected a dict")
    tensors = {k: v for k, v in state.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
    if not tensors:
        raise InputError(path, "holds no weight tensors")
    if all(k.startswith("module.") for k in tensors):
        tensors = {k[len("module."):]: v for k, v in tensors.items()}
    for k, v in tensors.items():
        if v.is_floating_point() and not bool(torch.isfinite(v).all()):
            bad = int((~torch.isfinite(v)).sum())
            raise InputError(path, f"'{k}' holds {bad} NaN or infinite values: such a model outputs only NaN")
    return tensors


def some_names(names, k: int = 5) -> str:
    names = sorted(names)
    return ", ".join(names[:k]) + (f" ... (+{len(names) - k} more)" if len(names) > k else "")


def save_checkpoint(model: torch.nn.Module, path, meta: dict | None = None) -> None:
    """Write the mmcls layout: {'meta': ..., 'state_dict': ...}, loadable with weights_only=True."""
    with atomic_path(path) as tmp:
        torch.save({"meta": dict(meta or {}), "state_dict": model.state_dict()}, tmp)
