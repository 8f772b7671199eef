"""State shared by everything that answers pushes for one official account.

Each kind of state has one small interface here and one implementation per
engine: in-process memory now, Redis for several workers.
"""
from .base import Claim, Grant, Outcome, PushClaim, ReplayStore, Token, TokenStore, WindowRecord, WindowStore
from .handoffs import HandoffStore, MemoryHandoffStore
from .memory import MemoryReplayStore, MemoryTokenStore, MemoryWindowStore

__all__ = ["ReplayStore", "PushClaim", "Claim", "Outcome", "MemoryReplayStore", "WindowStore", "MemoryWindowStore",
           "Grant", "WindowRecord", "Token", "TokenStore", "MemoryTokenStore", "HandoffStore",
           "MemoryHandoffStore"]
