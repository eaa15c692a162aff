"""Bench: every part's measurements in one object, over one work directory."""

from .compact import CompactPart
from .load import LoadPart
from .measure import BenchCore
from .memory import MemoryPart
from .ranges import RangePart
from .replication import ReplicationPart
from .server import ServerPart
from .startup import StartupPart


class Bench(LoadPart, StartupPart, CompactPart, RangePart, MemoryPart, ServerPart, ReplicationPart,
            BenchCore):
    """Runs the measurements for the selected systems in one work directory."""
