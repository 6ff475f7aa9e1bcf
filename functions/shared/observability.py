"""Powertools Logger, Tracer and Metrics, created once per process and shared by every handler."""

from aws_lambda_powertools import Logger, Metrics, Tracer

SERVICE_NAME = "relay"

logger = Logger(service=SERVICE_NAME)
tracer = Tracer(service=SERVICE_NAME)
metrics = Metrics(namespace="Relay", service=SERVICE_NAME)
