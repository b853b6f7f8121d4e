"""Passes: greets whoever the event names (a TYPE.py script runs with the node's Python)."""

import json
import os
import sys

payload = json.load(sys.stdin)
print(f"hello, {payload.get('name', 'world')}!")
print(f"event {os.environ['TRIVIALCI_EVENT_ID']} on node {os.environ['TRIVIALCI_NODE']}, "
      f"attempt {os.environ['TRIVIALCI_ATTEMPT']}")
