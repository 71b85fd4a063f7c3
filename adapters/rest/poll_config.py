"""Config of the scheduled REST poller (``inbound[*]`` with ``type: poll``).

    inbound:
      - type: poll
        name: erp-products
        schedule: "0 2 * * *"            # cron, in 'timezone'
        system: erp
        url: https://erp.example.com/api/products
        records: items                   # where the record list is in each page
        pagination: {style: cursor, param: cursor, cursor_path: next_cursor}
        watermark: {param: updated_since, path: updated_at}
        derive:
          entity: {value: product}
          action: {value: upserted}
          subject: {path: sku}
        auth: {type: bearer, token_env: ERP_TOKEN}
        lease: {time: 60, renew_interval: 20}   # one replica of several runs it
"""

from __future__ import annotations

from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from adapters._derive import Derive
from adapters.rest.outbound_config import ClientAuth
from middleware.adapter import AdapterConfig
from middleware.config.models import TargetTlsConfig

__all__ = ["Lease", "PageRetry", "Pagination", "PollConfig", "Watermark"]

_DEFAULT_PARAM = {"page": "page", "offset": "offset", "cursor": "cursor"}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Pagination(_Strict):
    """How to get from one page to the next; every loop is bounded by ``max_pages``."""

    style: Literal["none", "page", "offset", "cursor", "next_link"] = Field(
        "none", description="none, page number, record offset, opaque cursor, or next link."
    )
    param: str | None = Field(
        None, description="Query parameter of the page/offset/cursor (default: the style name)."
    )
    first_page: int = Field(1, ge=0, description="Number of the first page (page style).")
    size_param: str | None = Field("limit", description="Query parameter of the page size.")
    size: int = Field(100, ge=1, le=10_000, description="Records per page requested.")
    cursor_path: str | None = Field(
        None, description="Path of the next cursor in the response (cursor style)."
    )
    next_link_path: str | None = Field(
        None, description="Path of the next URL in the response; default the Link header."
    )
    max_pages: int = Field(10_000, ge=1, description="Safety stop for one run.")

    @model_validator(mode="after")
    def _cursor_path(self) -> Pagination:
        if self.style == "cursor" and not self.cursor_path:
            raise ValueError("style 'cursor' needs cursor_path (where the next cursor is)")
        return self

    @property
    def query_param(self) -> str:
        return self.param or _DEFAULT_PARAM.get(self.style, "")


class Watermark(_Strict):
    """'Changed since' filter, advanced only after every record of a run was confirmed."""

    param: str = Field(description="Query parameter for the watermark.",
                       examples=["updated_since"])
    path: str = Field(description="Record field holding its change time or version.",
                      examples=["updated_at"])
    initial: str = Field("1970-01-01T00:00:00Z", description="Watermark of the first run.")


class Lease(_Strict):
    """The store lease that makes one replica of several run this poller (see poll_lease)."""

    time: float = Field(
        60.0, gt=0, le=3600,
        description="Seconds a lease lasts without renewal: when its holder dies, another "
        "replica takes the poller over within this time. Keep it above a store outage you "
        "want to ride out; a holder that cannot renew stops after it.",
    )
    renew_interval: float = Field(
        20.0, gt=0,
        description="Seconds between renewals by the holder (and takeover attempts by the "
        "others); well below 'time', so one slow renewal does not lose the lease.",
    )

    @model_validator(mode="after")
    def _renew_before_expiry(self) -> Lease:
        if self.renew_interval >= self.time:
            raise ValueError(f"renew_interval ({self.renew_interval:g}) must be shorter than "
                             f"time ({self.time:g}); a third of it is a good value")
        return self


class PageRetry(_Strict):
    """Retries of one page within a run, before the run fails and the next one repeats it."""

    attempts: int = Field(
        3, ge=0, le=10,
        description="Tries again a page whose GET timed out, lost its connection or was "
        "answered 408, 425, 429 or 5xx, within the run; past that the run fails with its "
        "watermark kept and the next run resumes from it.",
    )
    initial_delay: float = Field(
        1.0, gt=0, le=60,
        description="Seconds before the first retry, doubled for each next one; a longer "
        "Retry-After in the answer is waited for instead.",
    )
    max_delay: float = Field(
        30.0, gt=0, le=600,
        description="Longest wait between tries; an API asking (Retry-After) for longer fails "
        "the run at once, to be repeated by the next one.",
    )


class PollConfig(AdapterConfig):
    """A scheduled REST GET whose records become one envelope each."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["poll"] = Field("poll", description="Selects this adapter.")
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$",
                      description="Poller name, used by 'silobridge poll NAME'.")
    schedule: str = Field(
        description="Cron expression (5 fields; a 6th, seconds, for sub-minute schedules).",
        examples=["0 2 * * *"],
    )
    timezone: str = Field("UTC", description="Time zone the schedule is read in.")
    run_on_start: bool = Field(False, description="Also poll once when the daemon starts.")
    system: str = Field(pattern=r"^[a-z0-9_-]+$", description="First word of the event type.")
    source: str | None = Field(None, description="Envelope source; default '<system>/<name>'.")
    url: str = Field(pattern=r"^https?://", description="Collection URL to GET.")
    params: dict[str, str] = Field(default_factory=dict, description="Fixed query parameters.")
    headers: dict[str, str] = Field(default_factory=dict, description="Extra request headers.")
    auth: ClientAuth | None = Field(None, description="How to authenticate to the API.")
    tls: TargetTlsConfig | None = Field(
        None, description="Private CA and/or client certificate for an https:// API (the "
        "OAuth2 token endpoint keeps the system CAs).",
    )
    timeout: float = Field(30.0, gt=0, le=300, description="Seconds per page request.")
    retry: PageRetry = Field(default_factory=PageRetry,
                             description="Retries of a failing page within a run.")
    records: str | None = Field(
        None, description="Path of the record list in a page; none: the page is the list."
    )
    emit: Literal["record", "page"] = Field(
        "record",
        description="One envelope per record, or per page (the whole page body as data, for "
        "mappings that turn a page into one bulk upsert); derive rules see the same.",
    )
    pagination: Pagination = Field(default_factory=Pagination, description="Paging.")
    watermark: Watermark | None = Field(None, description="Incremental polling.")
    derive: Derive = Field(description="Entity, action, subject, time and id of each record.")
    lease: Lease = Field(
        default_factory=Lease,
        description="Lease time and renewal: with several replicas on one PostgreSQL store "
        "exactly one runs each tick; on SQLite the one process always holds it.",
    )

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str) -> str:
        if not croniter.is_valid(value):
            raise ValueError("not a valid cron expression, e.g. '0 2 * * *' (02:00 daily)")
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError("unknown time zone; use an IANA name like 'Europe/Berlin'") from None
        return value

    @property
    def envelope_source(self) -> str:
        return self.source or f"{self.system}/{self.name}"
