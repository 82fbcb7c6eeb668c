"""Worker processes: forked by the supervisor, no database connection, jobs over a pipe."""
