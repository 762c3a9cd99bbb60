"""APSBaseTrigger: connection id, region, the hook built from them, and a serialize() read off __init__.

Modelled on the Amazon provider's `AwsBaseWaiterTrigger`. A trigger is rebuilt on the triggerer from the
kwargs `serialize()` returns, so those must be exactly `__init__`'s parameters, as primitives (a
`WaitPolicy` is stored as its dict, which the triggers' `__init__` accepts). Here
`serialize()` lists the parameters of the concrete class's `__init__` (and of the parents' it passes
`**kwargs` on to) and reads the attribute of the same name for each: a new parameter is serialized
without anyone remembering to, and one stored under another name fails loudly (AttributeError) the first
time the trigger is serialized, i.e. in any test.
"""

from __future__ import annotations

import inspect
from typing import Any

from airflow.triggers.base import BaseTrigger

from aps_client.wait_policy import WaitPolicy
from aps_provider.base import APSHookMixin
from aps_provider.hooks.aps import APSHook

_SERIALIZED_KINDS = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)


class APSBaseTrigger(APSHookMixin, BaseTrigger):
    """Base of the APS triggers. Subclasses store every `__init__` parameter under its own name.

    :param aps_conn_id: The `aps` connection.
    :param region: APS region of the data; None: the connection's default region.
    """

    def __init__(self, *, aps_conn_id: str = APSHook.default_conn_name, region: str | None = None) -> None:
        super().__init__()
        self.aps_conn_id = aps_conn_id
        self.region = region

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return f"{type(self).__module__}.{type(self).__qualname__}", {
            name: _primitive(getattr(self, name)) for name in _init_parameters(type(self))
        }


def _primitive(value: Any) -> Any:
    """A parameter as the triggerer stores it: a WaitPolicy as its dict (its __init__ takes that back)."""
    return value.as_primitives() if isinstance(value, WaitPolicy) else value


def _init_parameters(trigger_class: type[APSBaseTrigger]) -> list[str]:
    """The named parameters `trigger_class(...)` accepts: its `__init__`'s, and, as long as an `__init__`
    passes `**kwargs` on, those of the parent `__init__` down to APSBaseTrigger's."""
    names: list[str] = []
    for cls in trigger_class.__mro__:
        init = cls.__dict__.get("__init__")
        if init is None:
            continue
        parameters = inspect.signature(init).parameters.values()
        names += [p.name for p in parameters
                  if p.kind in _SERIALIZED_KINDS and p.name != "self" and p.name not in names]
        if cls is APSBaseTrigger or all(p.kind is not inspect.Parameter.VAR_KEYWORD for p in parameters):
            return names
    return names
