"""The values every layer passes around: credentials, tokens, errors, the clock, safe text."""
