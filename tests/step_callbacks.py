"""Callbacks the tests use to stop or crash a fit at a given step."""

from ember.callbacks import Callback


class StopAtStep(Callback):
    """Asks the loop to stop after step ``step`` (``state.should_stop``)."""

    def __init__(self, step):
        self.step = step

    def on_train_batch_end(self, state):
        if state.step == self.step:
            state.should_stop = True


class Crash(Exception):
    pass


class CrashAt(Callback):
    """Raises Crash after step ``step``, once its checkpoint was written."""

    order = 200  # after the checkpoint of the step was written

    def __init__(self, step):
        self.step = step

    def on_train_batch_end(self, state):
        if state.step == self.step:
            raise Crash
