"""The files API: the cluster's filesystems over HTTP, as the caller's account."""
