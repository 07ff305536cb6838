"""The agent's wire, shared by the gateway and the outbound agent: frames, flow control.

Standard library only (plus anyio where it waits), so the agent's small distribution
carries it as it is.
"""
