"""The emulator's HTTP routes: one module per APS service (auth, OSS, Model Derivative, webhooks)."""
