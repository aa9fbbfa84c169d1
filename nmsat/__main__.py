import sys

from nmsat.commands import main

sys.exit(main())
