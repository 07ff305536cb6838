"""The outbound agent: a small process on a login node that dials out to the gateway over one
WebSocket and serves the gateway's transport seam by the local transport, refusing whatever
its own configuration does not allow (:mod:`.policy`). ``hpcgate-agent --help``."""
