"""The core customer record: contacts (companies and people), what happened
(interactions), what must happen next (tasks), attachments, tags, custom field
definitions, notifications and outgoing webhooks.

Every plugin hangs its data on ``contact.id``. Deleting moves a record to the
recycle bin (``deleted_at``); a job purges it after 30 days.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from host.db import Base, UTCDateTime, utcnow
from host.security.models import OwnedMixin

CONTACT_KINDS = ("person", "company")
LIFECYCLE_STAGES = ("lead", "prospect", "customer", "loyal", "churned")
CHANNELS = ("phone", "email", "meeting", "chat", "web_form", "social", "event", "visit", "letter")
DIRECTIONS = ("in", "out")
PRIORITIES = ("low", "normal", "high", "urgent")

# SQLite reuses the highest rowid after a delete unless AUTOINCREMENT is on:
# a journaled erasure or merge replayed later must never hit a newer record
# that inherited a purged one's id.
_NO_ID_REUSE = {"sqlite_autoincrement": True}


class Contact(OwnedMixin, Base):
    __tablename__ = "contact"
    __table_args__ = (
        Index("ix_contact_owner_id_id", "owner_id", "id"),
        Index("ix_contact_deleted_at_id", "deleted_at", "id"),
        _NO_ID_REUSE,
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(10), default="person")
    #: The display name: a company's name, or a person's "first last".
    name: Mapped[str] = mapped_column(String(300))
    first_name: Mapped[str | None] = mapped_column(String(150), nullable=True)
    last_name: Mapped[str | None] = mapped_column(String(150), nullable=True)
    company_id: Mapped[int | None] = mapped_column(ForeignKey("contact.id", ondelete="SET NULL"), nullable=True, index=True)
    #: The primary address, lower-cased, for duplicates and lookups; all
    #: addresses are in ``contact_email``.
    email: Mapped[str | None] = mapped_column(String(254), nullable=True, index=True)
    #: The primary phone as typed, and its digits-only form for matching.
    phone: Mapped[str | None] = mapped_column(String(50), nullable=True)
    phone_digits: Mapped[str | None] = mapped_column(String(30), nullable=True, index=True)
    street: Mapped[str | None] = mapped_column(String(300), nullable=True)
    city: Mapped[str | None] = mapped_column(String(150), nullable=True)
    postal_code: Mapped[str | None] = mapped_column(String(30), nullable=True)
    region: Mapped[str | None] = mapped_column(String(150), nullable=True)
    country: Mapped[str | None] = mapped_column(String(2), nullable=True)
    website: Mapped[str | None] = mapped_column(String(300), nullable=True)
    tax_number: Mapped[str | None] = mapped_column(String(50), nullable=True)
    lifecycle_stage: Mapped[str] = mapped_column(String(20), default="lead", index=True)
    source: Mapped[str | None] = mapped_column(String(100), nullable=True)
    birthday: Mapped[dt.date | None] = mapped_column(Date, nullable=True)
    language: Mapped[str | None] = mapped_column(String(10), nullable=True)
    marketing_consent: Mapped[bool] = mapped_column(Boolean, default=False)
    consent_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    consent_source: Mapped[str | None] = mapped_column(String(100), nullable=True)
    notes: Mapped[str | None] = mapped_column(Text, nullable=True)
    custom_fields: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    #: An id in the system the record was imported from; re-imports match on it.
    external_id: Mapped[str | None] = mapped_column(String(200), nullable=True, unique=True)
    last_activity_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True, index=True)
    deleted_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)

    emails: Mapped[list["ContactEmail"]] = relationship(
        back_populates="contact", cascade="all, delete-orphan", order_by="ContactEmail.id"
    )
    phones: Mapped[list["ContactPhone"]] = relationship(
        back_populates="contact", cascade="all, delete-orphan", order_by="ContactPhone.id"
    )
    tags: Mapped[list["Tag"]] = relationship(secondary="contact_tag", order_by="Tag.name")


class ContactEmail(Base):
    __tablename__ = "contact_email"
    __table_args__ = (UniqueConstraint("contact_id", "email", name="uq_contact_email_contact_id"),)
    __audited__ = False  # audited through the contact

    id: Mapped[int] = mapped_column(primary_key=True)
    contact_id: Mapped[int] = mapped_column(ForeignKey("contact.id", ondelete="CASCADE"), index=True)
    email: Mapped[str] = mapped_column(String(254), index=True)
    label: Mapped[str | None] = mapped_column(String(50), nullable=True)
    contact: Mapped[Contact] = relationship(back_populates="emails")


class ContactPhone(Base):
    __tablename__ = "contact_phone"
    __audited__ = False

    id: Mapped[int] = mapped_column(primary_key=True)
    contact_id: Mapped[int] = mapped_column(ForeignKey("contact.id", ondelete="CASCADE"), index=True)
    phone: Mapped[str] = mapped_column(String(50))
    number_digits: Mapped[str] = mapped_column(String(30), index=True)
    label: Mapped[str | None] = mapped_column(String(50), nullable=True)
    contact: Mapped[Contact] = relationship(back_populates="phones")


class Tag(Base):
    __tablename__ = "tag"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)


class ContactTag(Base):
    __tablename__ = "contact_tag"

    contact_id: Mapped[int] = mapped_column(ForeignKey("contact.id", ondelete="CASCADE"), primary_key=True)
    tag_id: Mapped[int] = mapped_column(ForeignKey("tag.id", ondelete="CASCADE"), primary_key=True, index=True)


class LifecycleChange(Base):
    """Every change of a contact's lifecycle stage, with its date, so
    lifecycle analysis (time to customer, churn) is possible later."""

    __tablename__ = "lifecycle_change"
    __table_args__ = (Index("ix_lifecycle_change_contact_changed", "contact_id", "changed_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    contact_id: Mapped[int] = mapped_column(ForeignKey("contact.id", ondelete="CASCADE"))
    from_stage: Mapped[str | None] = mapped_column(String(20), nullable=True)
    to_stage: Mapped[str] = mapped_column(String(20))
    changed_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    changed_by: Mapped[int | None] = mapped_column(Integer, nullable=True)


class Interaction(OwnedMixin, Base):
    """Something that happened with a contact, on any channel."""

    __tablename__ = "interaction"
    __table_args__ = (
        Index("ix_interaction_contact_occurred", "contact_id", "occurred_at", "id"),
        Index("ix_interaction_owner_id_id", "owner_id", "id"),
        _NO_ID_REUSE,
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    contact_id: Mapped[int] = mapped_column(ForeignKey("contact.id", ondelete="CASCADE"))
    channel: Mapped[str] = mapped_column(String(20))
    direction: Mapped[str] = mapped_column(String(3), default="out")
    subject: Mapped[str] = mapped_column(String(300))
    body: Mapped[str | None] = mapped_column(Text, nullable=True)
    occurred_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    outcome: Mapped[str | None] = mapped_column(String(200), nullable=True)
    external_id: Mapped[str | None] = mapped_column(String(200), nullable=True, unique=True)
    deleted_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)


class Task(OwnedMixin, Base):
    """A planned follow-up. ``owner_id`` is the assignee."""

    __tablename__ = "task"
    __table_args__ = (
        Index("ix_task_owner_done_due", "owner_id", "done", "due_at"),
        Index("ix_task_contact_id", "contact_id"),
        Index("ix_task_due_at", "due_at"),
        _NO_ID_REUSE,
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contact.id", ondelete="CASCADE"), nullable=True)
    title: Mapped[str] = mapped_column(String(300))
    notes: Mapped[str | None] = mapped_column(Text, nullable=True)
    due_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    priority: Mapped[str] = mapped_column(String(10), default="normal")
    done: Mapped[bool] = mapped_column(Boolean, default=False)
    done_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    snoozed_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    external_id: Mapped[str | None] = mapped_column(String(200), nullable=True, unique=True)
    deleted_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)


class Attachment(Base):
    """A file on a contact, interaction or task, stored in the instance
    folder under a generated name, served only as a download to those who may
    see the record."""

    __tablename__ = "attachment"
    __table_args__ = (Index("ix_attachment_object", "object_type", "object_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    object_type: Mapped[str] = mapped_column(String(50))  # contact, interaction, task
    object_id: Mapped[int] = mapped_column(Integer)
    filename: Mapped[str] = mapped_column(String(255))
    stored_name: Mapped[str] = mapped_column(String(100), unique=True)
    content_type: Mapped[str] = mapped_column(String(100))
    size: Mapped[int] = mapped_column(Integer)
    uploaded_by: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    deleted_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)


class CustomFieldDefinitionRow(Base):
    """A custom field an admin defined (plugins declare theirs through the
    ``mosaic_custom_fields`` hook; both validate the same way)."""

    __tablename__ = "custom_field_definition"
    __table_args__ = (UniqueConstraint("model", "key", name="uq_custom_field_definition_model"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    model: Mapped[str] = mapped_column(String(50))
    key: Mapped[str] = mapped_column(String(100))
    label: Mapped[str] = mapped_column(String(200))
    type: Mapped[str] = mapped_column(String(20))
    choices: Mapped[list[Any]] = mapped_column(JSON, default=list)
    required: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class Notification(Base):
    """An in-app notice for one user (the bell). ``dedupe_key`` makes a
    reminder unique per task and due time, however many workers run."""

    __tablename__ = "notification"
    __table_args__ = (Index("ix_notification_user_read", "user_id", "read_at", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user_account.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(50))
    title: Mapped[str] = mapped_column(String(300))
    url: Mapped[str | None] = mapped_column(String(500), nullable=True)
    dedupe_key: Mapped[str | None] = mapped_column(String(200), nullable=True, unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    read_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)


class Webhook(Base):
    __tablename__ = "webhook"

    id: Mapped[int] = mapped_column(primary_key=True)
    url: Mapped[str] = mapped_column(String(1000))
    event_types: Mapped[list[Any]] = mapped_column(JSON, default=list)
    #: The HMAC key receivers verify signatures with.
    secret: Mapped[str] = mapped_column(String(100))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)
    disabled_reason: Mapped[str | None] = mapped_column(String(500), nullable=True)
    #: The outbox id up to which events were considered for this webhook.
    cursor: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class WebhookDelivery(Base):
    __tablename__ = "webhook_delivery"
    __table_args__ = (
        UniqueConstraint("webhook_id", "event_id", name="uq_webhook_delivery_webhook_id"),
        Index("ix_webhook_delivery_due", "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    webhook_id: Mapped[int] = mapped_column(ForeignKey("webhook.id", ondelete="CASCADE"))
    event_id: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(20), default="pending")  # pending, delivered, failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_error: Mapped[str | None] = mapped_column(String(1000), nullable=True)
    delivered_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
