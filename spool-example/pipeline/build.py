"""Slow: says it started, then works for payload["seconds"] (the node stops it at "_timeout")."""

import json
import sys
import time

payload = json.load(sys.stdin)
print(f"building {payload.get('branch', '?')}: this takes {payload.get('seconds', 20)} s", flush=True)
time.sleep(payload.get("seconds", 20))
print("built")
