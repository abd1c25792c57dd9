"""`python -m benchmarks`: see `benchmarks.runner`."""

from benchmarks.runner import main

main()
