"""Configuration: where files live, the settings schema, the one write path, the file watcher, accounts."""
