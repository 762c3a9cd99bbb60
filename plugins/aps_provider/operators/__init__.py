"""Operators: one module per APS service (OSS, Model Derivative)."""
