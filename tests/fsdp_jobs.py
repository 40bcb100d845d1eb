"""Jobs that tests/test_fsdp.py runs in several processes (module level, so spawn can import them):
a small transformer-like net trained with strategy="fsdp", its files written per process."""

import json
import os
from pathlib import Path

import torch
from torch import nn

import ember
from ember.callbacks import Callback, ModelCheckpoint


class Block(nn.Module):
    """A pre-norm residual MLP block, the shape of a transformer block without attention."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.up = nn.Linear(width, 2 * width)
        self.down = nn.Linear(2 * width, width)

    def forward(self, x):
        return x + self.down(torch.relu(self.up(self.norm(x))))


def net(width=15, blocks=3):
    """Odd widths, so that rows split unevenly over 2 processes (8 + 7, and 2 + 1 in the head)."""
    return nn.Sequential(nn.Linear(6, width), *[Block(width) for _ in range(blocks)], nn.Linear(width, 3))


def data(n=45, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=g)
    x = torch.randn(n, 6, generator=g) + nn.functional.one_hot(y, 6).float()
    return x, y


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def model(strategy="fsdp", optimizer="adamw", accumulate=1, ema=None, clip=None):
    ember.seed_everything(0)
    module = net()
    opt = torch.optim.AdamW(module.parameters(), lr=0.01, weight_decay=0.01) if optimizer == "adamw" else None
    return ember.Model(module).compile(
        loss=nn.CrossEntropyLoss(),
        metrics=["accuracy"],
        optimizer=opt,
        device="cpu",
        strategy=strategy,
        fsdp_blocks=(Block,),
        accumulate=accumulate,
        ema=ema,
        grad_clip=clip,
    )


class StopAt(Callback):
    order = 200

    def __init__(self, step):
        self.step = step

    def on_train_batch_end(self, state):
        if state.step == self.step:
            raise RuntimeError(f"boom at step {self.step}")


def dump(out, name, m, history):
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    ember.save_weights(m.net, folder / f"{name}-rank{rank()}.safetensors")  # every process gathers
    history.drop(columns=["seconds"]).to_json(folder / f"{name}-rank{rank()}.json")


def fit_job(out, name, n=45, batch=16, strategy="fsdp", epochs=3, accumulate=1, ema=None, clip=None):
    """Fit with validation; write weights, history, predictions and evaluation per process."""
    m = model(strategy, accumulate=accumulate, ema=ema, clip=clip)
    x, y = data(n)
    vx, vy = data(21, seed=1)
    history = m.fit((x, y), epochs=epochs, batch_size=batch, validation_data=(vx, vy), verbose=0)
    dump(out, name, m, history)
    torch.save(m.predict(vx, batch_size=4), Path(out) / f"{name}-predict-rank{rank()}.pt")
    evaluated = m.evaluate((vx, vy), batch_size=4)
    (Path(out) / f"{name}-evaluate-rank{rank()}.json").write_text(json.dumps(evaluated))


def resume_job(
    out,
    name,
    checkpoints,
    batch=8,
    epochs=3,
    stop_at=None,
    resume=None,
    every_n_steps=2,
    strategy="fsdp",
    keep=None,
):
    """Train with checkpoints in ``checkpoints`` (every ``every_n_steps`` steps and epoch, the
    newest ``keep`` kept), until the step ``stop_at`` raises when given; ``resume``: where to
    continue from ("latest", a path)."""
    m = model(strategy)
    x, y = data(45)
    callbacks = [ModelCheckpoint(checkpoints, every_n_steps=every_n_steps, keep_last=keep)]
    if stop_at is not None:
        callbacks.append(StopAt(stop_at))
    history = m.fit((x, y), epochs=epochs, batch_size=batch, verbose=0, callbacks=callbacks, resume=resume)
    dump(out, name, m, history)


def killed_mid_save_job(out, name, checkpoints, save_number):
    """``resume_job`` whose process 1 dies while writing its files of save ``save_number``."""
    from ember.checkpoint import sharded

    if rank() == 1:
        original, saves = sharded._fill, []

        def fill(tmp, files, comm):
            saves.append(tmp)
            if len(saves) == save_number:
                first = next(iter(files))
                sharded.write_file(tmp / first, files[first])
                os._exit(3)
            return original(tmp, files, comm)

        sharded._fill = fill
    resume_job(out, name, checkpoints)


def precision_job(out, name, precision="32", jit=False):
    """Two epochs under FSDP with ``precision`` (and ``torch.compile`` when ``jit``): the history,
    and the dtype of the stored parameters and of predictions."""
    ember.seed_everything(0)
    module = net()
    m = ember.Model(module).compile(
        loss=nn.CrossEntropyLoss(),
        metrics=["accuracy"],
        device="cpu",
        strategy="fsdp",
        fsdp_blocks=(Block,),
        precision=precision,
        jit=jit,
    )
    x, y = data()
    history = m.fit((x, y), epochs=2, batch_size=8, verbose=0)
    predictions = m.predict(x[:4])
    dtypes = {"parameters": str(next(module.parameters()).dtype), "predictions": str(predictions.dtype)}
    (Path(out) / f"{name}-dtypes-rank{rank()}.json").write_text(json.dumps(dtypes))
    history.drop(columns=["seconds"]).to_json(Path(out) / f"{name}-rank{rank()}.json")


def load_into_sharded_job(out, weights):
    """Load whole weights into a compiled (sharded) net; write the weights gathered back."""
    m = model("fsdp")
    report = ember.load_weights(m.net, weights)
    assert report.ok
    ember.save_weights(m.net, Path(out) / f"loaded-rank{rank()}.safetensors")
