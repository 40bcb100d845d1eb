"""ember.checkpoint: pickle-free, atomically written weight files."""

from ember.checkpoint.weights import load_weights, read_state_dict, save_weights, write_state_dict

__all__ = ["load_weights", "read_state_dict", "save_weights", "write_state_dict"]
