"""The daemon as a process among others.

``instance``: the lock that makes one daemon (or one ``serve --workers`` parent and its
workers) serve a home; ``heartbeat``: the instance's row in the ledger, which ``waystone
cluster status`` reads; ``workers``: the parent of ``serve --workers``, which starts,
restarts and signals its worker processes.  None of it is on a request's path.
"""
