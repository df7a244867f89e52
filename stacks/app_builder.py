"""Compose the stacks of one deployment and register the security checks that run on every synth."""

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks

from stacks.api_stack import ApiStack
from stacks.config import DeploymentConfig, load_config
from stacks.control_stack import ControlStack
from stacks.hosting_stack import HostingStack
from stacks.storage_stack import StorageStack


class BloomApp:
    """Handles to the stacks of one deployment, for tests and for stacks that depend on each other."""

    def __init__(
        self,
        config: DeploymentConfig,
        storage: StorageStack,
        hosting: HostingStack,
        api: ApiStack,
        control: ControlStack,
    ) -> None:
        self.config = config
        self.storage = storage
        self.hosting = hosting
        self.api = api
        self.control = control

    @property
    def stacks(self) -> list[cdk.Stack]:
        return [self.storage, self.hosting, self.api, self.control]


def build_app(app: cdk.App) -> BloomApp:
    """Read the configuration from the app's context and add the stacks to the app."""
    config = load_config(app.node.try_get_context)
    cdk.Tags.of(app).add("project", "bloom-on-aws")
    cdk.Tags.of(app).add("deployment", config.name_prefix)

    storage = StorageStack(
        app,
        "StorageStack",
        stack_name=config.stack_name("storage"),
        description="Model bucket for BLOOM weights and artifacts (kept on destroy by default)",
        config=config,
    )
    control = ControlStack(
        app,
        "ControlStack",
        stack_name=config.stack_name("control"),
        description="On/off control plane of the SageMaker endpoint: desired state, schedules, idle stop",
        config=config,
    )
    hosting = HostingStack(
        app,
        "HostingStack",
        stack_name=config.stack_name("hosting"),
        description=f"SageMaker Model and EndpointConfig for {config.profile.description}",
        config=config,
    )
    hosting.add_stack_dependency(storage, "the model reads its weights from the storage stack's bucket")
    hosting.add_stack_dependency(control, "the endpoint lifecycle resource calls the control stack's function")
    api = ApiStack(
        app,
        "ApiStack",
        stack_name=config.stack_name("api"),
        description=f"Inference API (API Gateway, API keys, invoke function) for {config.profile.description}",
        config=config,
    )
    api.add_stack_dependency(hosting, "the API invokes the endpoint that the hosting stack's config describes")
    api.add_stack_dependency(control, "the admin routes call the control stack's admin function")

    # cdk-nag 3 runs as a policy validation plugin: findings are reported after synth, and any finding
    # without an acknowledgement fails it.
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app, verbose=True))
    return BloomApp(config, storage, hosting, api, control)
