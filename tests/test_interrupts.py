"""SIGTERM / Ctrl-C during fit: a final checkpoint at a step boundary, then a resume that ends exactly."""

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from ember.checkpoint import list_checkpoints
from ember.interrupts import trap_signals
from ember.resume import interrupt_note
from ember.state import Progress, TrainState
from tests.test_resume import _fit, _model

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, -signal.SIGINT)])
def test_a_signal_writes_a_final_checkpoint_and_resume_finishes_exactly(tmp_path, sig, code):
    script = textwrap.dedent(f"""
        import time
        from pathlib import Path
        from ember.callbacks import Callback, ModelCheckpoint
        from tests.test_resume import _model, _fit

        class Slow(Callback):
            def on_train_batch_end(self, state):
                if state.step == 3:
                    Path({str(tmp_path / "ready")!r}).touch()
                time.sleep(0.05)

        _fit(_model(), callbacks=[ModelCheckpoint({str(tmp_path / "ck")!r}, every_n_epochs=None), Slow()])
    """)
    process = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stderr=subprocess.PIPE)
    deadline = time.time() + 60
    while not (tmp_path / "ready").exists():
        assert process.poll() is None and time.time() < deadline, process.stderr.read().decode()
        time.sleep(0.01)
    process.send_signal(sig)
    _, err = process.communicate(timeout=60)
    assert process.returncode == code, err.decode()
    saved = list_checkpoints(tmp_path / "ck")
    assert len(saved) == 1 and saved[0].name.startswith("epoch0001-step00000000")
    step = int(saved[0].name.split("step")[1])
    note = [line for line in err.decode().splitlines() if line.startswith("ember: training stopped")]
    assert note == [
        f"ember: training stopped by {sig.name} at epoch 1, step {step} (batch {step} of the epoch); "
        f"newest checkpoint: {saved[0]}; continue with model.fit(..., resume={str(tmp_path / 'ck')!r})"
    ]
    resumed = _model()
    _fit(resumed, resume=tmp_path / "ck")
    reference = _model()
    _fit(reference)
    assert all(torch.equal(v, resumed.net.state_dict()[k]) for k, v in reference.net.state_dict().items())


def test_trap_signals_only_sets_a_flag_and_restores_handlers():
    state = TrainState()
    before = signal.getsignal(signal.SIGTERM)
    with trap_signals(state):
        signal.raise_signal(signal.SIGTERM)
        assert state.interrupted == "SIGTERM"
        with pytest.raises(SystemExit) as info:
            signal.raise_signal(signal.SIGTERM)  # a second signal acts at once
        assert info.value.code == 143
    assert signal.getsignal(signal.SIGTERM) is before


def test_the_interrupt_note_without_a_checkpoint_says_how_to_get_one():
    state = TrainState(progress=Progress(epoch=2, step=17, batch=5), interrupted="SIGINT")
    assert interrupt_note(state) == (
        "ember: training stopped by SIGINT at epoch 2, step 17 (batch 5 of the epoch); no checkpoint to "
        "resume from (no ModelCheckpoint is in callbacks): add callbacks=[ember.callbacks.ModelCheckpoint("
        "'runs/name')] to make fits resumable"
    )
