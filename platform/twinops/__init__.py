"""TwinOps platform: the Django project (apps under this package) and the `twinops` command."""
