"""On/off control plane: the desired-state table, the reconciler and its triggers, notifications, lifecycle.

The control plane owns the SageMaker endpoint; CloudFormation does not, so stopping the endpoint never
drifts a stack. Other stacks reach the control plane's functions by their deterministic names, never
through exports: the hosting stack's lifecycle custom resource (``add_endpoint_lifecycle``) and the API
stack's admin routes (``add_admin_routes``). See ``lambda/control_plane/lifecycle.py`` for the deploy and
destroy ordering.
"""

import json

from aws_cdk import (
    Aws,
    CustomResource,
    Duration,
    RemovalPolicy,
    Stack,
    aws_apigateway as apigateway,
    aws_dynamodb as dynamodb,
    aws_events as events,
    aws_events_targets as events_targets,
    aws_iam as iam,
    aws_kms as kms,
    aws_lambda as lambda_,
    aws_scheduler as scheduler,
    aws_sns as sns,
    aws_sns_subscriptions as subscriptions,
    aws_ssm as ssm,
)
from constructs import Construct

from stacks.config import DeploymentConfig
from stacks.control_config import (
    ADMIN,
    LIFECYCLE,
    RECONCILE_EVERY_MINUTES,
    RECONCILER,
    ControlOptions,
    control_settings,
    function_name,
)
from stacks.model_bucket import model_bucket_name
from stacks.nag import acknowledge
from stacks.python_function import PythonFunction

from control_plane.settings import (  # noqa: E402 - stacks.control_config puts lambda/ on the path
    DEPLOYMENT_TAG,
    ENVIRONMENT_VARIABLE,
    METRICS_NAMESPACE,
    settings_parameter_name,
)

# The lifecycle resource may wait for an endpoint to leave Creating before it can delete it.
LIFECYCLE_SERVICE_TIMEOUT = Duration.hours(1)
LIFECYCLE_RESOURCE_TYPE = "Custom::BloomEndpointLifecycle"
# The admin function only writes the desired state or reads the status, and API Gateway waits at most 29 s.
ADMIN_FUNCTION_TIMEOUT = Duration.seconds(15)
ADMIN_INTEGRATION_TIMEOUT = Duration.seconds(20)
# SSM parameters of the hosting and storage stacks that the reconciler reads.
RECONCILER_PARAMETERS = ("endpoint-config-name", "model-bucket", "weights-prefix")


def function_arn(config: DeploymentConfig, role: str) -> str:
    return f"arn:{Aws.PARTITION}:lambda:{Aws.REGION}:{Aws.ACCOUNT_ID}:function:{function_name(config, role)}"


def _arn(service: str, resource: str) -> str:
    return f"arn:{Aws.PARTITION}:{service}:{Aws.REGION}:{Aws.ACCOUNT_ID}:{resource}"


