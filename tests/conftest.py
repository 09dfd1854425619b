import pytest
import torch

from elt import config
from elt.config import merge as deep_update


TINY = {
    "run": "tiny",
    "seed": 0,
    "model": {"generator": "masked", "family": "elt", "width": "T", "n_unique": 1, "loops": 3},
    "train": {"steps": 30, "batch_size": 16, "lr": 3e-3, "warmup_steps": 5, "checkpoint_every": 10},
    "masked": {"sampling_steps": 4},
    "diffusion": {"sampling_steps": 4},
}


def tiny_cfg(**overrides) -> config.RunConfig:
    return config.from_dict(deep_update(TINY, overrides))


@pytest.fixture(autouse=True)
def _single_thread():
    torch.set_num_threads(1)
    torch.manual_seed(0)
