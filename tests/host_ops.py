"""A dispatch mode that records the aten ops which need a value on the host (a device sync on a GPU):
what a captured CUDA graph or a sync-free step must never run; HostOpWindow records them over a few
steps of a fit."""

from torch.utils._python_dispatch import TorchDispatchMode

from ember.callbacks import Callback

HOST_OPS = {
    "_local_scalar_dense",  # .item(), float(t), int(t), bool(t)
    "is_nonzero",
    "nonzero",
    "masked_select",
    "unique",
    "_unique",
    "_unique2",
    "unique_consecutive",
    "unique_dim",
    "equal",
    "repeat_interleave",
}


class HostOps(TorchDispatchMode):
    """``with HostOps() as seen: ...`` then ``seen.ops`` lists the host-reading ops dispatched."""

    def __init__(self):
        super().__init__()
        self.ops = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.overloadpacket.__name__ in HOST_OPS:
            self.ops.append(str(func))
        return func(*args, **(kwargs or {}))


class HostOpWindow(Callback):
    """Records the host-reading ops dispatched between the end of batch ``start`` and the end of
    batch ``stop`` of each epoch (whole training steps with their meter updates)."""

    refresh_interval = 1e9  # no progress reads inside the window

    def __init__(self, start=2, stop=12):
        self.start, self.stop = start, stop
        self.mode, self.ops = None, []

    def on_train_batch_end(self, state):
        if state.batch == self.start:
            self.mode = HostOps().__enter__()
        elif state.batch == self.stop and self.mode is not None:
            self.mode.__exit__(None, None, None)
            self.ops.extend(self.mode.ops)
            self.mode = None
