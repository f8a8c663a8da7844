"""The VisionSystem's result access: each part's ``ResultDataType`` (kept while among the last
``KEEP_RESULTS``, returned by ``ResultManagement.GetResultById``) announced by a
``ResultReadyEventType`` event. ``ResultContent`` holds one string: the signed
``inspection.result/1`` payload (verdict, score, regions, bundle id, inspection id, signature),
or for a part without a verdict the ``inspection.answer/1`` with its error code."""

from __future__ import annotations

import uuid
from collections import OrderedDict
from datetime import datetime, timezone
from typing import Any

from asyncua import ua

from inspection.line.handshake import Answer
from inspection.line.machine_vision.access import authorize
from inspection.line.machine_vision.model import EVENT_FIELDS, ok, result_state
from inspection.line.machine_vision.space import VisionSpace
from inspection.line.payload import SIGNED_RECORD
from inspection.store.outbox import Outbox
from inspection.store.store import Store

KEEP_RESULTS = 256


class VisionResults:
    """The last ``KEEP_RESULTS`` results, by ResultId; ``content`` reads a part's payload from
    ``store`` as the station signed and stored it (``payload.SIGNED_RECORD``)."""

    def __init__(self, space: VisionSpace, store: Store, station_id: str) -> None:
        self.space, self.outbox, self.station_id = space, Outbox(store), station_id
        self._kept: OrderedDict[str, ua.ResultDataType] = OrderedDict()

    def content(self, answer: Answer) -> str:
        """The part's ResultContent (in a worker thread: it reads the store)."""
        if answer.inspection_id is None:
            return answer.to_json()
        return self.outbox.payload(answer.inspection_id, SIGNED_RECORD)

    async def report(self, answer: Answer, job: str, content: str) -> None:
        """Keep the part's result and fire ``ResultReadyEventType`` (and, for a part without
        a verdict, ``ErrorEventType``)."""
        result = ua.ResultDataType(
            ResultId=ua.ResultIdDataType(Id=answer.inspection_id or uuid.uuid4().hex),
            IsPartial=False,
            ResultState=result_state(answer),
            MeasId=ua.MeasIdDataType(Id=answer.request_id),
            ExternalRecipeId=ua.RecipeIdExternalDataType(Id=answer.product or ""),
            InternalRecipeId=ua.RecipeIdInternalDataType(Id=answer.product or ""),
            InternalConfigurationId=ua.ConfigurationIdDataType(Id=self.station_id),
            JobId=ua.JobIdDataType(Id=job),
            CreationTime=datetime.now(timezone.utc),
            ResultContent=[ua.Variant(content, ua.VariantType.String)],
        )
        self._kept[result.ResultId.Id] = result
        while len(self._kept) > KEEP_RESULTS:
            self._kept.popitem(last=False)
        events = self.space.events
        for name, kind in EVENT_FIELDS.items():  # typed: the type's properties carry no value
            events.event.add_property(name, getattr(result, name), kind)
        await events.trigger(message=f"result {result.ResultId.Id}: {answer.verdict or 'error'}")
        if answer.verdict is None:
            await self.space.errors.trigger(
                message=f"job {job} part {answer.request_id}: error {answer.error_code} "
                f"{answer.message}"
            )

    @authorize("observer")
    async def get_result_by_id(
        self, _parent: ua.NodeId, result_id: ua.Variant, _timeout: Any
    ) -> Any:
        result = self._kept.get(getattr(result_id.Value, "Id", ""))
        if result is None:
            return ua.StatusCode(ua.StatusCodes.BadNotFound)
        return ok(ua.Variant(0, ua.VariantType.UInt32), ua.Variant(result))
