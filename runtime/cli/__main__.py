"""`python -m longvec.runtime.cli`."""

import sys

from longvec.runtime.cli.main import main

sys.exit(main())
