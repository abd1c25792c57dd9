"""Running one claimed job: in-process (async, or a thread for `def`) or in a child process."""
