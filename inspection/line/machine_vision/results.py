"""The VisionSystem's results: each part's ``ResultDataType`` (the last ``KEEP_RESULTS``, for
``GetResultById``) announced by a ``ResultReadyEventType`` event. ``ResultContent`` holds signed
text only: the stored ``inspection.result/1`` payload, or for a part without one its answer
with the job's ids (``JOB_ANSWER_SCHEMA``) signed as a record, then each view's payload. A part
that overran is announced at once (Processing, or IsPartial) and again under the same ResultId
when stored.
"""

from __future__ import annotations

import json
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from asyncua import ua
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from inspection.core.signing import sign_record
from inspection.line.handshake import Answer, timed_out
from inspection.line.machine_vision.access import authorize
from inspection.line.machine_vision.model import EVENT_FIELDS, ok, result_state
from inspection.line.machine_vision.space import VisionSpace
from inspection.line.payload import SIGNED_RECORD
from inspection.store.outbox import Outbox
from inspection.store.store import Store

KEEP_RESULTS = 256
JOB_ANSWER_SCHEMA = "inspection.job-answer/1"
"""A part's answer without a stored row (an error, a timeout notice, several views): the fields
of ``inspection.answer/1`` (its ``request_id`` the job's MeasId) and the job's ``job_id``,
``part_id``, ``recipe_id`` and ``product_id``, so the signature covers which part it is."""


@dataclass(frozen=True)
class JobIds:
    """What a job was started with: the station's JobId and the MES's RecipeId, ProductId
    and PartId (empty: not given; recipe and product then the prepared recipe's)."""

    job: str
    recipe: str
    product: str
    part: str = ""


class VisionResults:
    """The last ``KEEP_RESULTS`` results, by ResultId; ``content`` reads a part's payload from
    ``store`` as the station signed and stored it (``payload.SIGNED_RECORD``) and signs the
    rest with ``key`` (None: link security off)."""

    def __init__(
        self, space: VisionSpace, store: Store, station_id: str, key: Ed25519PrivateKey | None
    ) -> None:
        self.space, self.outbox, self.station_id, self.key = space, Outbox(store), station_id, key
        self._kept: OrderedDict[str, ua.ResultDataType] = OrderedDict()

    def content(self, answer: Answer, ids: JobIds) -> list[str]:
        """The part's ResultContent (in a worker thread: it reads the store). Without a stored
        row: ``[0]`` the answer with the job's ids (``JOB_ANSWER_SCHEMA``) signed as a record."""
        if answer.inspection_id is not None:
            return [self.outbox.payload(answer.inspection_id, SIGNED_RECORD)]
        record = json.loads(answer.to_json()) | {
            "schema": JOB_ANSWER_SCHEMA, "job_id": ids.job, "part_id": ids.part,
            "recipe_id": ids.recipe, "product_id": ids.product,
        }  # fmt: skip
        signed = record if self.key is None else sign_record(record, self.key)
        views = [v.inspection_id for v in answer.views if v.inspection_id is not None]
        return [json.dumps(signed, sort_keys=True, separators=(",", ":"))] + [
            self.outbox.payload(inspection_id, SIGNED_RECORD) for inspection_id in views
        ]

    async def report(
        self, answer: Answer, ids: JobIds, content: list[str], result_id: str | None = None
    ) -> str:
        """Keep the part's result and fire ``ResultReadyEventType`` (and, for a part without
        a verdict, ``ErrorEventType``); its ResultId (``result_id``: a timed-out part's)."""
        result = self._result(answer, ids, content, result_id)
        self._kept[result.ResultId.Id] = result
        self._kept.move_to_end(result.ResultId.Id)
        while len(self._kept) > KEEP_RESULTS:
            self._kept.popitem(last=False)
        events = self.space.events
        for name, kind in EVENT_FIELDS.items():  # typed: the type's properties carry no value
            events.event.add_property(name, getattr(result, name), kind)
        await events.trigger(message=f"result {result.ResultId.Id}: {answer.verdict or 'error'}")
        if answer.verdict is None:
            await self.space.errors.trigger(
                message=f"job {ids.job} part {answer.request_id}: error {answer.error_code} "
                f"{answer.message}"
            )
        return result.ResultId.Id

    def _result(
        self, answer: Answer, ids: JobIds, content: list[str], result_id: str | None
    ) -> ua.ResultDataType:
        ended = datetime.now(timezone.utc)
        timings = answer.timings_ms
        return ua.ResultDataType(
            ResultId=ua.ResultIdDataType(Id=result_id or answer.inspection_id or uuid.uuid4().hex),
            IsPartial=timed_out(answer) and answer.verdict is not None,
            IsSimulated=False,
            ResultState=result_state(answer),
            MeasId=ua.MeasIdDataType(Id=answer.request_id),
            PartId=ua.PartIdDataType(Id=ids.part),
            ExternalRecipeId=ua.RecipeIdExternalDataType(Id=ids.recipe),
            InternalRecipeId=ua.RecipeIdInternalDataType(Id=answer.product or ids.recipe),
            ProductId=ua.ProductIdDataType(Id=ids.product),
            InternalConfigurationId=ua.ConfigurationIdDataType(Id=self.station_id),
            JobId=ua.JobIdDataType(Id=ids.job),
            CreationTime=ended,
            ProcessingTimes=ua.ProcessingTimesDataType(
                StartTime=ended - timedelta(milliseconds=timings.get("handled_ms", 0.0)),
                EndTime=ended,
                AcquisitionDuration=timings.get("capture_ms", 0.0),
                ProcessingDuration=timings.get("inference_ms", 0.0),
            ),
            ResultContent=[ua.Variant(text, ua.VariantType.String) for text in content],
        )

    @authorize("observer", audited=False)
    async def get_result_by_id(
        self, _parent: ua.NodeId, result_id: ua.Variant, _timeout: Any
    ) -> Any:
        result = self._kept.get(getattr(result_id.Value, "Id", ""))
        if result is None:
            return ua.StatusCode(ua.StatusCodes.BadNotFound)
        return ok(ua.Variant(0, ua.VariantType.UInt32), ua.Variant(result))
