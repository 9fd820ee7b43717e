"""Everything ChatGPT-specific: the adapter for ChatGPT accounts on the Codex backend and what it is made of.

``adapter`` (the :class:`ProviderAdapter`), ``backend`` (addresses and the one header block), ``request`` (Responses →
the backend's body), ``chat_request`` (Chat Completions → Responses), ``events`` / ``chat_stream`` / ``aggregate``
(the backend's events → chat chunks or one answer), ``transformers``, ``limits`` (x-codex headers, the usage body,
usage-limit errors), ``usage_poll`` and ``models``.
"""

from __future__ import annotations

from proxy.providers.chatgpt.adapter import ChatGPTAccount

__all__ = ["ChatGPTAccount"]
