"""The jobs: composition of the stage packages into Beam pipelines, their launcher and the ``inverse-instruct``
command. Nothing here computes a record; every stage lives in ``transforms/``."""
import os

# gRPC (under Beam) logs a line at INFO for every fork while its threads run, and the sandboxes fork often.
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
