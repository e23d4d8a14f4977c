"""Django's PostgreSQL backend, plus statements that ride in the COMMIT's own round trip (see `base.CommitRider`)."""
