"""timecrisis: a distributed job scheduler for Python."""
