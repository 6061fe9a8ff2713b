"""pytest fixtures for tests/loadgen (the helpers live in lg_helpers.py)."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from lg_helpers import faulty  # noqa: E402,F401  (re-exported as a fixture)
