"""WaitAndLoadOperator: a batch's translations waited on (deferrable), then its models loaded, in one task.

A deferred task is resumed in a new task process on a worker (a DAG parse and its imports) only to hand
the trigger's event to the sensor. This operator uses that process to load the batch, instead of starting
another task for it: the wait is `APSTranslationsSensor`'s own (deferred to the triggerer, no worker slot
held while APS works; poked in poke mode), and whenever the sensor returns its verdicts the batch is settled
(`aps_ingest_tasks.tasks.load_batch`). A wait that fails for good (a trigger that broke or timed out, an
unreadable event, the last try) still settles every model on what APS says, then fails the task, as the
separate load task with `trigger_rule="all_done"` did. A retry looks at the manifests again (finished
translations cost no deferral) and loads what is still to load; nothing is sent to APS twice.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk.exceptions import AirflowFailException, AirflowRescheduleException, AirflowSensorTimeout

from aps_provider.sensors.derivative import APSTranslationsSensor

if TYPE_CHECKING:
    from airflow.sdk import Context


class WaitAndLoadOperator(APSTranslationsSensor):
    """Wait for the translations of a batch's submitted models, then settle every model of the batch.

    :param models: The batch's models (templated), as `plan_models` returned them: every one is settled,
        uploaded or not.
    (`urns` and the wait's parameters are `APSTranslationsSensor`'s; its `fail_on_unsuccessful` is False:
    a failed translation is an answer the load records.)
    """

    template_fields: Sequence[str] = (*APSTranslationsSensor.template_fields, "models")
    ui_color = "#9fd3a8"

    def __init__(self, *, models: Any, **kwargs: Any) -> None:
        super().__init__(fail_on_unsuccessful=False, **kwargs)
        self.models = models

    def execute(self, context: Context) -> Any:
        wait = super().execute  # returns the verdicts, or defers (TaskDeferred is no Exception)
        return self._load_after(context, lambda: wait(context))

    def resume_execution(self, next_method: str, next_kwargs: dict[str, Any] | None, context: Context) -> Any:
        resume = super().resume_execution  # the trigger's event, or its failure (`__fail__`), lands here
        return self._load_after(context, lambda: resume(next_method, next_kwargs, context))

    def _load(self, verdicts: Mapping[str, Any] | None, *, last_attempt: bool) -> list[dict[str, Any]]:
        from aps_ingest_tasks.tasks import load_batch

        return load_batch(self.models, verdicts, last_attempt=last_attempt)

    def _load_after(self, context: Context, wait: Callable[[], Any]) -> list[dict[str, Any]]:
        ti = context["ti"]
        last_attempt = ti.try_number > ti.max_tries
        try:
            verdicts = wait()
        except AirflowRescheduleException:  # reschedule mode: the wait goes on later
            raise
        except Exception as exc:
            if not (last_attempt or isinstance(exc, AirflowFailException | AirflowSensorTimeout)):
                raise  # a retry waits again
            self.log.error("The wait failed for good (%s: %s): settling each model on what APS says now",
                           type(exc).__name__, exc)
            try:
                self._load(None, last_attempt=True)
            except Exception as settling:  # the wait's own error is the one to report
                self.log.error("Settling the batch failed too: %s: %s", type(settling).__name__, settling)
            raise
        finished = sum(1 for verdict in verdicts.values() if verdict.get("status") == "success")
        self.log.info("The wait ended: %d of %d translations succeeded; loading the batch's %d models",
                      finished, len(verdicts), len(self.models))
        return self._load(verdicts, last_attempt=last_attempt)
