"""ember.launch: run a function in N local processes of one torch.distributed job (a convenience for
notebooks and tests; use torchrun for real jobs). Each process gets RANK, LOCAL_RANK, WORLD_SIZE and a
free MASTER_PORT on 127.0.0.1; if one raises, the others are stopped and the error names the rank.
"""

from __future__ import annotations

import os
import socket
import sys
import traceback
from collections.abc import Callable
from typing import Any

import torch.distributed as dist
import torch.multiprocessing as mp

from ember.errors import EmberError

__all__ = ["LaunchError", "launch"]


class LaunchError(EmberError, RuntimeError):
    """A launched process raised; the message names the rank and the original exception."""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _worker(rank: int, fn: Callable[..., Any], nprocs: int, port: int, args: tuple[Any, ...]) -> None:
    os.environ.update(
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(nprocs),
        LOCAL_WORLD_SIZE=str(nprocs),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    try:
        fn(*args)
    except BaseException as exc:
        raise LaunchError(
            f"rank {rank} of {nprocs} raised {type(exc).__name__}: {exc}\n{traceback.format_exc()}"
        ) from None
    if dist.is_initialized():  # leave together: a process that tears down gloo early aborts its peers
        dist.barrier()
        dist.destroy_process_group()
    # gloo's background threads can abort interpreter teardown ("terminate called without an active
    # exception") after the work is done; a finished worker therefore exits directly.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def launch(fn: Callable[..., Any], nprocs: int = 2, *args: Any) -> None:
    """Run ``fn(*args)`` in ``nprocs`` spawned processes (``fn`` must be importable: module level).

    Example:
        >>> ember.launch(train, 2, "data/")  # doctest: +SKIP
    """
    try:
        mp.start_processes(
            _worker, args=(fn, nprocs, _free_port(), args), nprocs=nprocs, join=True, start_method="spawn"
        )
    except mp.ProcessRaisedException as exc:  # its text holds the worker's "rank r of n raised ..."
        raise LaunchError(str(exc)) from exc
    except mp.ProcessExitedException as exc:
        raise LaunchError(f"rank {exc.error_index} of {nprocs} exited with code {exc.exit_code}") from exc
