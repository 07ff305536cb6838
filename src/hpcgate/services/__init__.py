"""Services: long-running servers run as jobs, scaled by a controller, reached through the
proxy (see the README's "Services")."""
