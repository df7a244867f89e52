"""Load a causal LM with transformers on the CPU into the handler's TransformersEngine.

A model source is one of:

- ``tiny``: the tiny BLOOM built offline from a config (see ``local_mode.tiny_bloom``);
- a local folder with ``config.json``, the weights and the tokenizer, e.g. a copy of bigscience/bloom-560m;
- a Hugging Face Hub id such as ``bigscience/bloom-560m``, downloaded by transformers (needs network).
"""

import logging
from pathlib import Path
from types import ModuleType

from local_mode.tiny_bloom import tiny_bloom_dir

LOGGER = logging.getLogger(__name__)

TINY_MODEL_SOURCE = "tiny"


def resolve_model_source(source: str, cache_dir: Path | None = None) -> str:
    """Return the folder or Hub id that transformers should load for a model source."""
    if source == TINY_MODEL_SOURCE:
        return str(tiny_bloom_dir(cache_dir))

    path = Path(source).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"model folder {path} has no config.json: expected a saved transformers model")
        return str(path)

    # Anything else is treated as a Hub id; transformers raises a clear error when it cannot be fetched.
    return source


def load_transformers_engine(handler: ModuleType, source: str, cache_dir: Path | None = None):
    """Load the model and tokenizer of a source in float32 on the CPU, wrapped in the handler's engine."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    location = resolve_model_source(source, cache_dir)
    if source == TINY_MODEL_SOURCE:
        # The tiny model's matrices are too small to split across threads: one thread is several times faster
        # on a busy machine, where the threads wait for each other.
        torch.set_num_threads(1)
    tokenizer = AutoTokenizer.from_pretrained(location)
    model = AutoModelForCausalLM.from_pretrained(location, dtype=torch.float32).eval()
    LOGGER.info("Loaded model %s with %d parameters on the CPU", location, model.num_parameters())
    return handler.TransformersEngine(model=model, tokenizer=tokenizer, device="cpu")
