"""The fuzz tier: schemathesis against a real gateway process, in a sandbox."""
