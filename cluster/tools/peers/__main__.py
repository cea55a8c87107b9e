import sys

from cluster.tools.peers.run import main

if __name__ == "__main__":
    sys.exit(main())
