"""Prefect blocks that deployments load by name (the ``TransferConfig`` block; secrets as ``SecretStr``)."""
