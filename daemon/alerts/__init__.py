"""Alerts: threshold, spike and unpriced-model events, stored in the ledger and posted
to ``[alerts] webhook``.

``outbox`` is what the request path calls (in memory, never awaited); ``delivery``
holds the two background tasks that store and post the events (``alerts_ctx``).  The
events themselves are made by ``waystone_cli.core.alerts``; their SQL is
``waystone_cli.ledger.alerts``.
"""
