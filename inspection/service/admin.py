"""Write APIs for people: review labels (reviewer), thresholds and live bundles (admin).

Every action is recorded with the identity of the token that made it: review labels in the
store's append-only ``reviews`` table, threshold, promotion and rollback in the registry's
event log. Messages never contain local paths.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, ParamSpec, TypeVar

from fastapi import Depends, FastAPI
from pydantic import BaseModel, Field

from inspection.core.errors import BundleError, RegistryError
from inspection.service.auth import ADMINS, REVIEWERS, require
from inspection.service.errors import RequestError
from inspection.service.station import Station
from inspection.store.forward import CENTRAL_REVIEWS
from inspection.store.models import REVIEW_LABELS
from inspection.store.tokens import Identity

Reviewer = Annotated[Identity, Depends(require(*REVIEWERS, action="labelling results"))]
Admin = Annotated[Identity, Depends(require(*ADMINS, action="changing models or thresholds"))]
_TEXT = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*$"  # no NUL or control characters but tab/newline
P = ParamSpec("P")
T = TypeVar("T")


class ReviewIn(BaseModel):
    label: str = Field(pattern="^(" + "|".join(REVIEW_LABELS) + ")$")
    defect_type: str | None = Field(default=None, max_length=64, pattern=_TEXT)
    note: str | None = Field(default=None, max_length=2000, pattern=_TEXT)


class ThresholdIn(BaseModel):
    value: float = Field(gt=0.0, lt=1.0)
    reason: str = Field(min_length=1, max_length=500, pattern=_TEXT)


class PromoteIn(BaseModel):
    bundle_id: str = Field(min_length=1, max_length=128)
    reason: str = Field(min_length=1, max_length=500, pattern=_TEXT)


class RollbackIn(BaseModel):
    reason: str = Field(min_length=1, max_length=500, pattern=_TEXT)


def add_admin_routes(app: FastAPI, station: Station) -> None:
    registry = station.models.registry

    def served(product: str) -> str:
        if product not in station.config.core.products:
            raise RequestError(404, f"product {product[:64]!r} is not served here")
        return product

    @app.post("/v1/inspections/{inspection_id}/review", tags=["review"])
    def review(inspection_id: str, body: ReviewIn, identity: Reviewer) -> dict[str, Any]:
        """Label a result as the token's identity (audited), sent on to the central store by a
        forwarding station; an unknown id is a 404."""
        row = station.store.add_review(
            inspection_id,
            label=body.label,
            reviewer=identity.name,
            defect_type=body.defect_type,
            note=body.note,
            outbox=(CENTRAL_REVIEWS,) if station.config.core.central else (),
        )
        return {"inspection_id": inspection_id, "label": row.label, "reviewer": row.reviewer}

    @app.post("/v1/products/{product}/threshold", tags=["admin"])
    def set_threshold(product: str, body: ThresholdIn, identity: Admin) -> dict[str, Any]:
        """Append a threshold version for the live bundle; stations pick it up on their poll."""
        live = registry.journal.live(served(product))
        version = _registry_call(
            registry.journal.set_threshold,
            product,
            body.value,
            actor=identity.name,
            reason=body.reason,
            bundle_id=live.bundle_id if live else None,
        )
        return {"product": product, "version": version.number, "value": version.value}

    @app.post("/v1/products/{product}/promote", tags=["admin"])
    def promote(product: str, body: PromoteIn, identity: Admin) -> dict[str, Any]:
        """Make a registered bundle live (its signature and files are verified first)."""
        state = _registry_call(
            registry.journal.promote,
            served(product),
            body.bundle_id,
            actor=identity.name,
            reason=body.reason,
        )
        return {"product": product, "bundle_id": state.bundle_id, "actor": state.actor}

    @app.post("/v1/products/{product}/rollback", tags=["admin"])
    def rollback(product: str, body: RollbackIn, identity: Admin) -> dict[str, Any]:
        """Go back to the previously live bundle."""
        state = _registry_call(
            registry.journal.rollback, served(product), actor=identity.name, reason=body.reason
        )
        return {"product": product, "bundle_id": state.bundle_id, "actor": state.actor}

    def _registry_call(function: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return function(*args, **kwargs)
        except (RegistryError, BundleError) as exc:
            message = str(exc).replace(str(registry.root.resolve()), "<registry>")
            message = message.replace(str(registry.root), "<registry>")
            raise RequestError(409, message) from exc
