"""CloudWatch dashboard of the endpoint: running or not, traffic, latency, errors, GPUs, hours and cost.

The reconciler publishes the running flag, the hours this month and the estimated cost on every run. The
other graphs show SageMaker's own endpoint metrics. SageMaker publishes nothing while the endpoint
is stopped, so gaps in those graphs are stopped periods.
"""

from aws_cdk import Duration, aws_cloudwatch as cloudwatch
from constructs import Construct

from stacks.config import DeploymentConfig
from stacks.control_config import RECONCILE_EVERY_MINUTES

from control_plane.settings import METRICS_NAMESPACE  # noqa: E402 - stacks.control_config puts lambda/ on the path

# The production variant that the hosting stack's EndpointConfig defines.
VARIANT_NAME = "AllTraffic"
WIDGET_WIDTH = 12
WIDGET_HEIGHT = 6


class ControlDashboard(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, config: DeploymentConfig) -> None:
        super().__init__(scope, construct_id)
        self.config = config

        self.dashboard = cloudwatch.Dashboard(
            self,
            "Dashboard",
            dashboard_name=f"{config.name_prefix}-endpoint",
            default_interval=Duration.days(1),
        )
        self.dashboard.add_widgets(*self._usage_widgets())
        self.dashboard.add_widgets(self._running_graph(), self._invocations_graph())
        self.dashboard.add_widgets(self._latency_graph(), self._errors_graph())
        self.dashboard.add_widgets(self._gpu_graph())

    def _control_metric(self, name: str, label: str) -> cloudwatch.Metric:
        return cloudwatch.Metric(
            namespace=METRICS_NAMESPACE,
            metric_name=name,
            dimensions_map={"Deployment": self.config.name_prefix},
            statistic="Maximum",
            period=Duration.minutes(RECONCILE_EVERY_MINUTES),
            label=label,
        )

    def _endpoint_metric(self, name: str, statistic: str, label: str, namespace: str = "AWS/SageMaker"):
        return cloudwatch.Metric(
            namespace=namespace,
            metric_name=name,
            dimensions_map={"EndpointName": self.config.endpoint_name, "VariantName": VARIANT_NAME},
            statistic=statistic,
            period=Duration.minutes(1),
            label=label,
        )

    def _usage_widgets(self) -> list[cloudwatch.IWidget]:
        return [
            cloudwatch.SingleValueWidget(
                title="Endpoint running now (1 = yes)",
                metrics=[self._control_metric("EndpointRunning", "Running")],
                width=8,
                height=4,
            ),
            cloudwatch.SingleValueWidget(
                title="Hours running this month",
                metrics=[self._control_metric("HoursRunningThisMonth", "Hours")],
                width=8,
                height=4,
            ),
            cloudwatch.SingleValueWidget(
                title="Estimated cost this month (USD, on-demand price of the profile)",
                metrics=[self._control_metric("EstimatedCostThisMonthUsd", "USD")],
                width=8,
                height=4,
            ),
        ]

    def _running_graph(self) -> cloudwatch.GraphWidget:
        return cloudwatch.GraphWidget(
            title="Endpoint running (1) or stopped (0)",
            left=[self._control_metric("EndpointRunning", "Running")],
            left_y_axis=cloudwatch.YAxisProps(min=0, max=1),
            width=WIDGET_WIDTH,
            height=WIDGET_HEIGHT,
        )

    def _invocations_graph(self) -> cloudwatch.GraphWidget:
        return cloudwatch.GraphWidget(
            title="Invocations per minute",
            left=[self._endpoint_metric("Invocations", "Sum", "Invocations")],
            width=WIDGET_WIDTH,
            height=WIDGET_HEIGHT,
        )

    def _latency_graph(self) -> cloudwatch.GraphWidget:
        return cloudwatch.GraphWidget(
            title="Latency (microseconds)",
            left=[
                self._endpoint_metric("ModelLatency", "p50", "Model latency p50"),
                self._endpoint_metric("ModelLatency", "p90", "Model latency p90"),
                self._endpoint_metric("OverheadLatency", "Average", "Overhead latency average"),
            ],
            width=WIDGET_WIDTH,
            height=WIDGET_HEIGHT,
        )

    def _errors_graph(self) -> cloudwatch.GraphWidget:
        return cloudwatch.GraphWidget(
            title="Invocation errors per minute",
            left=[
                self._endpoint_metric("Invocation4XXErrors", "Sum", "4xx"),
                self._endpoint_metric("Invocation5XXErrors", "Sum", "5xx"),
            ],
            width=WIDGET_WIDTH,
            height=WIDGET_HEIGHT,
        )

    def _gpu_graph(self) -> cloudwatch.GraphWidget:
        instance_namespace = "/aws/sagemaker/Endpoints"
        return cloudwatch.GraphWidget(
            title="GPU utilization and GPU memory (%, summed over the instance's GPUs)",
            left=[
                self._endpoint_metric("GPUUtilization", "Average", "GPU utilization", instance_namespace),
                self._endpoint_metric("GPUMemoryUtilization", "Average", "GPU memory", instance_namespace),
            ],
            width=WIDGET_WIDTH * 2,
            height=WIDGET_HEIGHT,
        )
