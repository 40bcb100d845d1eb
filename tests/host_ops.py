"""A dispatch mode that records the aten ops which need a value on the host (a device sync on a GPU):
what a captured CUDA graph or a sync-free step must never run."""

from torch.utils._python_dispatch import TorchDispatchMode

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
