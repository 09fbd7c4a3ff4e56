"""`make demo`: placeholder until the PPO issue lands."""

import sys


def main() -> int:
    print("memrl demo: not yet - PPO training lands with the PPO issue.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
