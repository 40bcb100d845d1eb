"""WandbLogger: a fit's parameters, metrics and files in a Weights & Biases run (optional extra
``wandb``).

Training values logged per step use ``global_step`` as their x-axis and epoch values use ``epoch``
(``run.define_metric``), so both live in one run without W&B's single-step-counter conflicts. See
``ember.callbacks.tracking`` for what is logged when, the background thread and the failure rule.
Knows wandb (imported when a fit starts).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ember.callbacks.tracking import Tracker
from ember.errors import ConfigError
from ember.state import TrainState

__all__ = ["WandbLogger"]


class WandbLogger(Tracker):
    """Log a fit to Weights & Biases: parameters as the run's config, ``train/<name>`` at every
    progress refresh (against ``global_step``), each epoch's values (against ``epoch``), and at the
    end the history plot and, with ``log_checkpoints``, the best (else newest) checkpoint.

    A resumed fit reopens the run of the checkpoint (``resume="allow"``) and skips the steps and
    epochs the run's summary says it holds. In offline mode there is no server to ask, so the steps
    between the checkpoint and the crash are logged again in the resumed segment.

    Args:
        project: the W&B project.
        name: the run's display name (W&B picks one when None).
        mode: ``"online"``, ``"offline"`` or ``"disabled"`` (None: W&B's default, ``WANDB_MODE``).
        log_checkpoints: upload a checkpoint folder when the fit ends.
        init_options: more ``wandb.init`` arguments (``entity``, ``dir``, ``tags``, ...).

    Example:
        >>> logger = WandbLogger("cifar", mode="offline")  # doctest: +SKIP
        >>> model.fit(data, epochs=10, callbacks=[logger])  # doctest: +SKIP
    """

    name = "WandbLogger"

    def __init__(
        self,
        project: str,
        name: str | None = None,
        mode: str | None = None,
        log_checkpoints: bool = False,
        **init_options: Any,
    ) -> None:
        super().__init__(log_checkpoints)
        self.project = project
        self.run_name = name
        self.mode = mode
        self.init_options = init_options
        self._run: Any = None

    def on_fit_start(self, state: TrainState) -> None:
        """Check that wandb is installed (a ConfigError naming the extra), then start the run."""
        if state.model.is_main:
            try:
                import wandb  # noqa: F401
            except ImportError as exc:
                raise ConfigError("WandbLogger needs wandb: pip install 'ember[wandb]'") from exc
        super().on_fit_start(state)

    def _start(self, params: dict[str, Any]) -> tuple[int, int]:
        import wandb

        resumed = self.run_id is not None
        run = wandb.init(
            project=self.project,
            name=self.run_name,
            mode=self.mode,
            id=self.run_id,
            resume="allow" if resumed else None,
            config=params,
            reinit="create_new",
            **self.init_options,
        )
        self._run, self.run_id = run, run.id
        run.define_metric("global_step")
        run.define_metric("epoch")
        for pattern in ("train/*", "validation/*"):
            run.define_metric(pattern, step_metric="global_step")
        run.define_metric("*", step_metric="epoch")
        if not resumed:
            return 0, 0
        return int(run.summary.get("global_step", 0)), int(run.summary.get("epoch", 0))

    def _log_metrics(self, values: dict[str, float], step: int, axis: str) -> None:
        self._run.log({**values, "global_step" if axis == "step" else "epoch": step})

    def _log_files(self, files: dict[str, str]) -> None:
        import wandb

        for folder, path in files.items():
            artifact = wandb.Artifact(f"{self.run_id}-{folder.replace('/', '-')}", type=folder.split("/")[0])
            if Path(path).is_dir():
                artifact.add_dir(path)
            else:
                artifact.add_file(path)
            self._run.log_artifact(artifact)

    def _finish(self, status: str) -> None:
        self._run.finish(exit_code=0 if status == "FINISHED" else 1)
