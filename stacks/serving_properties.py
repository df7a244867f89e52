"""Render the DJL Serving ``serving.properties`` of a profile with the deployment's overrides applied."""

from pathlib import Path

from stacks.config import DeploymentConfig

MODEL_ARTIFACTS_DIR = Path(__file__).resolve().parent.parent / "model_artifacts"


# The project's DJL Serving handler, uploaded next to the weights for every profile whose serving.properties
# names it as option.entryPoint.
HANDLER_FILE = MODEL_ARTIFACTS_DIR / "handler" / "model.py"


def profile_artifacts_dir(profile_name: str) -> Path:
    return MODEL_ARTIFACTS_DIR / profile_name


def uses_project_handler(serving_properties: str) -> bool:
    return any(line.strip() == f"option.entryPoint={HANDLER_FILE.name}" for line in serving_properties.splitlines())


def render_serving_properties(config: DeploymentConfig) -> str:
    """Return the profile's serving.properties with the configured tensor parallel degree.

    The checked-in file is the reference for each profile; only values that the configuration can change
    are replaced, so that a ``-c tensorParallelDegree=...`` override reaches the container.
    """
    source = profile_artifacts_dir(config.profile.name) / "serving.properties"
    overrides = {"option.tensor_parallel_degree": str(config.tensor_parallel_degree)}

    lines = []
    seen = set()
    for line in source.read_text().splitlines():
        key = line.split("=", 1)[0].strip()
        if key in overrides:
            lines.append(f"{key}={overrides[key]}")
            seen.add(key)
        else:
            lines.append(line)

    for key, value in overrides.items():
        if key not in seen:
            lines.append(f"{key}={value}")

    return "\n".join(lines) + "\n"
