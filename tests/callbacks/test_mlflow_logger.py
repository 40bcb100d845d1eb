"""MLflowLogger against real MLflow backends: a SQLite store read back with MlflowClient, and a real
``mlflow server`` process on 127.0.0.1 (stopped mid-fit to show that training goes on)."""

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import warnings

import pytest
import torch
from torch import nn

import ember
from ember.callbacks import Callback, MLflowLogger, ModelCheckpoint
from ember.errors import ConfigError
from tests.step_callbacks import Crash, CrashAt

mlflow = pytest.importorskip("mlflow", reason="the mlflow extra is not installed (ember[mlflow])")
from mlflow import MlflowClient  # noqa: E402

N, BATCH, EPOCHS = 96, 16, 3  # 6 steps per epoch


@pytest.fixture(autouse=True)
def in_tmp_path(monkeypatch, tmp_path):
    """MLflow puts a SQLite store's artifacts under ./mlruns: keep them out of the repository."""
    monkeypatch.chdir(tmp_path)


def data():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(N, 4, generator=generator)
    return x, (x[:, 0] > 0).long()


def make_model(**compile_options):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    options = {"loss": nn.CrossEntropyLoss(), "optimizer": optimizer, "metrics": ["accuracy"]}
    return ember.Model(net).compile(**options, device="cpu", **compile_options)


class EveryStepRefresh(Callback):
    """Refresh the running values after every step, as a fast progress bar would."""

    refresh_interval = 0.0


def history_of(client, run_id, key):
    return [(m.step, m.value) for m in sorted(client.get_metric_history(run_id, key), key=lambda m: m.step)]


