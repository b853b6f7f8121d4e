#!/bin/sh
# Fails: an executable TYPE.* script with a #! line; exit status 1 sends its event to failed/.
echo "lint: checking $TRIVIALCI_EVENT_ID"
echo "lint: docs/protocol.md:1: line too long" >&2
exit 1
