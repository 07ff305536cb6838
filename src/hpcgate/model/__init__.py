"""The shared vocabulary: the values that the server's layers and the SDK both speak.

Job, file, status, task and token models, the scheduler-facing job records, commands,
the principal and the one exception tree. This package imports nothing of hpcgate outside
itself, so the client distribution (``hpcgate-client``) ships it whole and every layer of
the server may import it.
"""
