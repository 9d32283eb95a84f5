"""tlcourse for PyTorch. Importing this module imports torch; ``tlcourse.keras`` mirrors its names."""
import torch as _torch

from tlcourse.config import cache_dir as _cache_dir
from tlcourse.config import current_seed as _current_seed

# torchvision and torch.hub keep downloaded weights under the course's one cache root.
_torch.hub.set_dir(str(_cache_dir("torch")))
if _current_seed() is not None:
    _torch.manual_seed(_current_seed())

# Public names, one line per module; tlcourse.keras exports the same ones.
