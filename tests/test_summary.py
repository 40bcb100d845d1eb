import re

import pytest
import torch
import torchvision
from torch import nn

from ember.errors import ConfigError
from ember.summary import summary
from tests.tutorial_nets import ALL, Net

FOOTER = [
    "Total params: 54,273",
    "Trainable params: 54,273",
    "Non-trainable params: 0",
    "Input size (MB): 0.011719",
    "Forward/backward pass size (MB): 0.359634",
    "Params size (MB): 0.207035",
    "Estimated Total Size (MB): 0.578388",
]
ROWS = [
    ("Conv2d-1", "[-1, 32, 30, 30]", "896"),
    ("MaxPool2d-2", "[-1, 32, 15, 15]", "0"),
    ("Conv2d-3", "[-1, 64, 11, 11]", "51,264"),
    ("MaxPool2d-4", "[-1, 64, 5, 5]", "0"),
    ("Dropout2d-5", "[-1, 64, 5, 5]", "0"),
    ("AdaptiveMaxPool2d-6", "[-1, 64, 1, 1]", "0"),
    ("Flatten-7", "[-1, 64]", "0"),
    ("Linear-8", "[-1, 32]", "2,080"),
    ("ReLU-9", "[-1, 32]", "0"),
    ("Linear-10", "[-1, 1]", "33"),
    ("Sigmoid-11", "[-1, 1]", "0"),
]


def _unique_params(net):
    return sum(p.numel() for p in {id(p): p for p in net.parameters()}.values())


@pytest.mark.parametrize("build", list(ALL.values()), ids=list(ALL))
def test_tutorial_table_digit_for_digit(build):
    text = str(summary(build(), input_shape=(3, 32, 32), verbose=0))
    lines = text.splitlines()
    for footer in FOOTER:
        assert footer in lines
    for name, shape, params in ROWS:
        assert re.search(rf"^\s*{name}\s+{re.escape(shape)}\s+{params}\*?\s", text + " ", re.M), name
    assert "FLOPs: 13,949,760" in lines


def test_repeated_module_counts_once_and_is_marked():
    s = summary(ALL["module_dict"](), input_shape=(3, 32, 32), verbose=0)
    assert s.rows[3].name == "MaxPool2d-4" and s.rows[3].repeat_of == "MaxPool2d-2"
    assert s.total_params == 54_273


def test_legacy_table_is_the_tutorial_layout():
    text = str(summary(Net(), input_shape=(3, 32, 32), verbose=0, legacy=True))
    assert text.splitlines()[1] == "        Layer (type)               Output Shape         Param #"
    assert "            Conv2d-1           [-1, 32, 30, 30]             896" in text
    assert "FLOPs" not in text


