"""`python -m gradcheck_cli` runs the command line."""

import os
import sys

# `-m` puts the working folder first on the path, where the console script does not: a random.py or
# numpy.py there would be imported in place of the real one. (gradcheck_cli itself is imported already.)
if sys.path and sys.path[0] in ("", os.getcwd()):
    del sys.path[0]

from .cli import entry  # noqa: E402

entry()
