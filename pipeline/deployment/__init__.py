"""Deployment: the steps that change an endpoint, each recorded with its audit event (``steps``), and a
bake's intervals and their analysis on live traffic (``rollout``)."""
from pipeline.deployment.steps import Deployment, DeploymentPipeline

__all__ = ["Deployment", "DeploymentPipeline"]