class ControlPlane(Construct):
    """The control plane of one deployment; ``settings`` is what its functions and the CLI read."""

    def __init__(
        self, scope: Construct, construct_id: str, *, config: DeploymentConfig, options: ControlOptions
    ) -> None:
        super().__init__(scope, construct_id)
        self.config = config
        self.options = options

        self.topic = self._create_topic()
        self.settings = control_settings(config, options, self.topic.topic_arn)
        self.table = self._create_table()
        self.settings_parameter = ssm.StringParameter(
            self,
            "SettingsParameter",
            parameter_name=settings_parameter_name(config.ssm_prefix),
            string_value=self.settings.to_json(),
            description="Settings of the endpoint control plane, read by bloomctl",
        )

        self.reconciler = self._create_function(RECONCILER, "Moves the SageMaker endpoint toward its desired state",
                                                timeout=Duration.minutes(2))
        self.lifecycle = self._create_function(
            LIFECYCLE, "Deploy-time lifecycle of the SageMaker endpoint (CloudFormation custom resource)",
            timeout=Duration.minutes(15),
        )
        self.admin = self._create_function(ADMIN, "Admin routes: start, stop and state of the endpoint",
                                           timeout=ADMIN_FUNCTION_TIMEOUT)
        for function in (self.reconciler, self.lifecycle):
            self._grant_reconcile(function)
        self._grant_admin(self.admin)

        self._add_periodic_and_window_schedules()
        self._add_endpoint_state_rule()
        self.guard = self._add_guard()

    # Storage and notifications

    def _create_table(self) -> dynamodb.Table:
        return dynamodb.Table(
            self,
            "Table",
            table_name=self.settings.table_name,
            partition_key=dynamodb.Attribute(name="pk", type=dynamodb.AttributeType.STRING),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            encryption=dynamodb.TableEncryption.AWS_MANAGED,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            # The table contains only the current desired state and status, which mean nothing without the stack.
            removal_policy=RemovalPolicy.DESTROY,
        )

    def _create_topic(self) -> sns.Topic:
        topic = sns.Topic(
            self,
            "Topic",
            topic_name=f"{self.config.name_prefix}-endpoint-events",
            display_name=f"BLOOM endpoint {self.config.endpoint_name}",
            # The AWS managed key needs no key policy: only the control plane's functions publish here.
            master_key=kms.Alias.from_alias_name(self, "SnsKey", "alias/aws/sns"),
            enforce_ssl=True,
        )
        if self.options.notification_email:
            topic.add_subscription(subscriptions.EmailSubscription(self.options.notification_email))
        return topic

    # Functions and their permissions

    def _create_function(self, role: str, description: str, timeout: Duration) -> PythonFunction:
        handler = {
            RECONCILER: "control_plane.reconcile_handler.lambda_handler",
            LIFECYCLE: "control_plane.lifecycle_handler.lambda_handler",
            ADMIN: "control_plane.admin_handler.lambda_handler",
        }[role]
        return PythonFunction(
            self,
            {RECONCILER: "Reconciler", LIFECYCLE: "Lifecycle", ADMIN: "Admin"}[role],
            function_name=function_name(self.config, role),
            handler=handler,
            description=description,
            timeout=timeout,
            environment={
                ENVIRONMENT_VARIABLE: self.settings.to_json(),
                "POWERTOOLS_SERVICE_NAME": "bloom-control-plane",
            },
        )

    def _grant_state(self, function: PythonFunction) -> None:
        """Desired state, status and lease in the table, and reading the endpoint."""
        config = self.config
        self.table.grant_read_write_data(function.role)
        function.role.add_to_policy(
            iam.PolicyStatement(
                actions=["sagemaker:DescribeEndpoint"], resources=[_arn("sagemaker", f"endpoint/{config.endpoint_name}")]
            )
        )

    def _grant_reconcile(self, function: PythonFunction) -> None:
        config = self.config
        role = function.role
        self._grant_state(function)
        self.topic.grant_publish(role)
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["ssm:GetParameter"],
                resources=[_arn("ssm", f"parameter{config.ssm_prefix}/{name}") for name in RECONCILER_PARAMETERS],
            )
        )

        endpoint_arn = _arn("sagemaker", f"endpoint/{config.endpoint_name}")
        role.add_to_policy(
            iam.PolicyStatement(
                actions=[
                    "sagemaker:CreateEndpoint",
                    "sagemaker:UpdateEndpoint",
                    "sagemaker:DeleteEndpoint",
                    "sagemaker:AddTags",
                ],
                resources=[endpoint_arn],
            )
        )
        # Config and model names are generated by CloudFormation, so they are matched by the deployment tag.
        config_arns = _arn("sagemaker", "endpoint-config/*")
        model_arns = _arn("sagemaker", "model/*")
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["sagemaker:DescribeEndpointConfig", "sagemaker:ListTags"],
                resources=[config_arns, model_arns],
            )
        )
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["sagemaker:DeleteEndpointConfig", "sagemaker:DeleteModel"],
                resources=[config_arns, model_arns],
                conditions={"StringEquals": {f"aws:ResourceTag/{DEPLOYMENT_TAG}": config.name_prefix}},
            )
        )
        # List operations, CloudWatch reads and PutMetricData have no resource-level permissions.
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["sagemaker:ListEndpointConfigs", "sagemaker:ListModels", "cloudwatch:GetMetricStatistics"],
                resources=["*"],
            )
        )
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["cloudwatch:PutMetricData"],
                resources=["*"],
                conditions={"StringEquals": {"cloudwatch:namespace": METRICS_NAMESPACE}},
            )
        )
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["cloudformation:DescribeStacks"],
                resources=[_arn("cloudformation", f"stack/{config.stack_name('hosting')}/*")],
            )
        )

        # The weights check lists the weights prefix and reads the manifest in it.
        bucket_arn = f"arn:{Aws.PARTITION}:s3:::{model_bucket_name(config)}"
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["s3:ListBucket"],
                resources=[bucket_arn],
                conditions={"StringLike": {"s3:prefix": [f"{config.weights_prefix}*"]}},
            )
        )
        role.add_to_policy(
            iam.PolicyStatement(actions=["s3:GetObject"], resources=[f"{bucket_arn}/{config.weights_prefix}*"])
        )

        # The lifecycle function hands a long Delete over to its next invocation.
        role.add_to_policy(
            iam.PolicyStatement(actions=["lambda:InvokeFunction"], resources=[function_arn(config, LIFECYCLE)])
        )

    def _grant_admin(self, function: PythonFunction) -> None:
        self._grant_state(function)
        function.role.add_to_policy(
            iam.PolicyStatement(actions=["lambda:InvokeFunction"], resources=[function_arn(self.config, RECONCILER)])
        )

    # Triggers

    def _add_periodic_and_window_schedules(self) -> None:
        """Add the periodic reconcile, and one start and one stop schedule per configured window."""
        config = self.config
        group = scheduler.CfnScheduleGroup(self, "ScheduleGroup", name=f"{config.name_prefix}-control")
        role = iam.Role(
            self,
            "SchedulerRole",
            role_name=f"{config.name_prefix}-control-scheduler-role",
            assumed_by=iam.ServicePrincipal(
                "scheduler.amazonaws.com", conditions={"StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID}}
            ),
            description="Lets EventBridge Scheduler invoke the reconciler of the endpoint control plane",
        )
        role.add_to_policy(
            iam.PolicyStatement(actions=["lambda:InvokeFunction"], resources=[self.reconciler.function.function_arn])
        )

        def add(construct_id: str, name: str, expression: str, timezone: str, payload: dict, description: str):
            schedule = scheduler.CfnSchedule(
                self,
                construct_id,
                name=name,
                group_name=group.name,
                description=description,
                schedule_expression=expression,
                schedule_expression_timezone=timezone,
                flexible_time_window=scheduler.CfnSchedule.FlexibleTimeWindowProperty(mode="OFF"),
                state="ENABLED",
                target=scheduler.CfnSchedule.TargetProperty(
                    arn=self.reconciler.function.function_arn,
                    role_arn=role.role_arn,
                    input=json.dumps(payload),
                    retry_policy=scheduler.CfnSchedule.RetryPolicyProperty(
                        maximum_event_age_in_seconds=3600, maximum_retry_attempts=5
                    ),
                ),
            )
            schedule.add_resource_dependency(group)
            # A schedule can fire as soon as it exists, so the role's permission must exist first.
            schedule.node.add_dependency(role.node.find_child("DefaultPolicy"))
            return schedule

        add(
            "PeriodicReconcile",
            f"{config.name_prefix}-reconcile",
            f"rate({RECONCILE_EVERY_MINUTES} minutes)",
            "UTC",
            {"trigger": "periodic"},
            "Periodic reconcile: evaluates the windows, heals missed events, checks for idleness",
        )
        self.window_schedules = {}
        schedule = self.options.schedule
        if schedule is None:
            return
        for window in schedule.windows:
            # IDs and names come from the window name, so reordering the windows replaces nothing.
            suffix = "".join(part.capitalize() for part in window.name.split("-"))
            for edge, expression in (("start", window.start_cron()), ("stop", window.stop_cron())):
                payload = {"trigger": "schedule", "window": window.name, "action": edge,
                           "scheduled_time": "<aws.scheduler.scheduled-time>"}
                self.window_schedules[(window.name, edge)] = add(
                    f"Window{suffix}{edge.capitalize()}",
                    f"{config.name_prefix}-{window.name}-{edge}",
                    expression,
                    schedule.timezone,
                    payload,
                    f"{edge.capitalize()} of window {window.name} ({window.describe()} {schedule.timezone})",
                )

    def _add_endpoint_state_rule(self) -> None:
        """Run the reconciler on every endpoint state change, so a pending stop is carried out at once."""
        events.Rule(
            self,
            "EndpointStateRule",
            rule_name=f"{self.config.name_prefix}-endpoint-state",
            description=f"State changes of the SageMaker endpoint {self.config.endpoint_name}",
            event_pattern=events.EventPattern(
                source=["aws.sagemaker"],
                detail_type=["SageMaker Endpoint State Change"],
                detail={"EndpointName": [self.config.endpoint_name]},
            ),
            targets=[events_targets.LambdaFunction(self.reconciler.function, retry_attempts=2)],
        )

    def _add_guard(self) -> CustomResource:
        """Delete the endpoint when this stack is deleted, in case the hosting stack is still there."""
        guard = CustomResource(
            self,
            "EndpointGuard",
            service_token=self.lifecycle.function.function_arn,
            resource_type=LIFECYCLE_RESOURCE_TYPE,
            properties={"Scope": "control", "EndpointName": self.config.endpoint_name},
            service_timeout=LIFECYCLE_SERVICE_TIMEOUT,
        )
        # Deleted before what its Delete needs: the table, the settings and the function's permissions.
        guard.node.add_dependency(self.table, self.settings_parameter, self.lifecycle.role)
        return guard


def add_endpoint_lifecycle(stack: Stack, config: DeploymentConfig, model, endpoint_config) -> CustomResource:
    """Add the lifecycle custom resource to the hosting stack (see ``lambda/control_plane/lifecycle.py``).

    The provider is the control stack's lifecycle function, found by name; the hosting stack must depend on
    the control stack. The resource refers to the config and model and depends on the stack's SSM
    parameters, so CloudFormation runs it after they change and deletes it (and so the endpoint) first.
    """
    resource = CustomResource(
        stack,
        "EndpointLifecycle",
        service_token=function_arn(config, LIFECYCLE),
        resource_type=LIFECYCLE_RESOURCE_TYPE,
        properties={
            "Scope": "hosting",
            "EndpointName": config.endpoint_name,
            "EndpointConfigName": endpoint_config.attr_endpoint_config_name,
            "ModelName": model.attr_model_name,
        },
        service_timeout=LIFECYCLE_SERVICE_TIMEOUT,
    )
    for child in stack.node.children:
        if isinstance(child, ssm.StringParameter):
            resource.node.add_dependency(child)
    return resource


def add_admin_routes(rest_api: apigateway.RestApi, config: DeploymentConfig) -> dict[str, apigateway.Method]:
    """Add POST /admin/start, POST /admin/stop and GET /admin/state, authorized by IAM (SigV4), not API keys.

    The admin function lives in the control stack and is found by its name; the API stack must depend on
    the control stack. Callers need execute-api:Invoke on these routes.
    """
    scope = rest_api
    admin_function = lambda_.Function.from_function_attributes(
        scope, "ControlAdminFunction", function_arn=function_arn(config, ADMIN), same_environment=True
    )
    integration = apigateway.LambdaIntegration(
        admin_function, proxy=True, allow_test_invoke=False, timeout=ADMIN_INTEGRATION_TIMEOUT
    )
    admin = rest_api.root.add_resource("admin")
    acknowledge(
        admin,
        "AwsSolutions-COG4",
        "The admin routes are for operators with AWS credentials: they use IAM authorization (SigV4), "
        "checked by API Gateway, instead of a Cognito user pool.",
    )
    methods = {}
    for path, http_method in (("start", "POST"), ("stop", "POST"), ("state", "GET")):
        methods[f"{http_method} /admin/{path}"] = admin.add_resource(path).add_method(
            http_method,
            integration,
            authorization_type=apigateway.AuthorizationType.IAM,
            api_key_required=False,
            operation_name=f"Admin{path.capitalize()}",
        )
    return methods
