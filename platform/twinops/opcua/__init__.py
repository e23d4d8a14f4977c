"""The platform's OPC UA client: pinned server certificate, Basic256Sha256 SignAndEncrypt, user login.

A plain package (no models): the telemetry collector reads through it, the setpoint writer will write through it.
"""
