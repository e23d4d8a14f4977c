"""What a role may do: each capability is a permission on `core.Capability`, listed once here."""

from __future__ import annotations

# capability codename -> what it allows (the permission's name, shown in the admin and in error messages)
CAPABILITIES: dict[str, str] = {
    "view_plant": "See lines, telemetry, twins and proposals",
    "onboard_line": "Onboard production lines and change their specs",
    "import_telemetry": "Import telemetry history and send batches to the ingest API",
    "train_twin": "Train, promote and roll back twins",
    "approve_proposal": "Approve or reject setpoint proposals",
    "view_audit": "Read the audit log",
    "export_audit": "Export the audit log",
    "manage_users": "Manage users, roles and API tokens",
}
