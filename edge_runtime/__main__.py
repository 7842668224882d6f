"""``python -m edge_runtime``: see ``edge_runtime.cli``."""

import sys

# No OpenSSL in a session process. Gymnasium's import chain (numpy.random → secrets → hmac → hashlib) loads
# libcrypto, 3.3 MB of RSS on a CartPole session here, for nothing: artifacts are hashed with CPython's
# built-in sha256 (common.fileio) and nothing in the loop needs OpenSSL. Without ``_hashlib``, hashlib
# serves every algorithm from CPython's own implementations.
sys.modules.setdefault("_hashlib", None)  # type: ignore[arg-type]

from edge_runtime.cli import main  # noqa: E402

sys.exit(main())
