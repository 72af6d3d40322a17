"""Deployment checks: the Dockerfile and the Helm chart."""
