"""Buffers derived from a module's constructor arguments, rebuilt on demand.

A module built on the meta device (``torch.device("meta")``, ``device="meta"``) and
materialised with ``to_empty`` holds uninitialised memory in every tensor. Parameters and
persistent buffers come back from ``reset_parameters()`` or ``load_state_dict``; a
non-persistent buffer is not in the state dict, so a module keeps what it needs to rebuild it
(on the CPU, never on the meta device) and refills it in both.
"""

from __future__ import annotations

from typing import Any

from torch import nn

__all__ = ["DerivedBuffers"]


class DerivedBuffers(nn.Module):
    """Base of the modules with non-persistent buffers: ``load_state_dict`` refills them (through
    ``fill_buffers``) before it loads the rest, so that a module materialised from the meta
    device equals one built eagerly. ``reset_parameters`` calls ``fill_buffers`` too."""

    def fill_buffers(self) -> None:
        """Write the values of this module's non-persistent buffers (no gradient is recorded)."""
        raise NotImplementedError

    def _load_from_state_dict(self, *args: Any, **kwargs: Any) -> None:
        self.fill_buffers()
        super()._load_from_state_dict(*args, **kwargs)
