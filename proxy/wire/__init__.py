"""Provider-neutral pieces of the HTTP wire: SSE, usage blocks, Retry-After, base URLs, bounded reads, request budgets."""
