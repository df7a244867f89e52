"""The on/off control plane of the SageMaker endpoint: desired state, reconciler, schedules, idle stop.

Every start or stop (schedule, CLI, admin route, idle check, CloudFormation) only writes the desired state;
``reconciler.Reconciler`` moves the endpoint toward it and is safe to run again at any time. The Lambda
handlers (``*_handler`` modules) are thin wrappers. The other modules use only boto3 and the standard
library, so that the CLI runs the same code locally and the CDK app reads the schedule parser at synth time.
"""
