import csv
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from ember.cli import load_object, main
from ember.errors import ConfigError


def test_summary_command_from_a_file(tmp_path, capsys):
    source = tmp_path / "nets.py"
    source.write_text(
        "from torch import nn\n"
        "class Net(nn.Sequential):\n"
        "    def __init__(self):\n"
        "        super().__init__(nn.Linear(4, 3), nn.ReLU())\n"
    )
    assert main(["summary", f"{source}:Net", "--input-shape", "4"]) == 0
    out = capsys.readouterr().out
    assert "Linear-1" in out and "Total params: 15" in out


def test_summary_command_from_a_module_factory(capsys):
    assert main(["summary", "torchvision.models:resnet18", "--input-shape", "3,64,64", "--depth", "1"]) == 0
    assert "Total params: 11,689,512" in capsys.readouterr().out


def test_bad_targets_are_explained(tmp_path, capsys):
    with pytest.raises(ConfigError, match="no such file"):
        load_object(f"{tmp_path}/missing.py:Net")
    with pytest.raises(ConfigError, match="FILE.py:NAME"):
        load_object("nocolon")
    assert main(["summary", "torchvision.models:nothing", "--input-shape", "3"]) == 2
    assert "has no attribute 'nothing'" in capsys.readouterr().err


def test_python_dash_m_ember_help():
    result = subprocess.run(
        [sys.executable, "-m", "ember", "--help"], capture_output=True, text=True, check=True
    )
    assert "demo" in result.stdout and "summary" in result.stdout


def test_demo_writes_every_artefact(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--epochs", "2", "--verbose", "2"]) == 0
    printed = capsys.readouterr().out
    assert "Total params:" in printed and "epoch 2/2" in printed and "test accuracy: " in printed
    accuracy = float(printed.split("test accuracy: ")[1].split()[0])
    assert accuracy > 0.3  # 10 classes, two epochs of a small CNN
    for name in (
        "history.csv",
        "history.png",
        "predictions.csv",
        "checkpoints/best/model.safetensors",
        "checkpoints/best/manifest.json",
    ):
        assert (out / name).is_file(), name
    assert len(list(csv.DictReader((out / "history.csv").open()))) == 2
    assert [p.name for p in (out / "checkpoints").iterdir() if p.name != "best"] == [
        "epoch0002-step000000058"
    ]
    rows = list(csv.DictReader((out / "predictions.csv").open()))
    assert len(rows) == 20 and set(rows[0]) == {"file", "label", "predicted", "probability"}
    image = np.asarray(Image.open(out / "history.png").convert("L"))
    assert image.std() > 10
    assert len(list((out / "digits" / "train").rglob("*.png"))) == 1797 - 359
