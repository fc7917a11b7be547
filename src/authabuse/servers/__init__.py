"""Real-time policy servers: Postfix policy delegation and Dovecot auth policy.

Both servers turn requests into :mod:`authabuse.events` (time read from the clock at the
request's arrival), ask a :class:`Decider` (an :class:`authabuse.Detector`) for a verdict,
and answer with the action configured for its level. Each server is one asyncio event
loop in one thread; see ``docs/postfix.md`` and ``docs/dovecot.md``.

>>> from authabuse.servers import PostfixAnswers
>>> PostfixAnswers(abuse="DEFER_IF_PERMIT 4.7.1 try later").abuse
'DEFER_IF_PERMIT 4.7.1 try later'
"""

from __future__ import annotations

from authabuse.servers._base import Limits, ListenAddress, parse_listen
from authabuse.servers._decision import Decider, DovecotAnswers, PostfixAnswers, level_name
from authabuse.servers._dovecot import DovecotPolicyServer, parse_api_header
from authabuse.servers._http import serve_metrics
from authabuse.servers._metrics import Metrics, process_memory_bytes
from authabuse.servers._postfix import PostfixPolicyServer

__all__ = [
    "Decider",
    "DovecotAnswers",
    "DovecotPolicyServer",
    "Limits",
    "ListenAddress",
    "Metrics",
    "PostfixAnswers",
    "PostfixPolicyServer",
    "level_name",
    "parse_api_header",
    "parse_listen",
    "process_memory_bytes",
    "serve_metrics",
]
