"""Provider adapters, one per account kind."""
