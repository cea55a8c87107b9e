import sys

from cluster.tools.peers.run import main

sys.exit(main())
