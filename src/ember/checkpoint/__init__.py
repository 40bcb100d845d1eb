"""ember.checkpoint: pickle-free, atomic, verified checkpoint folders; weights for reuse; export."""

from ember.checkpoint.export import export, load_exported
from ember.checkpoint.format import list_checkpoints, read_checkpoint, write_checkpoint
from ember.checkpoint.objects import load_checkpoint, load_states, save_checkpoint, save_states
from ember.checkpoint.weights import (
    LoadReport,
    consolidate,
    load_weights,
    read_state_dict,
    save_weights,
    write_state_dict,
)

__all__ = [
    "LoadReport",
    "consolidate",
    "export",
    "list_checkpoints",
    "load_checkpoint",
    "load_exported",
    "load_states",
    "load_weights",
    "read_checkpoint",
    "read_state_dict",
    "save_checkpoint",
    "save_states",
    "save_weights",
    "write_checkpoint",
    "write_state_dict",
]
