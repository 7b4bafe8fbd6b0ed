"""Knowledge base with full-text search, service levels, satisfaction surveys, customer links.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02 18:37:00.655980

Full-text search is raw DDL per backend (see `tickets.schema`, which keeps Alembic's comparison
away from it): on SQLite, FTS5 tables `kb_fts` (article title and body, external content) and
`tickets_fts` (ticket subjects), kept by triggers; on PostgreSQL a weighted `tsvector` column on
`kb_articles` kept by a trigger in the article's own configuration, with a GIN index, and a GIN
expression index over ticket subjects.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SQLITE_SEARCH = (
    "CREATE VIRTUAL TABLE kb_fts USING fts5(title, body, content='kb_articles', "
    "content_rowid='id', tokenize='porter unicode61 remove_diacritics 2')",
    "CREATE TRIGGER kb_fts_ai AFTER INSERT ON kb_articles BEGIN "
    "INSERT INTO kb_fts(rowid, title, body) VALUES (new.id, new.title, new.body); END",
    "CREATE TRIGGER kb_fts_ad AFTER DELETE ON kb_articles BEGIN "
    "INSERT INTO kb_fts(kb_fts, rowid, title, body) VALUES ('delete', old.id, old.title, old.body);"
    " END",
    "CREATE TRIGGER kb_fts_au AFTER UPDATE OF title, body ON kb_articles BEGIN "
    "INSERT INTO kb_fts(kb_fts, rowid, title, body) VALUES ('delete', old.id, old.title, old.body);"
    " INSERT INTO kb_fts(rowid, title, body) VALUES (new.id, new.title, new.body); END",
    "CREATE VIRTUAL TABLE tickets_fts USING fts5(subject, content='tickets', content_rowid='id', "
    "tokenize='unicode61 remove_diacritics 2')",
    "INSERT INTO tickets_fts(rowid, subject) SELECT id, subject FROM tickets",
    "CREATE TRIGGER tickets_fts_ai AFTER INSERT ON tickets BEGIN "
    "INSERT INTO tickets_fts(rowid, subject) VALUES (new.id, new.subject); END",
    "CREATE TRIGGER tickets_fts_ad AFTER DELETE ON tickets BEGIN "
    "INSERT INTO tickets_fts(tickets_fts, rowid, subject) VALUES ('delete', old.id, old.subject);"
    " END",
    "CREATE TRIGGER tickets_fts_au AFTER UPDATE OF subject ON tickets BEGIN "
    "INSERT INTO tickets_fts(tickets_fts, rowid, subject) VALUES ('delete', old.id, old.subject);"
    " INSERT INTO tickets_fts(rowid, subject) VALUES (new.id, new.subject); END",
)
SQLITE_SEARCH_DROP = (
    "DROP TRIGGER IF EXISTS tickets_fts_au",
    "DROP TRIGGER IF EXISTS tickets_fts_ad",
    "DROP TRIGGER IF EXISTS tickets_fts_ai",
    "DROP TABLE IF EXISTS tickets_fts",
    "DROP TRIGGER IF EXISTS kb_fts_au",
    "DROP TRIGGER IF EXISTS kb_fts_ad",
    "DROP TRIGGER IF EXISTS kb_fts_ai",
    "DROP TABLE IF EXISTS kb_fts",
)
POSTGRESQL_SEARCH = (
    "ALTER TABLE kb_articles ADD COLUMN search_vector tsvector",
    "CREATE FUNCTION kb_articles_search_vector() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
    "NEW.search_vector := "
    "setweight(to_tsvector(NEW.search_config::regconfig, coalesce(NEW.title, '')), 'A') || "
    "setweight(to_tsvector(NEW.search_config::regconfig, coalesce(NEW.body, '')), 'B'); "
    "RETURN NEW; END $$",
    "CREATE TRIGGER kb_articles_search_vector BEFORE INSERT OR UPDATE OF title, body, "
    "search_config ON kb_articles FOR EACH ROW EXECUTE FUNCTION kb_articles_search_vector()",
    "CREATE INDEX ix_kb_articles_search_vector ON kb_articles USING gin (search_vector)",
    "CREATE INDEX ix_tickets_subject_search ON tickets "
    "USING gin (to_tsvector('simple'::regconfig, subject))",
)
POSTGRESQL_SEARCH_DROP = (
    "DROP INDEX IF EXISTS ix_tickets_subject_search",
    "DROP INDEX IF EXISTS ix_kb_articles_search_vector",
    "DROP TRIGGER IF EXISTS kb_articles_search_vector ON kb_articles",
    "DROP FUNCTION IF EXISTS kb_articles_search_vector()",
    "ALTER TABLE kb_articles DROP COLUMN IF EXISTS search_vector",
)


def _search_ddl(sqlite: Sequence[str], postgresql: Sequence[str]) -> None:
    dialect = op.get_bind().dialect.name
    for statement in (
        sqlite if dialect == "sqlite" else postgresql if dialect == "postgresql" else ()
    ):
        op.execute(statement)


def upgrade() -> None:
    op.create_table(
        "kb_articles",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("slug", sa.String(length=200), nullable=False),
        sa.Column("language", sa.String(length=16), nullable=False),
        sa.Column("visibility", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("title", sa.String(length=300), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("search_config", sa.String(length=32), nullable=False),
        sa.Column("published_version", sa.Integer(), nullable=True),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "status IN ('draft', 'published', 'archived')", name=op.f("ck_kb_articles_status")
        ),
        sa.CheckConstraint(
            "visibility IN ('public', 'internal')", name=op.f("ck_kb_articles_visibility")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_kb_articles")),
        sa.UniqueConstraint("slug", name=op.f("uq_kb_articles_slug")),
    )
    op.create_index(
        "ix_kb_articles_language_status",
        "kb_articles",
        ["language", "status", "visibility"],
        unique=False,
    )
    op.create_table(
        "kb_terms",
        sa.Column("language", sa.String(length=16), nullable=False),
        sa.Column("term", sa.String(length=64), nullable=False),
        sa.Column("doc_count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("language", "term", name=op.f("pk_kb_terms")),
    )
    op.create_table(
        "kb_article_versions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("article_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(length=300), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("author", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["article_id"],
            ["kb_articles.id"],
            name=op.f("fk_kb_article_versions_article_id_kb_articles"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_kb_article_versions")),
        sa.UniqueConstraint(
            "article_id", "version", name=op.f("uq_kb_article_versions_article_id_version")
        ),
    )
    _search_ddl(SQLITE_SEARCH, POSTGRESQL_SEARCH)
    op.create_table(
        "sla_calendars",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("hours", sa.JSON(), nullable=False),
        sa.Column("holidays", sa.JSON(), nullable=False),
        sa.Column("yearly_holidays", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sla_calendars")),
        sa.UniqueConstraint("name", name=op.f("uq_sla_calendars_name")),
    )
    op.create_table(
        "customer_link_suggestions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("other_customer_id", sa.Integer(), nullable=False),
        sa.Column("rule", sa.String(length=16), nullable=False),
        sa.Column("evidence", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decided_by", sa.String(length=200), nullable=True),
        sa.CheckConstraint(
            "status IN ('open', 'accepted', 'dismissed')",
            name=op.f("ck_customer_link_suggestions_status"),
        ),
        sa.CheckConstraint(
            "customer_id <> other_customer_id", name=op.f("ck_customer_link_suggestions_not_self")
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_customer_link_suggestions_customer_id_customers"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["other_customer_id"],
            ["customers.id"],
            name=op.f("fk_customer_link_suggestions_other_customer_id_customers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_customer_link_suggestions")),
        sa.UniqueConstraint(
            "customer_id",
            "other_customer_id",
            "rule",
            name=op.f("uq_customer_link_suggestions_customer_id_other_customer_id_rule"),
        ),
    )
    op.create_index(
        op.f("ix_customer_link_suggestions_customer_id"),
        "customer_link_suggestions",
        ["customer_id"],
        unique=False,
    )
    op.create_index(
        op.f("ix_customer_link_suggestions_other_customer_id"),
        "customer_link_suggestions",
        ["other_customer_id"],
        unique=False,
    )
    op.create_table(
        "sla_policies",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("priority", sa.String(length=16), nullable=True),
        sa.Column("channel", sa.String(length=16), nullable=True),
        sa.Column("calendar_id", sa.Integer(), nullable=True),
        sa.Column("first_response_s", sa.Integer(), nullable=True),
        sa.Column("next_response_s", sa.Integer(), nullable=True),
        sa.Column("resolution_s", sa.Integer(), nullable=True),
        sa.Column("phone_answer_s", sa.Integer(), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["calendar_id"],
            ["sla_calendars.id"],
            name=op.f("fk_sla_policies_calendar_id_sla_calendars"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sla_policies")),
        sa.UniqueConstraint("name", name=op.f("uq_sla_policies_name")),
    )
    op.create_table(
        "ticket_sla",
        sa.Column("ticket_id", sa.Integer(), nullable=False),
        sa.Column("policy_id", sa.Integer(), nullable=True),
        sa.Column("first_response_breached_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("next_response_breached_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolution_breached_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("paused_remaining", sa.JSON(), nullable=False),
        sa.Column("phone_answer_s", sa.Float(), nullable=True),
        sa.Column("phone_abandoned", sa.Boolean(), nullable=False),
        sa.Column("phone_within_target", sa.Boolean(), nullable=True),
        sa.Column("escalated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["policy_id"], ["sla_policies.id"], name=op.f("fk_ticket_sla_policy_id_sla_policies")
        ),
        sa.ForeignKeyConstraint(
            ["ticket_id"],
            ["tickets.id"],
            name=op.f("fk_ticket_sla_ticket_id_tickets"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("ticket_id", name=op.f("pk_ticket_sla")),
    )
    op.create_table(
        "survey_responses",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("ticket_id", sa.Integer(), nullable=False),
        sa.Column("call_record_id", sa.Integer(), nullable=True),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("dedup_key", sa.String(length=200), nullable=False),
        sa.Column("score", sa.Integer(), nullable=True),
        sa.Column("resolved", sa.Boolean(), nullable=True),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.Column("answers", sa.JSON(), nullable=False),
        sa.Column("queue", sa.String(length=64), nullable=False),
        sa.Column("agent", sa.String(length=64), nullable=True),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "source IN ('ivr', 'email', 'chat')", name=op.f("ck_survey_responses_source")
        ),
        sa.CheckConstraint(
            "score IS NULL OR (score >= 1 AND score <= 5)", name=op.f("ck_survey_responses_score")
        ),
        sa.ForeignKeyConstraint(
            ["call_record_id"],
            ["call_records.id"],
            name=op.f("fk_survey_responses_call_record_id_call_records"),
        ),
        sa.ForeignKeyConstraint(
            ["ticket_id"],
            ["tickets.id"],
            name=op.f("fk_survey_responses_ticket_id_tickets"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_survey_responses")),
        sa.UniqueConstraint("dedup_key", name=op.f("uq_survey_responses_dedup_key")),
    )
    op.create_index(
        "ix_survey_responses_answered_at", "survey_responses", ["answered_at"], unique=False
    )
    op.create_index(
        op.f("ix_survey_responses_ticket_id"), "survey_responses", ["ticket_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_survey_responses_ticket_id"), table_name="survey_responses")
    op.drop_index("ix_survey_responses_answered_at", table_name="survey_responses")
    op.drop_table("survey_responses")
    op.drop_table("ticket_sla")
    op.drop_table("sla_policies")
    op.drop_index(
        op.f("ix_customer_link_suggestions_other_customer_id"),
        table_name="customer_link_suggestions",
    )
    op.drop_index(
        op.f("ix_customer_link_suggestions_customer_id"), table_name="customer_link_suggestions"
    )
    op.drop_table("customer_link_suggestions")
    op.drop_table("sla_calendars")
    _search_ddl(SQLITE_SEARCH_DROP, POSTGRESQL_SEARCH_DROP)
    op.drop_table("kb_article_versions")
    op.drop_table("kb_terms")
    op.drop_index("ix_kb_articles_language_status", table_name="kb_articles")
    op.drop_table("kb_articles")
