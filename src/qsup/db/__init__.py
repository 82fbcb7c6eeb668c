"""Database access: URL resolution and connections, the embedded server, migrations."""
