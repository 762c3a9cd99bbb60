"""What every APS operator, sensor and task shares: the `aps` connection id, the region and one cached hook.

Modelled on the Amazon provider's `AwsBaseHookMixin`: a class names its connection and region, and
`self.hook` builds the `APSHook` once, on first use (after templating, so a templated region counts). The
hook looks the connection up once too, so a sensor that pokes a hundred times reads it once.

    class MyOperator(APSBaseOperator):
        template_fields = aps_template_fields("bucket_key")

        def execute(self, context):
            with self.hook.get_client() as aps:
                ...
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from typing import Any

from airflow.sdk import BaseOperator, BaseSensorOperator

from aps_provider.hooks.aps import APSHook

#: Template fields every APS operator and sensor has.
APS_TEMPLATE_FIELDS = ("aps_conn_id", "region")


def aps_template_fields(*fields: str) -> tuple[str, ...]:
    """A class's own template fields followed by the shared ones."""
    return (*fields, *(name for name in APS_TEMPLATE_FIELDS if name not in fields))


class APSHookMixin:
    """Connection id, region and the hook built from them, once.

    :param aps_conn_id: The Airflow connection of type `aps` (client id and secret).
    :param region: APS region of the data; None: the connection's default region.
    """

    aps_hook_class: type[APSHook] = APSHook
    aps_conn_id: str
    region: str | None

    @cached_property
    def hook(self) -> APSHook:
        """The APS hook of this task (built once; it caches the connection lookup)."""
        return self.aps_hook_class(aps_conn_id=self.aps_conn_id, region=self.region)


class APSConnection(APSHookMixin):
    """The mixin on its own, for code that is not an operator (the ingest DAG's @task functions)."""

    def __init__(self, aps_conn_id: str = APSHook.default_conn_name, region: str | None = None) -> None:
        self.aps_conn_id = aps_conn_id
        self.region = region

    def __repr__(self) -> str:
        return f"APSConnection(aps_conn_id={self.aps_conn_id!r}, region={self.region!r})"


class APSBaseOperator(APSHookMixin, BaseOperator):
    """Base of the APS operators (see `APSHookMixin` for the parameters)."""

    template_fields: Sequence[str] = APS_TEMPLATE_FIELDS

    def __init__(
        self, *, aps_conn_id: str = APSHook.default_conn_name, region: str | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.aps_conn_id = aps_conn_id
        self.region = region


class APSBaseSensor(APSBaseOperator, BaseSensorOperator):
    """Base of the APS sensors: an APS operator that is also a sensor (`APSBaseOperator.__init__` passes
    the sensor's own arguments on to `BaseSensorOperator`)."""
