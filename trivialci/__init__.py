"""TrivialCi: the CI without features.

Events are JSON files dropped atomically into inbox directories of one spool
tree; a node (the hub, or a worker) claims each one and runs the pipeline
script named after its type. See docs/protocol.md for the on-disk protocol.

Importing this package loads the protocol layer only (stdlib): scripts that
`import trivialci` to emit events start fast.
"""

from .spool.delivery import emit
from .errors import TrivialCiError

__version__ = "0.1.0"
__all__ = ["emit", "TrivialCiError", "__version__"]
