"""The jobs: composition of the stage packages into Beam pipelines, their launcher and the ``inverse-instruct``
command. Nothing here computes a record; every stage lives in ``transforms/``."""
import logging
import os

# gRPC (under Beam) logs a line at INFO for every fork while its threads run, and the sandboxes fork often.
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")


class _QuietImports(logging.Filter):
    """Beam warns at import that optional Google Cloud clients are absent; nothing here uses them."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "apitools not found" not in record.getMessage()


logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
for _handler in logging.getLogger().handlers:
    _handler.addFilter(_QuietImports())
