"""MLflowLogger: a fit's parameters, metrics and files in an MLflow run (optional extra ``mlflow``).

Talks to the tracking server or store through ``mlflow.MlflowClient`` only, so the process's global
MLflow state (active run, tracking URI) is left as the user set it. See ``ember.callbacks.tracking``
for what is logged when, the background thread and the failure rule. Knows mlflow (imported when a
fit starts).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ember.callbacks.tracking import Tracker
from ember.errors import ConfigError
from ember.state import TrainState

__all__ = ["MLflowLogger"]

_BATCH = 1000  # MLflow takes at most 1000 metrics per log_batch call


class MLflowLogger(Tracker):
    """Log a fit to MLflow: parameters at the start, ``train/<name>`` at every progress refresh
    (step = global step), each epoch's values (step = epoch), and at the end the history plot and,
    with ``log_checkpoints``, the best (else the newest) checkpoint of a ModelCheckpoint.

    Args:
        experiment: the experiment's name (made when missing).
        tracking_uri: where runs go (``"sqlite:///mlruns.db"``, ``"http://127.0.0.1:5000"``);
            None: MLflow's default (``MLFLOW_TRACKING_URI`` or ``./mlruns``).
        run_name: the new run's name (MLflow picks one when None).
        log_checkpoints: upload a checkpoint folder when the fit ends.

    Example:
        >>> logger = MLflowLogger("cifar", tracking_uri="sqlite:///mlruns.db")  # doctest: +SKIP
        >>> model.fit(data, epochs=10, callbacks=[logger])  # doctest: +SKIP
    """

    name = "MLflowLogger"

    def __init__(
        self,
        experiment: str,
        tracking_uri: str | None = None,
        run_name: str | None = None,
        log_checkpoints: bool = False,
    ) -> None:
        super().__init__(log_checkpoints)
        self.experiment = experiment
        self.tracking_uri = tracking_uri
        self.run_name = run_name
        self._client: Any = None

    def on_fit_start(self, state: TrainState) -> None:
        """Check that mlflow is installed (a ConfigError naming the extra), then start the run."""
        if state.model.is_main:
            try:
                import mlflow  # noqa: F401
            except ImportError as exc:
                raise ConfigError("MLflowLogger needs mlflow: pip install 'ember[mlflow]'") from exc
        super().on_fit_start(state)

    def _start(self, params: dict[str, Any]) -> tuple[int, int]:
        from mlflow import MlflowClient

        self._client = client = MlflowClient(self.tracking_uri)
        if self.run_id is not None:  # a resumed fit: the same run, after what it already holds
            client.update_run(self.run_id, status="RUNNING")
            return _last_step(client, self.run_id, "train/loss"), _last_step(client, self.run_id, "loss")
        run = client.create_run(_experiment_id(client, self.experiment), run_name=self.run_name)
        self.run_id = run.info.run_id
        from mlflow.entities import Param

        entries = [Param(key, str(value)[:6000]) for key, value in params.items()]
        for start in range(0, len(entries), 100):  # the store's limit per call
            client.log_batch(self.run_id, params=entries[start : start + 100])
        return 0, 0

    def _log_metrics(self, values: dict[str, float], step: int, axis: str) -> None:
        from mlflow.entities import Metric

        stamp = int(time.time() * 1000)
        entries = [Metric(key, float(value), stamp, step) for key, value in values.items()]
        for start in range(0, len(entries), _BATCH):
            self._client.log_batch(self.run_id, metrics=entries[start : start + _BATCH])

    def _log_files(self, files: dict[str, str]) -> None:
        for folder, path in files.items():
            if Path(path).is_dir():
                self._client.log_artifacts(self.run_id, path, folder)
            else:
                self._client.log_artifact(self.run_id, path, folder)

    def _finish(self, status: str) -> None:
        self._client.set_terminated(self.run_id, status=status)


def _experiment_id(client: Any, name: str) -> str:
    """The id of experiment ``name``, made when missing."""
    found = client.get_experiment_by_name(name)
    return client.create_experiment(name) if found is None else found.experiment_id


def _last_step(client: Any, run_id: str, key: str) -> int:
    """The highest step of metric ``key`` in the run (0 when it has none)."""
    return max((m.step for m in client.get_metric_history(run_id, key)), default=0)
