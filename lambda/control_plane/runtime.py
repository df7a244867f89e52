"""Shared set-up of the control plane's Lambda handlers: JSON logs and a reconciler built from the environment."""

import logging

from aws_lambda_powertools import Logger
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers

from control_plane import cleanup, idle, lifecycle, notify, reconciler, store, usage, weights  # noqa: F401
from control_plane.clients import AwsClients
from control_plane.reconciler import Reconciler
from control_plane.settings import ControlSettings

SERVICE = "bloom-control-plane"


def configure_logging() -> Logger:
    """Return the Powertools logger, with the control_plane modules' loggers writing through it."""
    logger = Logger(service=SERVICE)
    # The modules imported above log through the standard library; they must exist before this call.
    modules = {name for name in logging.root.manager.loggerDict if name.startswith("control_plane.")}
    copy_config_to_registered_loggers(source_logger=logger, include=modules)
    for noisy in ("boto3", "botocore", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return logger


def build_reconciler(**options) -> Reconciler:
    return Reconciler(ControlSettings.from_environment(), AwsClients(), **options)
