"""Control stack: the on/off control plane of the endpoint and its dashboard.

Deployed before the hosting stack (whose lifecycle custom resource calls this stack's lifecycle function)
and destroyed after it. The endpoint itself belongs to no stack.
"""

from aws_cdk import CfnOutput, Stack
from constructs import Construct

from stacks.config import DeploymentConfig
from stacks.control_config import load_control_options
from stacks.control_dashboard import ControlDashboard
from stacks.control_plane import ControlPlane
from stacks.nag import acknowledge


class ControlStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, *, config: DeploymentConfig, **kwargs) -> None:
        super().__init__(scope, construct_id, **kwargs)

        self.options = load_control_options(config)
        self.control = ControlPlane(self, "ControlPlane", config=config, options=self.options)
        self.dashboard = ControlDashboard(self, "Dashboard", config=config)

        CfnOutput(self, "ControlTableName", value=self.control.table.table_name)
        CfnOutput(self, "NotificationTopicArn", value=self.control.topic.topic_arn)
        CfnOutput(self, "ReconcilerFunctionName", value=self.control.reconciler.function_name)
        CfnOutput(self, "DashboardName", value=self.dashboard.dashboard.dashboard_name)
        self._acknowledge_findings(config)

    def _acknowledge_findings(self, config: DeploymentConfig) -> None:
        control = self.control
        bucket = config.bucket_name_pattern.format(account="<AWS::AccountId>", region="<AWS::Region>")
        sagemaker = "arn:<AWS::Partition>:sagemaker:<AWS::Region>:<AWS::AccountId>"
        reasons = {
            f"Resource::{sagemaker}:endpoint-config/*": "CloudFormation generates the EndpointConfig names, so "
            "they cannot be listed at synth time. DescribeEndpointConfig and ListTags only read; "
            "DeleteEndpointConfig is limited by a condition to configs tagged with this deployment.",
            f"Resource::{sagemaker}:model/*": "CloudFormation generates the Model names. ListTags only reads; "
            "DeleteModel is limited by a condition to models tagged with this deployment.",
            "Resource::*": "ListEndpointConfigs, ListModels and cloudwatch:GetMetricStatistics have no "
            "resource-level permissions; PutMetricData is limited to the control plane's namespace by a condition.",
            "Resource::arn:<AWS::Partition>:cloudformation:<AWS::Region>:<AWS::AccountId>:stack/"
            f"{config.stack_name('hosting')}/*": "A stack ARN ends in the stack's generated id; the statement "
            "names the hosting stack and allows DescribeStacks only.",
            f"Resource::arn:<AWS::Partition>:s3:::{bucket}/{config.weights_prefix}*": "The weights check reads "
            "the manifest under the deployment's weights prefix, and only there.",
        }
        for function in (control.reconciler, control.lifecycle):
            for finding, reason in reasons.items():
                acknowledge(function.role, f"AwsSolutions::AwsSolutions-IAM5[{finding}]", reason)

        for function in (control.reconciler, control.lifecycle, control.admin):
            acknowledge(
                function.function,
                "AwsSolutions::AwsSolutions-L1",
                "All functions of this project share one runtime, pinned in stacks/python_function.py together "
                "with the Powertools layer build for that runtime; both move together.",
            )
