import sys

from deen.cli import main

sys.exit(main())
