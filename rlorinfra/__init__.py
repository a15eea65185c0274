"""rlorinfra: Terraform for Fireworks RLOR trainer jobs."""

__version__ = "0.1.0"
