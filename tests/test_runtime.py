import pytest
import torch

from ember.errors import ConfigError
from ember.runtime import Runtime, resolve_device


def test_serial_runtime_is_rank_zero_of_one():
    rt = Runtime("cpu")
    assert (rt.rank, rt.world_size, rt.is_main) == (0, 1, True)
    t = torch.tensor([1.0, 2.0])
    assert rt.all_reduce_sum(t) is t


def test_unknown_precision_is_rejected_with_the_choices():
    with pytest.raises(ConfigError, match="'64'.*32, bf16, 16"):
        Runtime("cpu", "64")


def test_bf16_autocast_runs_matmul_in_bfloat16():
    rt = Runtime("cpu", "bf16")
    with rt.autocast():
        out = torch.nn.functional.linear(torch.ones(2, 3), torch.ones(4, 3))
    assert out.dtype == torch.bfloat16
    assert rt.make_scaler() is None


def test_fp32_has_no_autocast_effect():
    with Runtime("cpu").autocast():
        assert torch.ones(2).matmul(torch.ones(2)).dtype == torch.float32


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA message")
def test_cuda_request_without_cuda_names_the_device():
    with pytest.raises(ConfigError, match="'cuda:0'.*not available"):
        resolve_device("cuda:0")
    assert resolve_device(None).type == "cpu"
