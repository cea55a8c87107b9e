"""``python -m broker --config broker.json`` or flags: run one broker without the supervisor."""
from __future__ import annotations

import argparse
import json

from broker.config import BrokerConfig
from broker.server import run
from coordinator.errors import InvalidArgument


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m broker", description=__doc__)
    parser.add_argument("--config", help="JSON file with BrokerConfig settings")
    parser.add_argument("--id", type=int, dest="broker_id")
    parser.add_argument("--data-dir")
    parser.add_argument("--zookeeper")
    parser.add_argument("--host")
    parser.add_argument("--port", type=int)
    parser.add_argument("--advertised-host")
    args = parser.parse_args()
    values = json.load(open(args.config)) if args.config else {}
    for key in ("broker_id", "data_dir", "zookeeper", "host", "port", "advertised_host"):
        if getattr(args, key) is not None:
            values[key] = getattr(args, key)
    try:
        config = BrokerConfig.from_dict(values)
    except InvalidArgument as exc:
        parser.error(str(exc))
    run(config)


if __name__ == "__main__":
    main()
