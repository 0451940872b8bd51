"""``python -m kinema.cli``: the ``kinema`` command without the console script."""

from kinema.cli import main

if __name__ == "__main__":
    main()
