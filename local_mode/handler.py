"""Load the container handler (model_artifacts/handler/model.py) and a profile's model properties.

The handler is imported from its file, as DJL Serving does in the container, so local mode runs the same
request parsing, validation and parameter mapping.
"""

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

MODEL_ARTIFACTS_DIR = Path(__file__).resolve().parent.parent / "model_artifacts"

HANDLER_PATH = MODEL_ARTIFACTS_DIR / "handler" / "model.py"

# The profile whose serving.properties local mode uses by default: the small model that a team tries first,
# served with transformers like local mode, so every generate() parameter of the original write-up works.
DEFAULT_PROFILE = "bloom-1b7"


def load_model_handler() -> ModuleType:
    """Import ``model_artifacts/handler/model.py`` once per process and return the module."""
    module_name = "bloom_model_handler"
    if module_name in sys.modules:
        return sys.modules[module_name]

    path = HANDLER_PATH

    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    # Registered before execution: dataclasses look their module up in sys.modules.
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[module_name]
        raise
    return module


def read_serving_properties(profile: str = DEFAULT_PROFILE) -> dict[str, str]:
    """Return the profile's ``option.*`` settings without the prefix, as DJL Serving passes them to handle()."""
    path = MODEL_ARTIFACTS_DIR / profile / "serving.properties"
    properties = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue

        key, value = (part.strip() for part in line.split("=", 1))
        if key.startswith("option."):
            properties[key.removeprefix("option.")] = value
    return properties