class Reused(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.scale = nn.Parameter(torch.ones(4))  # owned by a non-leaf module
        self.unused = nn.Linear(4, 2)  # never called

    def forward(self, x):
        return self.fc(self.fc(x)) * self.scale


class Tied(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(10, 6)
        self.out = nn.Linear(6, 10, bias=False)
        self.out.weight = self.embed.weight

    def forward(self, ids):
        return self.out(self.embed(ids))


def test_reused_direct_and_unused_parameters_are_counted_once():
    net = Reused()
    s = summary(net, input_shape=(4,), verbose=0)
    assert len(s.rows) == 2 and s.rows[1].repeat_of == "Linear-1"
    assert s.total_params == _unique_params(net) == 20 + 4 + 10


def test_tied_weights_count_once_and_integer_inputs():
    net = Tied()
    s = summary(net, input_shape=(7,), dtypes=torch.long, verbose=0)
    assert s.total_params == _unique_params(net) == 60
    assert s.input_bytes == 7 * 8 and s.rows[1].output_shape == [-1, 7, 10]


def test_frozen_layer_and_buffers():
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    net[0].requires_grad_(False)
    s = summary(net, input_shape=(3,), verbose=0)
    assert (s.total_params, s.trainable_params, s.non_trainable_params) == (24, 8, 16)
    assert s.buffer_count == 4 + 4 + 1


def test_no_side_effects_on_modes_buffers_rng_and_parameters():
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Dropout(0.5))
    net[2].eval()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    rng = torch.get_rng_state()
    summary(net, input_shape=(3,), verbose=0)
    assert net.training and net[1].training and not net[2].training
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert torch.equal(torch.get_rng_state(), rng)
    assert next(net.parameters()).device.type == "cpu"


def test_lstm_tuple_output_shows_structure():
    net = nn.LSTM(5, 8, batch_first=True)
    s = summary(net, input_shape=(12, 5), verbose=0)
    assert s.rows[0].output_shape == [-1, 12, 8] and s.rows[0].structure == "tuple[2]"
    assert s.total_params == _unique_params(net)


class DictModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(2, 3), nn.Linear(4, 3)

    def forward(self, left, right):
        return {"sum": self.a(left) + self.b(right), "none": None}


def test_dict_input_and_output():
    s = summary(DictModel(), input_data={"left": torch.zeros(5, 2), "right": torch.zeros(5, 4)}, verbose=0)
    assert [r.output_shape for r in s.rows] == [[5, 3], [5, 3]]
    assert s.input_bytes == (10 + 20) * 4


class Odd(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(2, 2)
        self.counter = Counter()

    def forward(self, x):
        return self.fc(x), self.counter(x)


class Counter(nn.Module):
    def forward(self, x):
        return len(x)


def test_outputs_without_tensors_are_described():
    s = summary(Odd(), input_shape=(2,), verbose=0)
    assert [(r.name, r.output_shape, r.structure) for r in s.rows] == [
        ("Linear-1", [-1, 2], ""),
        ("Counter-2", [], "int"),
    ]
    assert "Counter-2" in str(s) and " - int" in str(s)


def test_half_precision_input_counts_two_bytes():
    net = nn.Linear(4, 3).half()
    s = summary(net, input_shape=(4,), dtypes=torch.float16, verbose=0)
    assert s.input_bytes == 4 * 2 and s.param_bytes == 15 * 2
    assert s.forward_backward_bytes == 2 * 3 * 2


def test_half_precision_and_inputs_of_different_rank_add_up():
    class Two(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(3, 2), nn.Linear(5, 2)

        def forward(self, x, y):
            return self.a(x) + self.b(y).mean(1)

    s = summary(
        Two().to("meta"),
        input_shape=[(3,), (4, 5)],
        dtypes=[torch.float16, torch.float32],
        verbose=0,
    )
    assert s.input_bytes == 3 * 2 + 20 * 4


def test_meta_device_allocates_nothing():
    net = Net().to("meta")
    s = summary(net, input_shape=(3, 32, 32), verbose=0)
    assert s.total_params == 54_273 and s.flops == 13_949_760


def test_batch_size_scales_sizes_and_flops():
    s = summary(Net(), input_shape=(3, 32, 32), batch_size=4, verbose=0)
    assert s.rows[0].output_shape == [4, 32, 30, 30]
    assert s.flops == 4 * 13_949_760 and s.input_bytes == 4 * 3 * 32 * 32 * 4


def test_depth_folds_children():
    net = nn.Sequential(nn.Sequential(nn.Linear(2, 3), nn.ReLU()), nn.Linear(3, 1))
    s = summary(net, input_shape=(2,), depth=1, verbose=0)
    assert [r.name for r in s.rows] == ["Sequential-1", "Linear-2"] and s.rows[0].params == 9


def test_resnet18_total_and_outputs():
    with torch.device("meta"):
        net = torchvision.models.resnet18()
    s = summary(net, input_shape=(3, 224, 224), verbose=0)
    assert s.total_params == 11_689_512
    df = s.to_dataframe()
    assert list(df.columns) == ["layer", "path", "output_shape", "params", "repeat_of", "flops"]
    assert "| Conv2d-1 |" in s.to_markdown()


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_scripted_model_and_bad_shape_are_explained():
    with pytest.raises(ConfigError, match="scripted"):
        summary(torch.jit.script(nn.Linear(2, 2)), input_shape=(2,), verbose=0)
    with pytest.raises(ConfigError, match=r"Net failed on inputs of shape \[\(2, 1, 32, 32\)\]"):
        summary(Net(), input_shape=(1, 32, 32), verbose=0)
    with pytest.raises(ConfigError, match="input_shape"):
        summary(Net(), verbose=0)


def test_compiled_model_is_summarised_through_the_original():
    net = nn.Linear(3, 2)
    s = summary(torch.compile(net), input_shape=(3,), verbose=0)
    assert s.total_params == 8


class Block(nn.Module):
    """The series' parameter-free last block: it takes the net's input as a second argument."""

    def forward(self, x, x_input):
        return torch.max((1 + x) * x_input[:, -1, :], torch.tensor(0.0))


class LstmNet(nn.Module):
    """The series' time-series net: a 5-layer LSTM, a Linear and a Block, summarised on (8, 3)."""

    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(input_size=3, hidden_size=3, num_layers=5, batch_first=True)
        self.linear = nn.Linear(3, 3)
        self.block = Block()

    def forward(self, x_input):
        x = self.lstm(x_input)[0][:, -1, :]
        return self.block(self.linear(x), x_input)


# As the series prints it for `model.summary(input_shape=(8,3), input_dtype=torch.FloatTensor)`.
LSTM_TABLE = """\
----------------------------------------------------------------
        Layer (type)               Output Shape         Param #
================================================================
              LSTM-1                 [-1, 8, 3]             480
            Linear-2                    [-1, 3]              12
             Block-3                    [-1, 3]               0
================================================================
Total params: 492
Trainable params: 492
Non-trainable params: 0
----------------------------------------------------------------
Input size (MB): 0.000092
Forward/backward pass size (MB): 0.000229
Params size (MB): 0.001877
Estimated Total Size (MB): 0.002197
----------------------------------------------------------------"""


def test_legacy_tuple_output_counts_its_first_tensor_as_the_series_prints():
    s = summary(LstmNet(), input_shape=(8, 3), verbose=0, legacy=True)
    assert str(s) == LSTM_TABLE
    # LSTM (out [8, 3]) + Linear [3] + Block [3], 4 bytes each, forward and backward
    assert s.forward_backward_bytes == 2 * 4 * (24 + 3 + 3) == 240
    assert (s.input_bytes, s.param_bytes, s.total_params) == (96, 1968, 492)


def test_tuple_output_counts_every_tensor_outside_legacy_mode():
    s = summary(LstmNet(), input_shape=(8, 3), verbose=0)
    # out [8, 3], h and c [5 layers, 3] each per sample, Linear [3], Block [3]
    assert s.rows[0].output_elements == 24 + 15 + 15
    assert s.forward_backward_bytes == 2 * 4 * (24 + 15 + 15 + 3 + 3) == 480
    assert "Forward/backward pass size (MB): 0.000458" in str(s).splitlines()
    assert "[-1, 8, 3] tuple[2]" in str(s)


def test_summary_prints_the_table_once_and_its_repr_is_one_line(capsys):
    s = summary(Net(), input_shape=(3, 32, 32))
    out = capsys.readouterr().out
    assert out == str(s) + "\n" and out.count("Layer (type)") == 1
    # a notebook shows the repr of a cell's last expression: a line, not the table again
    assert repr(s) == "ModelSummary(11 rows, total_params=54,273, trainable_params=54,273, flops=13,949,760)"
    assert summary(Net(), input_shape=(3, 32, 32), verbose=0) is not None
    assert capsys.readouterr().out == ""
