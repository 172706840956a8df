"""The configuration: the TOML file of `[[backend]]` tables, host patterns, and the watcher that
reloads it."""
