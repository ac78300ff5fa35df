"""Record schemas: one pyarrow schema per record kind, plus stable content ids."""
from schemas.records import (  # noqa: F401
    SCHEMA_VERSION,
    SCHEMAS,
    RecordKind,
    conform,
    content_id,
    schema_for,
    to_table,
)
