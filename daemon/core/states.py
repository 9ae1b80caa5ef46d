"""The assistant's state names: defined here once, used by every part that shows or checks them.

The voice pipeline reports `idle`, `listening` and `transcribing` itself
(`pipelines.events.StateName`); a test keeps the two lists in step, since the capture layer
cannot import the daemon.
"""

from __future__ import annotations

from typing import Literal, get_args

StateName = Literal["idle", "loading", "listening", "transcribing", "thinking", "responding"]
"""`loading`: a model is being loaded (the default one after READY, or by `load_model`). A lost
device or a model that would not load is not a state: `status` lists it under `problems`."""
STATE_NAMES: tuple[StateName, ...] = get_args(StateName)
"""Every state, in the order of a conversation (what Home Assistant lists as options)."""
ANSWERING: frozenset[StateName] = frozenset({"thinking", "responding"})
"""States of an answer in progress; the voice pipeline's own states do not override them."""
