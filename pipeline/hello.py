"""An example handler: `trivialci emit hello '{"name": "you"}'` lands here.

A pipeline script gets the event as base64 JSON in argv[1] and as JSON on
stdin; what it prints goes to the event's .log in done/ or failed/.
"""

import json
import os
import sys

payload = json.load(sys.stdin)
print(f"hello, {payload.get('name', 'world')}!")
print(f"event {os.environ['TRIVIALCI_EVENT_ID']} on node {os.environ['TRIVIALCI_NODE']}, "
      f"attempt {os.environ['TRIVIALCI_ATTEMPT']}")
print("payload:", json.dumps(payload, sort_keys=True))
