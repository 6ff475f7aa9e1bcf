"""Powertools Logger, Tracer and Metrics, created once per process and shared by every handler."""

from aws_lambda_powertools import Logger, Metrics, Tracer

from functions.contract.metric_names import NAMESPACE, SERVICE_NAME

logger = Logger(service=SERVICE_NAME)
tracer = Tracer(service=SERVICE_NAME)
metrics = Metrics(namespace=NAMESPACE, service=SERVICE_NAME)
