"""Tokens per backend: the single-flight broker over a store, its renewal and retry policy, its
status. Imports neither mitmproxy nor an I/O library: the client and the store are injected."""