def test_sqlite_store_holds_params_epochs_steps_and_files(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    logger = MLflowLogger("tests", tracking_uri=uri, run_name="first", log_checkpoints=True)
    model = make_model(accumulate=2)
    x, y = data()
    keeper = ModelCheckpoint(tmp_path / "ckpt", save_best=True, monitor="val_loss")
    history = model.fit(
        (x, y),
        epochs=EPOCHS,
        batch_size=BATCH,
        validation_data=(x, y),
        callbacks=[logger, keeper, EveryStepRefresh()],
        verbose=0,
    )
    client = MlflowClient(uri)
    run = client.get_run(logger.run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "first"
    params = run.data.params
    assert params["parameters"] == str(4 * 8 + 8 + 8 * 2 + 2) and params["net"] == "Sequential"
    assert params["compile.accumulate"] == "2" and params["compile.loss"] == "CrossEntropyLoss"
    assert params["fit.epochs"] == "3" and params["fit.batch_size"] == "16"
    assert params["optimizer"] == "SGD" and params["optimizer.momentum"] == "0.9"
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        logged = history_of(client, logger.run_id, key)
        assert [step for step, _ in logged] == [1, 2, 3]
        assert [value for _, value in logged] == pytest.approx(history[key].tolist(), rel=1e-6)
    steps = [step for step, _ in history_of(client, logger.run_id, "train/loss")]
    assert steps == list(range(1, EPOCHS * N // BATCH + 1))  # a refresh after every step
    artifacts = {a.path for a in client.list_artifacts(logger.run_id)}
    assert artifacts == {"plots", "checkpoints"}
    assert [a.path for a in client.list_artifacts(logger.run_id, "plots")] == ["plots/history.png"]
    best = [a.path for a in client.list_artifacts(logger.run_id, "checkpoints")]
    assert best == [f"checkpoints/{keeper.best_path.name}"]


def test_resumed_fit_continues_the_run_and_logs_no_step_twice(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    x, y = data()
    options = {"epochs": EPOCHS, "batch_size": BATCH, "verbose": 0}
    keeper = ModelCheckpoint(tmp_path / "ckpt", every_n_steps=4)
    first = MLflowLogger("tests", tracking_uri=uri)
    with pytest.raises(Crash):  # crashes after step 10: the checkpoint of step 8 is the newest
        make_model().fit((x, y), callbacks=[first, keeper, EveryStepRefresh(), CrashAt(10)], **options)
    client = MlflowClient(uri)
    assert client.get_run(first.run_id).info.status == "FAILED"
    logged_before = [s for s, _ in history_of(client, first.run_id, "train/loss")]
    assert logged_before == list(range(1, 10))  # step 10 crashed before its refresh
    second = MLflowLogger("tests", tracking_uri=uri)
    keeper = ModelCheckpoint(tmp_path / "ckpt", every_n_steps=4)
    history = make_model().fit(
        (x, y), callbacks=[second, keeper, EveryStepRefresh()], resume="latest", **options
    )
    assert second.run_id == first.run_id  # the id came from the checkpoint
    assert len(client.search_runs([client.get_experiment_by_name("tests").experiment_id])) == 1
    assert client.get_run(first.run_id).info.status == "FINISHED"
    steps = [s for s, _ in history_of(client, first.run_id, "train/loss")]
    assert steps == list(range(1, EPOCHS * N // BATCH + 1))  # step 9, redone after resume, once
    logged = history_of(client, first.run_id, "loss")
    assert [s for s, _ in logged] == [1, 2, 3]
    assert [v for _, v in logged] == pytest.approx(history["loss"].tolist(), rel=1e-6)


def test_missing_mlflow_names_the_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "mlflow", None)
    x, y = data()
    with pytest.raises(ConfigError, match=r"pip install 'ember\[mlflow\]'"):
        make_model().fit((x, y), callbacks=[MLflowLogger("tests", tracking_uri="sqlite:///x.db")], verbose=0)


def _free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def mlflow_server(tmp_path):
    """A real ``mlflow server`` on a free port of 127.0.0.1, stopped after the test (or by it)."""
    port = _free_port()
    command = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port)]
    command += ["--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}"]
    command += ["--artifacts-destination", str(tmp_path / "artifacts"), "--workers", "1"]
    server = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True, cwd=tmp_path
    )
    uri = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if server.poll() is not None:
                break
            time.sleep(0.5)
    else:
        stop(server)
        pytest.skip("mlflow server did not start within 60 s")
    if server.poll() is not None:
        pytest.skip(f"mlflow server exited with code {server.returncode} before listening")
    yield uri, server
    stop(server)


def stop(server):
    """Kill the server and the workers it started (its whole process group)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.pid, signal.SIGKILL)
    server.wait()


def test_real_server_run_and_a_server_gone_mid_fit(mlflow_server, tmp_path, monkeypatch):
    uri, server = mlflow_server
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # fail fast once the server is gone
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    x, y = data()
    logger = MLflowLogger("served", tracking_uri=uri)
    make_model().fit((x, y), epochs=2, batch_size=BATCH, callbacks=[logger, EveryStepRefresh()], verbose=0)
    client = MlflowClient(uri)
    assert [s for s, _ in history_of(client, logger.run_id, "loss")] == [1, 2]
    assert client.get_run(logger.run_id).info.status == "FINISHED"

    class StopServer(Callback):
        def on_epoch_end(self, state):
            if state.epoch == 1:
                stop(server)

    gone = MLflowLogger("served", tracking_uri=uri)
    keeper = ModelCheckpoint(tmp_path / "ckpt")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = make_model().fit(
            (x, y), epochs=3, batch_size=BATCH, callbacks=[gone, keeper, StopServer()], verbose=0
        )
    assert len(history) == 3 and keeper.latest() is not None  # training and checkpoints went on
    messages = [str(w.message) for w in caught if "MLflowLogger" in str(w.message)]
    assert len(messages) == 1 and "stopped logging after an error" in messages[0]
    assert gone.failed is not None


def test_two_processes_log_one_run_from_process_zero(tmp_path):
    from tests import dist_jobs

    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    ember.launch(dist_jobs.tracker_job, 2, str(tmp_path), uri)
    ids = [json.loads((tmp_path / f"run-{rank}.json").read_text())["run_id"] for rank in (0, 1)]
    assert ids[0] is not None and ids[1] is None
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("two-processes").experiment_id])
    assert [run.info.run_id for run in runs] == [ids[0]]
    assert [m.step for m in client.get_metric_history(ids[0], "loss")] == [1, 2]
