from ember.state import Progress, TrainState


def test_progress_round_trips_through_its_state_dict():
    saved = Progress(epoch=3, epochs_done=2, step=41, updates=11, batch=7, fit_start_epoch=1)
    restored = Progress()
    restored.load_state_dict({**saved.state_dict(), "in_epoch": True})  # extra keys are not counters
    assert restored == saved
    assert saved.state_dict() == {
        "epoch": 3,
        "epochs_done": 2,
        "step": 41,
        "updates": 11,
        "batch": 7,
        "fit_start_epoch": 1,
        "fit_start_updates": 0,
    }


def test_progress_saved_before_updates_were_counted_has_one_update_per_step():
    restored = Progress()
    restored.load_state_dict({"epoch": 2, "epochs_done": 1, "step": 9, "batch": 3, "fit_start_epoch": 0})
    assert (restored.updates, restored.fit_start_updates) == (9, 0)


def test_the_state_reads_and_writes_its_progress():
    state = TrainState()
    state.step += 5
    state.epoch = 2
    assert state.progress == Progress(epoch=2, step=5)
    state.progress.load_state_dict(Progress(batch=3, epochs_done=1).state_dict())
    assert (state.epoch, state.epochs_done, state.step, state.batch) == (0, 1, 0, 3)
