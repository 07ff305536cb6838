"""Long operations as tasks: started by a request, followed by polling, cancellable."""
