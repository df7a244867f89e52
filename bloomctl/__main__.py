import sys

from bloomctl.cli import main

sys.exit(main())
