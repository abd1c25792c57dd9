"""`python -m timecrisis.cli`: the same as the `timecrisis` command."""

from timecrisis.cli import main

if __name__ == "__main__":
    main()
