"""Initial help desk schema: customers, identities, tickets, messages, calls, links, audit.

Revision ID: 0001
Revises:
Create Date: 2026-11-22 08:26:27.443239
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "audit_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("ticket_id", sa.Integer(), nullable=True),
        sa.Column("customer_id", sa.Integer(), nullable=True),
        sa.Column("call_record_id", sa.Integer(), nullable=True),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_events")),
    )
    op.create_index("ix_audit_events_customer", "audit_events", ["customer_id", "id"], unique=False)
    op.create_index("ix_audit_events_ticket", "audit_events", ["ticket_id", "id"], unique=False)
    op.create_table(
        "customers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("display_name", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("merged_into_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["merged_into_id"], ["customers.id"], name=op.f("fk_customers_merged_into_id_customers")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_customers")),
    )
    op.create_index(
        op.f("ix_customers_merged_into_id"), "customers", ["merged_into_id"], unique=False
    )
    op.create_table(
        "ticket_counters",
        sa.Column("year", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("last_seq", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("year", name=op.f("pk_ticket_counters")),
    )
    op.create_table(
        "customer_identities",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("value", sa.String(length=320), nullable=False),
        sa.Column("confidence", sa.String(length=16), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "confidence IN ('known', 'maybe')", name=op.f("ck_customer_identities_confidence")
        ),
        sa.CheckConstraint(
            "kind IN ('phone', 'email', 'chat')", name=op.f("ck_customer_identities_kind")
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_customer_identities_customer_id_customers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_customer_identities")),
        sa.UniqueConstraint(
            "customer_id",
            "kind",
            "value",
            name=op.f("uq_customer_identities_customer_id_kind_value"),
        ),
    )
    op.create_index(
        "ix_customer_identities_lookup", "customer_identities", ["kind", "value"], unique=False
    )
    op.create_index(
        "uq_customer_identities_known",
        "customer_identities",
        ["kind", "value"],
        unique=True,
        sqlite_where=sa.text("confidence = 'known'"),
        postgresql_where=sa.text("confidence = 'known'"),
    )
    op.create_table(
        "tickets",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("year", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("number", sa.String(length=24), nullable=False),
        sa.Column("subject", sa.String(length=300), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("priority", sa.String(length=16), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=True),
        sa.Column("queue", sa.String(length=64), nullable=False),
        sa.Column("skills", sa.JSON(), nullable=False),
        sa.Column("assignee", sa.String(length=64), nullable=True),
        sa.Column("tier", sa.Integer(), nullable=False),
        sa.Column("merged_into_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_activity_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("first_response_due_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("first_response_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("next_response_due_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolution_due_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("sla_paused_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("sla_paused_seconds", sa.Float(), nullable=False),
        sa.Column("solved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "channel IN ('phone', 'email', 'chat', 'web', 'api')", name=op.f("ck_tickets_channel")
        ),
        sa.CheckConstraint(
            "priority IN ('low', 'normal', 'high', 'urgent')", name=op.f("ck_tickets_priority")
        ),
        sa.CheckConstraint(
            "status IN ('new', 'open', 'pending', 'on_hold', 'solved', 'closed')",
            name=op.f("ck_tickets_status"),
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name=op.f("fk_tickets_customer_id_customers")
        ),
        sa.ForeignKeyConstraint(
            ["merged_into_id"], ["tickets.id"], name=op.f("fk_tickets_merged_into_id_tickets")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tickets")),
        sa.UniqueConstraint("number", name=op.f("uq_tickets_number")),
        sa.UniqueConstraint("year", "seq", name=op.f("uq_tickets_year_seq")),
    )
    op.create_index(op.f("ix_tickets_assignee"), "tickets", ["assignee"], unique=False)
    op.create_index(
        "ix_tickets_customer_activity",
        "tickets",
        ["customer_id", "status", "last_activity_at"],
        unique=False,
    )
    op.create_table(
        "call_records",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("call_id", sa.String(length=128), nullable=False),
        sa.Column("ticket_id", sa.Integer(), nullable=True),
        sa.Column("customer_id", sa.Integer(), nullable=True),
        sa.Column("direction", sa.String(length=16), nullable=False),
        sa.Column("caller_raw", sa.String(length=200), nullable=False),
        sa.Column("caller_e164", sa.String(length=20), nullable=True),
        sa.Column("caller_kind", sa.String(length=16), nullable=False),
        sa.Column("caller_extension", sa.String(length=16), nullable=False),
        sa.Column("caller_name", sa.String(length=200), nullable=False),
        sa.Column("called", sa.String(length=64), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ivr_path", sa.JSON(), nullable=False),
        sa.Column("named_ticket", sa.String(length=32), nullable=False),
        sa.Column("subject", sa.String(length=300), nullable=False),
        sa.Column("queue", sa.String(length=64), nullable=False),
        sa.Column("skills", sa.JSON(), nullable=False),
        sa.Column("queue_wait_s", sa.Float(), nullable=True),
        sa.Column("talk_s", sa.Float(), nullable=True),
        sa.Column("hold_s", sa.Float(), nullable=True),
        sa.Column("agent", sa.String(length=64), nullable=True),
        sa.Column("transfers", sa.JSON(), nullable=False),
        sa.Column("recording_url", sa.String(length=500), nullable=True),
        sa.Column("transcript_url", sa.String(length=500), nullable=True),
        sa.Column("disposition", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "disposition IN ('answered', 'abandoned', 'voicemail', 'callback', "
            "'self_service', 'failed', 'in_progress')",
            name=op.f("ck_call_records_disposition"),
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name=op.f("fk_call_records_customer_id_customers")
        ),
        sa.ForeignKeyConstraint(
            ["ticket_id"], ["tickets.id"], name=op.f("fk_call_records_ticket_id_tickets")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_call_records")),
        sa.UniqueConstraint("call_id", name=op.f("uq_call_records_call_id")),
    )
    op.create_index("ix_call_records_caller_e164", "call_records", ["caller_e164"], unique=False)
    op.create_index(op.f("ix_call_records_ticket_id"), "call_records", ["ticket_id"], unique=False)
    op.create_table(
        "ticket_links",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("source_id", sa.Integer(), nullable=False),
        sa.Column("target_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "kind IN ('related', 'duplicate', 'merged_into', 'split_from')",
            name=op.f("ck_ticket_links_kind"),
        ),
        sa.CheckConstraint("source_id <> target_id", name=op.f("ck_ticket_links_not_self")),
        sa.ForeignKeyConstraint(
            ["source_id"],
            ["tickets.id"],
            name=op.f("fk_ticket_links_source_id_tickets"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["target_id"],
            ["tickets.id"],
            name=op.f("fk_ticket_links_target_id_tickets"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ticket_links")),
        sa.UniqueConstraint(
            "source_id", "target_id", "kind", name=op.f("uq_ticket_links_source_id_target_id_kind")
        ),
    )
    op.create_index(op.f("ix_ticket_links_target_id"), "ticket_links", ["target_id"], unique=False)
    op.create_table(
        "ticket_tags",
        sa.Column("ticket_id", sa.Integer(), nullable=False),
        sa.Column("tag", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["ticket_id"],
            ["tickets.id"],
            name=op.f("fk_ticket_tags_ticket_id_tickets"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("ticket_id", "tag", name=op.f("pk_ticket_tags")),
    )
    op.create_index(op.f("ix_ticket_tags_tag"), "ticket_tags", ["tag"], unique=False)
    op.create_table(
        "messages",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("ticket_id", sa.Integer(), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("direction", sa.String(length=16), nullable=False),
        sa.Column("internal", sa.Boolean(), nullable=False),
        sa.Column("author_kind", sa.String(length=16), nullable=False),
        sa.Column("author", sa.String(length=200), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("content_type", sa.String(length=100), nullable=False),
        sa.Column("external_id", sa.String(length=500), nullable=True),
        sa.Column("call_record_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "author_kind IN ('customer', 'agent', 'system')", name=op.f("ck_messages_author_kind")
        ),
        sa.CheckConstraint(
            "channel IN ('phone', 'email', 'chat', 'web', 'api')", name=op.f("ck_messages_channel")
        ),
        sa.CheckConstraint(
            "direction IN ('inbound', 'outbound', 'internal')", name=op.f("ck_messages_direction")
        ),
        sa.ForeignKeyConstraint(
            ["call_record_id"],
            ["call_records.id"],
            name=op.f("fk_messages_call_record_id_call_records"),
        ),
        sa.ForeignKeyConstraint(
            ["ticket_id"],
            ["tickets.id"],
            name=op.f("fk_messages_ticket_id_tickets"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_messages")),
    )
    op.create_index(
        op.f("ix_messages_call_record_id"), "messages", ["call_record_id"], unique=False
    )
    op.create_index(op.f("ix_messages_external_id"), "messages", ["external_id"], unique=False)
    op.create_index(
        "ix_messages_ticket_created", "messages", ["ticket_id", "created_at"], unique=False
    )
    op.create_table(
        "attachments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("message_id", sa.Integer(), nullable=False),
        sa.Column("filename", sa.String(length=255), nullable=False),
        sa.Column("content_type", sa.String(length=100), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("storage_url", sa.String(length=500), nullable=False),
        sa.Column("inline", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["message_id"],
            ["messages.id"],
            name=op.f("fk_attachments_message_id_messages"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_attachments")),
    )
    op.create_index(op.f("ix_attachments_message_id"), "attachments", ["message_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_attachments_message_id"), table_name="attachments")
    op.drop_table("attachments")
    op.drop_index("ix_messages_ticket_created", table_name="messages")
    op.drop_index(op.f("ix_messages_external_id"), table_name="messages")
    op.drop_index(op.f("ix_messages_call_record_id"), table_name="messages")
    op.drop_table("messages")
    op.drop_index(op.f("ix_ticket_tags_tag"), table_name="ticket_tags")
    op.drop_table("ticket_tags")
    op.drop_index(op.f("ix_ticket_links_target_id"), table_name="ticket_links")
    op.drop_table("ticket_links")
    op.drop_index(op.f("ix_call_records_ticket_id"), table_name="call_records")
    op.drop_index("ix_call_records_caller_e164", table_name="call_records")
    op.drop_table("call_records")
    op.drop_index("ix_tickets_customer_activity", table_name="tickets")
    op.drop_index(op.f("ix_tickets_assignee"), table_name="tickets")
    op.drop_table("tickets")
    op.drop_index(
        "uq_customer_identities_known",
        table_name="customer_identities",
        sqlite_where=sa.text("confidence = 'known'"),
        postgresql_where=sa.text("confidence = 'known'"),
    )
    op.drop_index("ix_customer_identities_lookup", table_name="customer_identities")
    op.drop_table("customer_identities")
    op.drop_table("ticket_counters")
    op.drop_index(op.f("ix_customers_merged_into_id"), table_name="customers")
    op.drop_table("customers")
    op.drop_index("ix_audit_events_ticket", table_name="audit_events")
    op.drop_index("ix_audit_events_customer", table_name="audit_events")
    op.drop_table("audit_events")
