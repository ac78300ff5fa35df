"""Why extraction keeps no snippet: the reason codes of the ``extract`` stage's dead letters."""

NO_CODE = "no_code"
SYNTAX_ERROR = "syntax_error"
UNKNOWN_LANGUAGE = "unknown_language"
TOO_LONG = "too_long"
TOO_SHORT = "too_short"
NOT_UTF8 = "not_utf8"
BAD_RECORD = "bad_record"
REJECTION_REASONS = (NO_CODE, SYNTAX_ERROR, UNKNOWN_LANGUAGE, TOO_LONG, TOO_SHORT, NOT_UTF8, BAD_RECORD)
