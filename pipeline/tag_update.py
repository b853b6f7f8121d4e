"""Hub: a tag was pushed or deleted on a forge. Tags are not built; say so.

To build tags, queue jobs here as branch_update.py does for branches
(payload: repo, tag, old, new, forge, forge_repo, author, subject).
"""

import json
import sys

from trivialci.hub import refuse_off_hub

refuse_off_hub("tag_update")  # a hub's event dropped into a worker's inbox changes nothing there

payload = json.load(sys.stdin)
new = payload.get("new")
print(f"tag {str(payload.get('tag'))[:100]!r} {'at ' + str(new)[:12] if new else 'deleted'}: tags are not built "
      "(edit pipeline/tag_update.py to build them)")
