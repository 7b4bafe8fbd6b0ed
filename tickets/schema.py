"""The complete help-desk schema: imports every ORM model module, and names what the ORM does not.

`Base.metadata` only knows the models that were imported; Alembic's environment, the test
fixtures and anything that compares or empties the schema import this module so the metadata
is whole. Full-text search objects (SQLite's FTS5 table with its shadow tables and triggers,
PostgreSQL's `tsvector` column and GIN index) are created by revision `0002` in raw DDL and are
invisible to the ORM: `include_object` tells Alembic's comparison and autogenerate to leave them
alone instead of proposing to drop them.
"""

from __future__ import annotations

from typing import Any

from tickets import chat, identity_linking, kb, sla_records, surveys, users, webhooks
from tickets.email import outbox
from tickets.models import Base

# every module that declares ORM models besides tickets.models (a new one must be listed here)
MODEL_MODULES = (kb, sla_records, surveys, identity_linking, chat, users, webhooks, outbox)
metadata = Base.metadata

# objects owned by the full-text search DDL of revision 0002, not by the ORM models
SEARCH_TABLE_PREFIXES = ("kb_fts", "tickets_fts")
SEARCH_COLUMNS = frozenset({("kb_articles", "search_vector")})
SEARCH_INDEXES = frozenset({"ix_kb_articles_search_vector", "ix_tickets_subject_search"})


def include_object(
    obj: Any, name: str | None, type_: str, reflected: bool, _compare_to: Any
) -> bool:
    """Alembic hook: False for the search objects the ORM does not describe."""
    if type_ == "table" and name is not None and name.startswith(SEARCH_TABLE_PREFIXES):
        return False
    if type_ == "column" and (getattr(obj, "table", None) is not None):
        return (obj.table.name, name) not in SEARCH_COLUMNS
    return not (type_ == "index" and name in SEARCH_INDEXES)
