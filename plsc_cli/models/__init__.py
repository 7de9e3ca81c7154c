"""Backbone registry: names to constructors of face embedding networks.

Every backbone takes float32 images ``[N, 3, 112, 112]`` and returns embeddings
``[N, embedding_size]``. Backbones contain no head and no sharding code.

Importing this package is cheap: the modules that define the built-in backbones
(and Paddle with them) load on the first ``build_backbone`` call.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from plsc_cli.errors import PlscUsageError

if TYPE_CHECKING:
    import paddle

BackboneFactory = Callable[..., "paddle.nn.Layer"]

# Built-in backbone names and the module whose import registers each of them.
_BUILTIN_MODULES: dict[str, str] = {
    "iresnet18": "plsc_cli.models.iresnet",
    "iresnet34": "plsc_cli.models.iresnet",
    "iresnet50": "plsc_cli.models.iresnet",
    "iresnet100": "plsc_cli.models.iresnet",
    "iresnet200": "plsc_cli.models.iresnet",
    "mobilefacenet": "plsc_cli.models.mobilefacenet",
}
_REGISTRY: dict[str, BackboneFactory] = {}


def register(name: str) -> Callable[[BackboneFactory], BackboneFactory]:
    """Register a backbone factory under ``name`` (a decorator)."""

    def decorator(factory: BackboneFactory) -> BackboneFactory:
        if name in _REGISTRY and _REGISTRY[name] is not factory:
            raise ValueError(f"backbone {name!r} is already registered")
        _REGISTRY[name] = factory
        return factory

    return decorator


def list_backbones() -> list[str]:
    """Return the names accepted by ``build_backbone``, in registry order."""
    names = list(_BUILTIN_MODULES)
    names += [name for name in _REGISTRY if name not in _BUILTIN_MODULES]
    return names


def build_backbone(
    name: str, embedding_size: int = 512, **kwargs: Any
) -> paddle.nn.Layer:
    """Build the backbone ``name`` with an ``embedding_size``-dimensional output.

    Extra keyword arguments go to the backbone's constructor, for example
    ``dropout`` for the IResNets.
    """
    if name not in _REGISTRY and name in _BUILTIN_MODULES:
        importlib.import_module(_BUILTIN_MODULES[name])
    if name not in _REGISTRY:
        choices = ", ".join(list_backbones())
        raise PlscUsageError(f"unknown backbone {name!r}; choose one of: {choices}")
    if embedding_size < 1:
        raise PlscUsageError(
            f"invalid embedding size {embedding_size}; use a positive integer "
            "such as 512 or 128"
        )
    return _REGISTRY[name](embedding_size=embedding_size, **kwargs)
