"""waystone: a self-hosted LLM gateway with per-end-user usage tracking."""

__version__ = "0.1.0"
