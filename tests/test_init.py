"""The package's import surface: ``import ember`` loads no heavy dependency, and every lazily
loaded public name resolves on first use."""

import json
import subprocess
import sys

import pandas as pd
import pytest
import torch

import ember
import ember.callbacks
import ember.data

HEAVY = ["torchvision", "torch._dynamo", "matplotlib", "pandas", "safetensors", "mlflow", "wandb"]


def _loaded_after(code: str) -> list[str]:
    """The HEAVY modules a fresh interpreter holds after running ``code``."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    command = [sys.executable, "-c", probe]
    out = subprocess.run(command, capture_output=True, text=True, check=True, timeout=300)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_import_ember_loads_no_heavy_dependency():
    assert _loaded_after("import ember, ember.data, ember.callbacks, ember.metrics") == []


def test_first_uses_load_what_they_need():
    assert _loaded_after("import ember\nember.History") == ["pandas"]
    assert _loaded_after("from ember.data import image_folder") == ["torchvision", "torch._dynamo"]
    fit = (
        "import torch, ember\n"
        "m = ember.Model(torch.nn.Linear(2, 2)).compile(loss=torch.nn.CrossEntropyLoss(), device='cpu')\n"
        "m.fit((torch.randn(8, 2), torch.randint(0, 2, (8,))), epochs=1, verbose=0)"
    )
    # torch.optim's constructor imports torch._dynamo itself; pandas comes with the returned History
    assert _loaded_after(fit) == ["torch._dynamo", "pandas"]


def test_lazy_names_are_the_real_objects():
    assert ember.History is ember.callbacks.History
    assert issubclass(ember.History, pd.DataFrame)
    from ember.data.images import image_folder
    from ember.data.transforms import evaluation

    assert ember.data.image_folder is image_folder
    assert ember.data.transforms.evaluation is evaluation
    assert set(ember.data.__all__) <= set(dir(ember.data))
    assert isinstance(ember.data.DeviceLoader(torch.zeros(4, 1), batch_size=2), ember.data.DeviceLoader)


@pytest.mark.parametrize("module", [ember, ember.callbacks, ember.data])
def test_unknown_names_raise_attribute_error_naming_the_module(module):
    with pytest.raises(AttributeError, match=rf"module '{module.__name__}' has no attribute 'nope'"):
        module.nope  # noqa: B018
